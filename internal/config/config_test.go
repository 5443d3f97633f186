package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestExamplesAreValid(t *testing.T) {
	e, err := LoadExporter("../../deploy/examples/exporter.yaml")
	require.NoError(t, err)
	require.NoError(t, e.Validate())
	require.Equal(t, []string{"user", "bucket.instance", "bucket"}, e.Sync.Sections)
	a, err := LoadApplier("../../deploy/examples/applier.yaml")
	require.NoError(t, err)
	require.NoError(t, a.Validate())
	require.Equal(t, "zone-b", a.Destination.Name)
}

func TestBadConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		applier    bool
		want       string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nbogus: 1\n", false, "field bogus not found"},
		{"no endpoint", "tls: {insecure: true}\nsource: {access_key: a, secret_key: b}\n", false, "source.endpoint: required"},
		{"bad endpoint", "tls: {insecure: true}\nsource: {endpoint: 'ftp://x', access_key: a, secret_key: b}\n", false, "want http(s)://host[:port]"},
		{"no secret", "tls: {insecure: true}\nsource: {endpoint: 'http://x:1', access_key: a}\n", false, "source.secret_key: required (or set RGWSYNC_SOURCE_SECRET_KEY)"},
		{"poll order", "tls: {insecure: true}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\nsync: {poll_min: 2s, poll_max: 1s}\n", false, "sync.poll_min 2s is above sync.poll_max 1s"},
		{"batch too big", "tls: {insecure: true}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\nsync: {batch_entries: 5000}\n", false, "at most 1000"},
		{"section", "tls: {insecure: true}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\nsync: {sections: [users]}\n", false, `unknown metadata section "users"`},
		{"bad listen", "listen: nope\ntls: {insecure: true}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", false, `listen "nope": want host:port`},
		{"no tls", "source: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", false, "tls: ca, cert and key are required"},
		{"insecure and certs", "tls: {insecure: true, ca: ca.pem}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", false, "tls.insecure: true disables TLS"},
		{"insecure and allow-list", "exporter: x:1\ntls: {insecure: true, allowed_peers: [a]}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", true, "tls.insecure: true disables TLS"},
		{"exporter server_name", "tls: {ca: c, cert: c, key: k, server_name: x}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", false, "tls.server_name: applier only"},
		{"empty peer", "tls: {ca: c, cert: c, key: k, allowed_peers: [a, '']}\nsource: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", false, "tls.allowed_peers[1]: empty"},
		{"no host to verify", "exporter: ':7443'\ntls: {ca: c, cert: c, key: k}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", true, "tls.server_name: required"},
		{"applier no exporter", "tls: {insecure: true}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\n", true, "exporter: required"},
		{"lease short", "exporter: x:1\ntls: {insecure: true}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\nlease: {length: 1s}\n", true, "lease.length 1s: at least 3s"},
		{"renew slow", "exporter: x:1\ntls: {insecure: true}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\nlease: {length: 10s, renew: 6s}\n", true, "lease.renew 6s must be under half"},
		{"timestamp refused", "exporter: x:1\ntls: {insecure: true}\ndestination: {endpoint: 'http://x:1', access_key: a, secret_key: b}\napply: {update_type: update-by-timestamp}\n", true, "crashes radosgw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "c.yaml")
			require.NoError(t, os.WriteFile(p, []byte(tc.yaml), 0o600))
			var err error
			if tc.applier {
				var c *Applier
				if c, err = LoadApplier(p); err == nil {
					err = c.Validate()
				}
			} else {
				var c *Exporter
				if c, err = LoadExporter(p); err == nil {
					err = c.Validate()
				}
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSecretsFromEnvironment(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(p, []byte("tls: {insecure: true}\nsource: {endpoint: 'http://x:1'}\n"), 0o600))
	t.Setenv(EnvSourceAccessKey, "AK")
	t.Setenv(EnvSourceSecretKey, "SK")
	c, err := LoadExporter(p)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "SK", c.Source.SecretKey)
}
