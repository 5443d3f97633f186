package certs

import (
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIssueAndVerify(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ca, err := NewCA("test-ca", 0, now)
	require.NoError(t, err)
	require.True(t, ca.Cert.IsCA)
	require.Equal(t, now.Add(DefaultCAValidity), ca.Cert.NotAfter)
	other, err := NewCA("other-ca", 0, now)
	require.NoError(t, err)

	spiffe, _ := url.Parse("spiffe://rgwsync/exporter")
	for _, tc := range []struct {
		name     string
		req      Request
		wantDNS  []string
		usage    x509.ExtKeyUsage
		verifyAs string // a name the chain verifies for ("" = none)
		notUsage x509.ExtKeyUsage
	}{
		{"server with SANs", Request{Name: "exporter.rgwsync", DNS: []string{"exp.dc1"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, URIs: []*url.URL{spiffe}, Server: true},
			[]string{"exporter.rgwsync", "exp.dc1"}, x509.ExtKeyUsageServerAuth, "127.0.0.1", x509.ExtKeyUsageClientAuth},
		{"client", Request{Name: "applier.rgwsync", Client: true},
			[]string{"applier.rgwsync"}, x509.ExtKeyUsageClientAuth, "", x509.ExtKeyUsageServerAuth},
		{"name already a SAN", Request{Name: "a.rgwsync", DNS: []string{"A.rgwsync"}, Server: true},
			[]string{"A.rgwsync"}, x509.ExtKeyUsageServerAuth, "a.rgwsync", x509.ExtKeyUsageClientAuth},
		{"name not a host name: CN only", Request{Name: "ops team", Client: true},
			nil, x509.ExtKeyUsageClientAuth, "", x509.ExtKeyUsageServerAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Now = now
			l, err := ca.Issue(tc.req)
			require.NoError(t, err)
			require.Equal(t, tc.req.Name, l.Cert.Subject.CommonName)
			require.Equal(t, tc.wantDNS, l.Cert.DNSNames)
			require.False(t, l.Cert.IsCA)
			require.Equal(t, now.Add(DefaultLeafValidity), l.Cert.NotAfter)
			require.True(t, l.Cert.NotBefore.Before(now))

			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tc.usage}, DNSName: tc.verifyAs}
			_, err = l.Cert.Verify(opts)
			require.NoError(t, err)
			opts.KeyUsages = []x509.ExtKeyUsage{tc.notUsage}
			_, err = l.Cert.Verify(opts)
			require.Error(t, err, "usage %v must not verify", tc.notUsage)

			// Another CA does not vouch for it.
			otherRoots := x509.NewCertPool()
			otherRoots.AddCert(other.Cert)
			_, err = l.Cert.Verify(x509.VerifyOptions{Roots: otherRoots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			require.Error(t, err)
			// Expired after NotAfter.
			_, err = l.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: l.Cert.NotAfter.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			require.ErrorContains(t, err, "expired")
		})
	}
}

func TestIssueBothUsagesByDefault(t *testing.T) {
	ca, err := NewCA("ca", 0, time.Time{})
	require.NoError(t, err)
	l, err := ca.Issue(Request{Name: "applier.rgwsync"})
	require.NoError(t, err)
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, l.Cert.ExtKeyUsage)
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("short", 48*time.Hour, now)
	require.NoError(t, err)
	l, err := ca.Issue(Request{Name: "x", Validity: 365 * 24 * time.Hour, Now: now})
	require.NoError(t, err)
	require.Equal(t, ca.Cert.NotAfter, l.Cert.NotAfter)

	_, err = ca.Issue(Request{Name: "x", Now: now.Add(72 * time.Hour)})
	require.ErrorContains(t, err, "expired")
}

func TestBadRequests(t *testing.T) {
	_, err := NewCA("", 0, time.Time{})
	require.Error(t, err)
	ca, err := NewCA("ca", 0, time.Time{})
	require.NoError(t, err)
	_, err = ca.Issue(Request{})
	require.ErrorContains(t, err, "name required")
	_, err = ca.Issue(Request{Name: "x", DNS: []string{"bad name"}})
	require.ErrorContains(t, err, `"bad name" is not a DNS name`)
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("files-ca", 0, time.Time{})
	require.NoError(t, err)
	require.NoError(t, ca.WriteFiles(dir))
	require.ErrorContains(t, ca.WriteFiles(dir), "refusing to replace a CA")
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	loaded, err := LoadCA(dir)
	require.NoError(t, err)
	require.True(t, loaded.Cert.Equal(ca.Cert))
	l, err := loaded.Issue(Request{Name: "exporter.rgwsync", Server: true})
	require.NoError(t, err)
	certPath, keyPath, err := l.WriteFiles(dir, "exporter")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "exporter.pem"), certPath)
	st, err = os.Stat(keyPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	// No temporary files left behind.
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 4)

	// A key that is not the CA's is refused.
	other, err := NewCA("other", 0, time.Time{})
	require.NoError(t, err)
	kp, err := keyPEM(other.Key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, CAKeyFile), kp, 0o600))
	_, err = LoadCA(dir)
	require.ErrorContains(t, err, "does not match")
}
