package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCAThenIssue(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	require.NoError(t, run([]string{"ca", "-out", dir, "-name", "test CA", "-days", "30"}, &out))
	require.Contains(t, out.String(), `CA "test CA" valid until`)
	require.ErrorContains(t, run([]string{"ca", "-out", dir}, &out), "refusing to replace a CA")

	out.Reset()
	require.NoError(t, run([]string{"issue", "-ca", dir, "-name", "exporter.rgwsync", "-dns", "exporter.dc1, exp.dc1",
		"-ip", "127.0.0.1,::1", "-server", "-out", dir}, &out))
	require.Contains(t, out.String(), "exporter.rgwsync (server; DNS:exporter.rgwsync DNS:exporter.dc1 DNS:exp.dc1 IP:127.0.0.1 IP:::1)")

	kp, err := tls.LoadX509KeyPair(filepath.Join(dir, "exporter.rgwsync.pem"), filepath.Join(dir, "exporter.rgwsync-key.pem"))
	require.NoError(t, err)
	st, err := os.Stat(filepath.Join(dir, "exporter.rgwsync-key.pem"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	blk, _ := pem.Decode(caPEM)
	require.NotNil(t, blk)
	ca, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err = kp.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "exp.dc1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err)
	_, err = kp.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.Error(t, err, "a -server certificate is not a client one")
	// The default 365 days are cut to the 30-day CA's.
	require.Equal(t, ca.NotAfter, kp.Leaf.NotAfter)
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"sign"}, `unknown command "sign"`},
		{[]string{"ca"}, "-out DIR required"},
		{[]string{"ca", "-out", dir, "-days", "0"}, "-days must be positive"},
		{[]string{"issue", "-ca", dir, "-out", dir}, "-name NAME"},
		{[]string{"issue", "-ca", dir, "-name", "../x", "-out", dir}, "no path separators"},
		{[]string{"issue", "-ca", dir, "-name", "x", "-ip", "nope", "-out", dir}, `-ip "nope": not an IP address`},
		{[]string{"issue", "-ca", dir, "-name", "x", "-out", dir}, "load CA"},
	} {
		require.ErrorContains(t, run(tc.args, &out), tc.want, "%v", tc.args)
	}
}
