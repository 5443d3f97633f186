// Package tlsconfig builds the transport security of the exporter <->
// applier link from the configuration: mutual TLS 1.3 against the
// configured CA, or plaintext only when explicitly enabled (loopback
// tests).
//
// Certificates, keys and the CA bundle are re-read while the process runs
// (see reloader): every new connection uses the files as they are now, so
// a rotation needs no restart. Peers are also checked against
// tls.allowed_peers: the exporter (and the applier's status endpoint)
// through the gRPC auth function of Authorizer, the applier when it
// verifies the exporter's certificate.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rgwsync/rgwsync/internal/config"
)

// CheckInterval is how often, at most, the files are checked for a
// change (on a handshake; nothing is polled in between).
const CheckInterval = time.Second

// ServerCreds returns the credentials of a gRPC server (the exporter; the
// applier's status endpoint), nil for plaintext: TLS 1.3 only, a client
// certificate signed by tls.ca required. Allow-listing is Authorizer's job.
func ServerCreds(c config.TLS, log *slog.Logger) (credentials.TransportCredentials, error) {
	if c.Insecure {
		log.Warn("TLS disabled (tls.insecure): plaintext gRPC, for loopback tests only")
		return nil, nil
	}
	r, err := newReloader(c, x509.ExtKeyUsageServerAuth, CheckInterval, log)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(serverConfig(r)), nil
}

func serverConfig(r *reloader) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		// Each handshake takes the certificate and the CA pool as last
		// (re)loaded.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.get()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*m.cert},
				ClientCAs:    m.pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				// No resumption: a resumed session would skip the check
				// of the client certificate against the current CA bundle.
				SessionTicketsDisabled: true,
			}, nil
		},
	}
}

// ClientCreds returns the applier's credentials for dialing exporter
// (host:port). The exporter's certificate must be signed by tls.ca, name
// tls.server_name (default: the host of exporter) and, when
// tls.allowed_peers is set, carry one of those identities.
func ClientCreds(c config.TLS, exporter string, log *slog.Logger) (credentials.TransportCredentials, error) {
	if c.Insecure {
		log.Warn("TLS disabled (tls.insecure): plaintext gRPC, for loopback tests only")
		return insecure.NewCredentials(), nil
	}
	name, err := serverName(c, exporter)
	if err != nil {
		return nil, err
	}
	r, err := newReloader(c, x509.ExtKeyUsageClientAuth, CheckInterval, log)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(clientConfig(r, name, newAllowList(c.AllowedPeers))), nil
}

func serverName(c config.TLS, exporter string) (string, error) {
	if c.ServerName != "" {
		return c.ServerName, nil
	}
	host, _, err := net.SplitHostPort(exporter)
	if err != nil || host == "" {
		return "", fmt.Errorf("tls.server_name: required, exporter %q names no host to verify", exporter)
	}
	return host, nil
}

func clientConfig(r *reloader, name string, allow allowList) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: name,
		// The standard verification is replaced by VerifyConnection, which
		// does the same against the CA pool as last (re)loaded (RootCAs
		// cannot change after the dial) and adds the allow-list.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, r.get().pool, name, allow)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.get().cert, nil
		},
	}
}

func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, name string, allow allowList) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("exporter presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("exporter certificate %s: %w", Describe(leaf), err)
	}
	if !allow.permits(leaf) {
		return fmt.Errorf("exporter certificate %s is not in tls.allowed_peers %v", Describe(leaf), allow.names)
	}
	return nil
}

// Authorizer returns the gRPC auth function of a server: the caller's
// verified client certificate must carry an identity in tls.allowed_peers
// (any certificate of the CA when the list is empty), else the call fails
// with PermissionDenied naming the identity presented. It returns nil for
// plaintext (tls.insecure), where there is nothing to check.
func Authorizer(c config.TLS) auth.AuthFunc {
	if c.Insecure {
		return nil
	}
	allow := newAllowList(c.AllowedPeers)
	return func(ctx context.Context) (context.Context, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "no peer")
		}
		ti, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
			return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
		}
		leaf := ti.State.VerifiedChains[0][0]
		if !allow.permits(leaf) {
			return nil, status.Errorf(codes.PermissionDenied, "client certificate %s is not in tls.allowed_peers", Describe(leaf))
		}
		return ctx, nil
	}
}

// allowList holds the peer identities of tls.allowed_peers.
type allowList struct {
	names []string
	set   map[string]bool // lower case
}

func newAllowList(names []string) allowList {
	a := allowList{names: names, set: make(map[string]bool, len(names))}
	for _, n := range names {
		a.set[strings.ToLower(n)] = true
	}
	return a
}

// permits reports whether one of the certificate's identities (SAN DNS
// names, SAN URIs, subject CN; case-insensitive) is on the list, or the
// list is empty.
func (a allowList) permits(c *x509.Certificate) bool {
	if len(a.set) == 0 {
		return true
	}
	for _, id := range Identities(c) {
		if a.set[strings.ToLower(id)] {
			return true
		}
	}
	return false
}

// Identities are the names tls.allowed_peers is matched against: SAN DNS
// names, SAN URIs and the subject CN.
func Identities(c *x509.Certificate) []string {
	ids := append([]string(nil), c.DNSNames...)
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	return ids
}

// Describe names a certificate for messages: CN, SANs and serial.
func Describe(c *x509.Certificate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CN=%q", c.Subject.CommonName)
	for _, d := range c.DNSNames {
		b.WriteString(" DNS:" + d)
	}
	for _, u := range c.URIs {
		b.WriteString(" URI:" + u.String())
	}
	for _, ip := range c.IPAddresses {
		b.WriteString(" IP:" + ip.String())
	}
	fmt.Fprintf(&b, " serial %x", c.SerialNumber)
	return b.String()
}
