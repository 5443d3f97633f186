package tlsconfig

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/certs"
	"github.com/rgwsync/rgwsync/internal/config"
)

// logBuffer is a goroutine-safe slog sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func writeLeaf(t *testing.T, ca *certs.Authority, dir, file string, r certs.Request) *certs.Leaf {
	t.Helper()
	l, err := ca.Issue(r)
	require.NoError(t, err)
	_, _, err = l.WriteFiles(dir, file)
	require.NoError(t, err)
	return l
}

func newCA(t *testing.T, name string) *certs.Authority {
	t.Helper()
	ca, err := certs.NewCA(name, 0, time.Time{})
	require.NoError(t, err)
	return ca
}

func TestReloaderRotatesAndKeepsOldOnBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644))
	first := writeLeaf(t, ca, dir, "srv", certs.Request{Name: "srv.rgwsync", Server: true})
	c := config.TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "srv.pem"), Key: filepath.Join(dir, "srv-key.pem")}
	var logs logBuffer
	r, err := newReloader(c, x509.ExtKeyUsageServerAuth, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.Equal(t, first.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber)
	require.Contains(t, logs.String(), "TLS certificate loaded")

	// A new pair is picked up by the next get.
	second := writeLeaf(t, ca, dir, "srv", certs.Request{Name: "srv.rgwsync", Server: true})
	require.Equal(t, second.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber)
	require.Contains(t, logs.String(), "TLS certificate reloaded")

	// Broken files keep the pair in use, with one error however often asked.
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"garbage certificate", "srv.pem", "not a certificate", "new TLS files refused"},
		{"key of another certificate", "srv-key.pem", string(mustIssue(t, ca).KeyPEM), "private key does not match public key"},
		{"empty CA bundle", "ca.pem", "", "no PEM certificate found"},
		{"missing key", "srv-key.pem", "", "TLS files unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			saved, err := os.ReadFile(p)
			require.NoError(t, err)
			if tc.name == "missing key" {
				require.NoError(t, os.Remove(p))
			} else {
				require.NoError(t, os.WriteFile(p, []byte(tc.content), 0o600))
			}
			before := strings.Count(logs.String(), "level=ERROR")
			for range 3 {
				require.Equal(t, second.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber)
			}
			require.Equal(t, before+1, strings.Count(logs.String(), "level=ERROR"), logs.String())
			require.Contains(t, logs.String(), tc.want)
			require.NoError(t, os.WriteFile(p, saved, 0o600))
			require.Equal(t, second.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber)
		})
	}

	// Files fixed: the next rotation loads again.
	third := writeLeaf(t, ca, dir, "srv", certs.Request{Name: "srv.rgwsync", Server: true})
	require.Equal(t, third.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber)
}

func mustIssue(t *testing.T, ca *certs.Authority) *certs.Leaf {
	l, err := ca.Issue(certs.Request{Name: "other"})
	require.NoError(t, err)
	return l
}

func TestReloaderChecksAtMostOncePerInterval(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644))
	first := writeLeaf(t, ca, dir, "srv", certs.Request{Name: "srv", Server: true})
	c := config.TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "srv.pem"), Key: filepath.Join(dir, "srv-key.pem")}
	r, err := newReloader(c, x509.ExtKeyUsageServerAuth, time.Hour, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	writeLeaf(t, ca, dir, "srv", certs.Request{Name: "srv", Server: true})
	require.Equal(t, first.Cert.SerialNumber, r.get().cert.Leaf.SerialNumber, "checked again before the interval")
}

func TestReloaderRefusesAtStart(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644))
	writeLeaf(t, ca, dir, "client", certs.Request{Name: "applier", Client: true})
	c := config.TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem")}
	log := slog.New(slog.DiscardHandler)

	_, err := ServerCreds(c, log)
	require.ErrorContains(t, err, "is not for TLS servers")
	require.ErrorContains(t, err, "rgwsync-certs issue -server -client")
	_, err = ClientCreds(c, "127.0.0.1:1", log)
	require.NoError(t, err)

	missing := c
	missing.CA = filepath.Join(dir, "nope.pem")
	_, err = ClientCreds(missing, "127.0.0.1:1", log)
	require.ErrorContains(t, err, "tls.ca: open")
	_, err = ClientCreds(c, ":1", log)
	require.ErrorContains(t, err, "tls.server_name: required")
}

func TestAllowList(t *testing.T) {
	ca := newCA(t, "ca")
	u, _ := url.Parse("spiffe://dc1/applier")
	l, err := ca.Issue(certs.Request{Name: "Applier-1", DNS: []string{"applier.rgwsync"}, URIs: []*url.URL{u}, IPs: []net.IP{net.ParseIP("10.0.0.1")}})
	require.NoError(t, err)
	require.Equal(t, []string{"Applier-1", "applier.rgwsync", "spiffe://dc1/applier", "Applier-1"}, Identities(l.Cert))
	for _, tc := range []struct {
		list []string
		want bool
	}{
		{nil, true},
		{[]string{"applier.rgwsync"}, true},
		{[]string{"APPLIER.rgwsync"}, true},
		{[]string{"applier-1"}, true},
		{[]string{"spiffe://dc1/applier"}, true},
		{[]string{"other", "spiffe://dc2/applier"}, false},
		{[]string{"10.0.0.1"}, false}, // IP SANs are addresses, not identities
	} {
		require.Equal(t, tc.want, newAllowList(tc.list).permits(l.Cert), "%v", tc.list)
	}
	require.Contains(t, Describe(l.Cert), `CN="Applier-1" DNS:Applier-1 DNS:applier.rgwsync URI:spiffe://dc1/applier IP:10.0.0.1 serial`)
}
