package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/certs"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/rpcserver"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a test CA directory: ca.pem (the bundle peers trust) and leaves.
type pki struct {
	t   *testing.T
	dir string
	ca  *certs.Authority
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("test CA", 0, time.Time{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644))
	return &pki{t: t, dir: dir, ca: ca}
}

// issue writes FILE.pem/FILE-key.pem signed by ca (p.ca when nil).
func (p *pki) issue(ca *certs.Authority, file string, r certs.Request) *certs.Leaf {
	p.t.Helper()
	if ca == nil {
		ca = p.ca
	}
	l, err := ca.Issue(r)
	require.NoError(p.t, err)
	_, _, err = l.WriteFiles(p.dir, file)
	require.NoError(p.t, err)
	return l
}

func (p *pki) tlsFor(file string, allowed ...string) config.TLS {
	return config.TLS{CA: filepath.Join(p.dir, "ca.pem"), Cert: filepath.Join(p.dir, file+".pem"),
		Key: filepath.Join(p.dir, file+"-key.pem"), AllowedPeers: allowed}
}

var loopback = []net.IP{net.ParseIP("127.0.0.1")}

// stubStatus answers Status with the caller's certificate: CN as the id,
// serial (hex) as the gateway.
type stubStatus struct {
	v1.UnimplementedStatusServiceServer
}

func (stubStatus) Status(ctx context.Context, _ *v1.StatusRequest) (*v1.StatusResponse, error) {
	p, _ := peer.FromContext(ctx)
	resp := &v1.StatusResponse{Role: "stub", Id: "plaintext"}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		resp.Id = ti.State.PeerCertificates[0].Subject.CommonName
		resp.Gateway = ti.State.PeerCertificates[0].SerialNumber.Text(16)
	}
	return resp, nil
}

// serve runs an rpcserver like the exporter does, on a loopback port.
func serve(t *testing.T, c config.TLS, log *slog.Logger) string {
	t.Helper()
	creds, err := tlsconfig.ServerCreds(c, log)
	require.NoError(t, err)
	srv := rpcserver.New(rpcserver.Options{Logger: log, Creds: creds, Auth: tlsconfig.Authorizer(c)})
	v1.RegisterStatusServiceServer(srv.GRPC, stubStatus{})
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop(time.Second)
		require.NoError(t, <-done)
	})
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func clientCreds(t *testing.T, c config.TLS, addr string) credentials.TransportCredentials {
	t.Helper()
	creds, err := tlsconfig.ClientCreds(c, addr, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return creds
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func health(t *testing.T, conn *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	return err
}

func callStatus(t *testing.T, conn *grpc.ClientConn, opts ...grpc.CallOption) (*v1.StatusResponse, error) {
	return v1.NewStatusServiceClient(conn).Status(ctx(t), &v1.StatusRequest{}, opts...)
}

// listServices calls reflection's ListServices.
func listServices(t *testing.T, conn *grpc.ClientConn) ([]string, error) {
	s, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		return nil, err
	}
	defer s.CloseSend()
	// io.EOF from Send: the server ended the stream; Recv has its status.
	if err := s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
		return nil, err
	}
	resp, err := s.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	return names, nil
}

// rawTLS dials with cfg and returns the state after the server's first
// bytes (HTTP/2 settings): in TLS 1.3 a client learns that the server
// refused its certificate only on its first read.
func rawTLS(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func rawConfig(t *testing.T, p *pki, file string) *tls.Config {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(filepath.Join(p.dir, file+".pem"), filepath.Join(p.dir, file+"-key.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(p.dir, "ca.pem"))
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(b))
	return &tls.Config{Certificates: []tls.Certificate{kp}, RootCAs: pool, ServerName: "exporter.rgwsync", NextProtos: []string{"h2"}}
}

func requireCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), contains)
}

// The exporter's server: mTLS 1.3 against the CA, an allow-list on every
// service but health.
func TestServerAuthentication(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	p.issue(nil, "exporter", certs.Request{Name: "exporter.rgwsync", IPs: loopback, Server: true})
	p.issue(nil, "applier", certs.Request{Name: "applier.rgwsync", Client: true})
	p.issue(nil, "operator", certs.Request{Name: "operator.rgwsync", Client: true})
	p.issue(nil, "stranger", certs.Request{Name: "stranger.rgwsync", Client: true})
	p.issue(other.ca, "foreign", certs.Request{Name: "applier.rgwsync", Client: true}) // right name, wrong CA
	addr := serve(t, p.tlsFor("exporter", "applier.rgwsync", "operator.rgwsync"), slog.New(slog.DiscardHandler))

	t.Run("plaintext client refused", func(t *testing.T) {
		conn := dial(t, addr, insecure.NewCredentials())
		requireCode(t, health(t, conn), codes.Unavailable, "")
		_, err := callStatus(t, conn)
		requireCode(t, err, codes.Unavailable, "")
	})

	t.Run("certificate of another CA refused at the handshake", func(t *testing.T) {
		conn := dial(t, addr, clientCreds(t, p.tlsFor("foreign"), addr))
		requireCode(t, health(t, conn), codes.Unavailable, "")
		_, err := rawTLS(addr, rawConfig(t, p, "foreign"))
		require.Error(t, err)
		require.Contains(t, err.Error(), "tls:")
	})

	t.Run("no client certificate refused at the handshake", func(t *testing.T) {
		cfg := rawConfig(t, p, "applier")
		cfg.Certificates = nil
		_, err := rawTLS(addr, cfg)
		require.ErrorContains(t, err, "certificate required")
	})

	t.Run("TLS 1.2 refused", func(t *testing.T) {
		cfg := rawConfig(t, p, "applier")
		cfg.MaxVersion = tls.VersionTLS12
		_, err := rawTLS(addr, cfg)
		require.ErrorContains(t, err, "protocol version")
	})

	t.Run("CA certificate not on the allow-list: PermissionDenied but health", func(t *testing.T) {
		conn := dial(t, addr, clientCreds(t, p.tlsFor("stranger"), addr))
		require.NoError(t, health(t, conn))
		_, err := callStatus(t, conn)
		requireCode(t, err, codes.PermissionDenied, `client certificate CN="stranger.rgwsync" DNS:stranger.rgwsync serial`)
		require.ErrorContains(t, err, "is not in tls.allowed_peers")
		_, err = listServices(t, conn)
		requireCode(t, err, codes.PermissionDenied, "stranger.rgwsync")
	})

	for _, who := range []string{"applier", "operator"} {
		t.Run(who+" allowed", func(t *testing.T) {
			conn := dial(t, addr, clientCreds(t, p.tlsFor(who, "exporter.rgwsync"), addr))
			require.NoError(t, health(t, conn))
			var pr peer.Peer
			st, err := callStatus(t, conn, grpc.Peer(&pr))
			require.NoError(t, err)
			require.Equal(t, who+".rgwsync", st.GetId())
			state := pr.AuthInfo.(credentials.TLSInfo).State
			require.Equal(t, uint16(tls.VersionTLS13), state.Version)
			require.Equal(t, "exporter.rgwsync", state.PeerCertificates[0].Subject.CommonName)
			names, err := listServices(t, conn)
			require.NoError(t, err)
			require.Contains(t, names, v1.StatusService_ServiceDesc.ServiceName)
			require.Contains(t, names, "grpc.health.v1.Health")
		})
	}
}

// An empty allow-list admits any certificate of the CA.
func TestEmptyAllowListAdmitsTheCA(t *testing.T) {
	p := newPKI(t)
	p.issue(nil, "exporter", certs.Request{Name: "exporter.rgwsync", IPs: loopback, Server: true})
	p.issue(nil, "anyone", certs.Request{Name: "anyone", Client: true})
	addr := serve(t, p.tlsFor("exporter"), slog.New(slog.DiscardHandler))
	st, err := callStatus(t, dial(t, addr, clientCreds(t, p.tlsFor("anyone"), addr)))
	require.NoError(t, err)
	require.Equal(t, "anyone", st.GetId())
}

// Plaintext only when configured: no credentials, no auth interceptor.
func TestInsecureServesPlaintext(t *testing.T) {
	c := config.TLS{Insecure: true}
	require.Nil(t, tlsconfig.Authorizer(c))
	addr := serve(t, c, slog.New(slog.DiscardHandler))
	st, err := callStatus(t, dial(t, addr, clientCreds(t, c, addr)))
	require.NoError(t, err)
	require.Equal(t, "plaintext", st.GetId())
}

// The applier refuses an exporter whose certificate is from the CA but
// names someone else.
func TestClientVerifiesTheExporter(t *testing.T) {
	p := newPKI(t)
	p.issue(nil, "rogue", certs.Request{Name: "rogue.rgwsync", IPs: loopback, Server: true})
	p.issue(nil, "applier", certs.Request{Name: "applier.rgwsync", Client: true})
	rogue := serve(t, p.tlsFor("rogue"), slog.New(slog.DiscardHandler))

	for _, tc := range []struct {
		name string
		c    config.TLS
		want string // "" = accepted
	}{
		{"not on the allow-list", p.tlsFor("applier", "exporter.rgwsync"), "is not in tls.allowed_peers [exporter.rgwsync]"},
		{"wrong server_name", func() config.TLS { c := p.tlsFor("applier"); c.ServerName = "exporter.rgwsync"; return c }(),
			"certificate is valid for rogue.rgwsync, not exporter.rgwsync"},
		{"default server_name is the address host; empty allow-list", p.tlsFor("applier"), ""},
		{"on the allow-list", p.tlsFor("applier", "rogue.rgwsync"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, rogue, clientCreds(t, tc.c, rogue))
			err := health(t, conn)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			requireCode(t, err, codes.Unavailable, tc.want)
		})
	}

	// The exporter's certificate from another CA.
	other := newPKI(t)
	p.issue(other.ca, "exporter-other-ca", certs.Request{Name: "exporter.rgwsync", IPs: loopback, Server: true})
	foreign := serve(t, p.tlsFor("exporter-other-ca"), slog.New(slog.DiscardHandler))
	requireCode(t, health(t, dial(t, foreign, clientCreds(t, p.tlsFor("applier"), foreign))), codes.Unavailable,
		"certificate signed by unknown authority")
}

// syncLog is a goroutine-safe log sink.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Rotation without restart: a new CA added to the bundle, the exporter's
// certificate and key replaced, the applier's too, then the old CA removed;
// a broken file in between changes nothing.
func TestRotationWithoutRestart(t *testing.T) {
	p := newPKI(t)
	oldExp := p.issue(nil, "exporter", certs.Request{Name: "exporter.rgwsync", IPs: loopback, Server: true})
	oldApp := p.issue(nil, "applier", certs.Request{Name: "applier.rgwsync", Client: true})
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	addr := serve(t, p.tlsFor("exporter", "applier.rgwsync"), log)
	// The applier's credentials live across the rotation, like a running
	// applier's; every call below is on a new connection.
	appCreds := clientCreds(t, p.tlsFor("applier", "exporter.rgwsync"), addr)
	// call returns the serials of the exporter's certificate and of the
	// client's as the exporter saw it.
	call := func(t *testing.T, creds credentials.TransportCredentials) (exporter, client *big.Int, err error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		require.NoError(t, err)
		defer conn.Close()
		var pr peer.Peer
		st, err := callStatus(t, conn, grpc.Peer(&pr))
		if err != nil {
			return nil, nil, err
		}
		client, _ = new(big.Int).SetString(st.GetGateway(), 16)
		return pr.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber, client, nil
	}
	exp, app, err := call(t, appCreds)
	require.NoError(t, err)
	require.Equal(t, oldExp.Cert.SerialNumber, exp)
	require.Equal(t, oldApp.Cert.SerialNumber, app)

	// A broken certificate file: refused, the old pair keeps serving.
	certPath := filepath.Join(p.dir, "exporter.pem")
	good, err := os.ReadFile(certPath)
	require.NoError(t, err)
	require.NoError(t, certs.WriteFileAtomic(certPath, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644))
	require.Eventually(t, func() bool {
		_, _, _ = call(t, appCreds)
		return strings.Contains(logs.String(), "new TLS files refused")
	}, 10*time.Second, 50*time.Millisecond)
	exp, _, err = call(t, appCreds)
	require.NoError(t, err)
	require.Equal(t, oldExp.Cert.SerialNumber, exp)
	require.NoError(t, certs.WriteFileAtomic(certPath, good, 0o644))

	// CA rotation, step 1: the bundle (read by both sides) holds the old
	// and the new CA.
	newCA, err := certs.NewCA("test CA 2", 0, time.Time{})
	require.NoError(t, err)
	caPath := filepath.Join(p.dir, "ca.pem")
	require.NoError(t, certs.WriteFileAtomic(caPath, append(append([]byte(nil), p.ca.CertPEM...), newCA.CertPEM...), 0o644))
	// Step 2: new certificates and keys of the new CA, for the exporter
	// and the applier, written while both run.
	newExp := p.issue(newCA, "exporter", certs.Request{Name: "exporter.rgwsync", IPs: loopback, Server: true})
	newApp := p.issue(newCA, "applier", certs.Request{Name: "applier.rgwsync", Client: true})
	require.Eventually(t, func() bool {
		exp, app, err := call(t, appCreds)
		return err == nil && exp.Cmp(newExp.Cert.SerialNumber) == 0 && app.Cmp(newApp.Cert.SerialNumber) == 0
	}, 10*time.Second, 50*time.Millisecond, "the new certificates are never used")
	require.Contains(t, logs.String(), "TLS certificate reloaded")
	state, err := rawTLS(addr, rawConfig(t, p, "applier"))
	require.NoError(t, err)
	require.Equal(t, newExp.Cert.SerialNumber, state.PeerCertificates[0].SerialNumber)

	// Step 3: the old CA leaves the bundle: a client still holding a
	// certificate of the old CA is refused from then on.
	p.issue(p.ca, "old-applier", certs.Request{Name: "applier.rgwsync", Client: true})
	oldCreds := clientCreds(t, p.tlsFor("old-applier", "exporter.rgwsync"), addr)
	_, _, err = call(t, oldCreds)
	require.NoError(t, err)
	require.NoError(t, certs.WriteFileAtomic(caPath, newCA.CertPEM, 0o644))
	require.Eventually(t, func() bool {
		_, _, err := call(t, oldCreds)
		return status.Code(err) == codes.Unavailable
	}, 10*time.Second, 50*time.Millisecond, "the old CA is still trusted")
	exp, app, err = call(t, appCreds)
	require.NoError(t, err)
	require.Equal(t, newExp.Cert.SerialNumber, exp)
	require.Equal(t, newApp.Cert.SerialNumber, app)
}
