// Package tlsconfig builds the transport credentials of the exporter <->
// applier link from the configuration: mutual TLS 1.3 against a configured
// CA, or plaintext only when explicitly enabled (loopback tests).
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rgwsync/rgwsync/internal/config"
)

// ServerCreds returns the exporter's credentials (nil for plaintext).
func ServerCreds(c config.TLS, log *slog.Logger) (credentials.TransportCredentials, error) {
	if c.Insecure {
		log.Warn("TLS disabled (tls.insecure): plaintext gRPC, for loopback tests only")
		return nil, nil
	}
	cert, pool, err := load(c)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}), nil
}

// ClientCreds returns the applier's credentials.
func ClientCreds(c config.TLS, log *slog.Logger) (credentials.TransportCredentials, error) {
	if c.Insecure {
		log.Warn("TLS disabled (tls.insecure): plaintext gRPC, for loopback tests only")
		return insecure.NewCredentials(), nil
	}
	cert, pool, err := load(c)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   c.ServerName,
	}), nil
}

func load(c config.TLS) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return cert, nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.Cert, c.Key, err)
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return cert, nil, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return cert, nil, errors.New("tls.ca " + c.CA + ": no PEM certificate found")
	}
	return cert, pool, nil
}
