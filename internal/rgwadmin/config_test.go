package rgwadmin

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewValidates(t *testing.T) {
	ok := Config{Endpoint: "http://127.0.0.1:8001", AccessKey: testAK, SecretKey: testSK}
	cases := []struct {
		name   string
		mod    func(*Config)
		inText string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"https and a trailing slash", func(c *Config) { c.Endpoint = "https://rgw.example:443/" }, ""},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "Config.Endpoint is empty"},
		{"not a URL", func(c *Config) { c.Endpoint = "http://[::1" }, "Config.Endpoint"},
		{"no scheme", func(c *Config) { c.Endpoint = "127.0.0.1:8001" }, "Config.Endpoint"},
		{"other scheme", func(c *Config) { c.Endpoint = "ftp://127.0.0.1" }, "scheme must be http or https"},
		{"no host", func(c *Config) { c.Endpoint = "http://" }, "no host"},
		{"a path", func(c *Config) { c.Endpoint = "http://127.0.0.1:8001/admin" }, "no path"},
		{"a query", func(c *Config) { c.Endpoint = "http://127.0.0.1:8001?x=1" }, "no path, query"},
		{"no access key", func(c *Config) { c.AccessKey = "" }, "Config.AccessKey is empty"},
		{"blank secret key", func(c *Config) { c.SecretKey = "  " }, "Config.SecretKey is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			c, err := New(cfg)
			if tc.inText == "" {
				require.NoError(t, err)
				assert.NotContains(t, c.Endpoint(), "/admin")
				return
			}
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tc.inText)
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{Endpoint: "http://127.0.0.1:8001/", AccessKey: testAK, SecretKey: testSK})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8001", c.Endpoint())
	assert.Equal(t, "us-east-1", c.cfg.Region)
	assert.Equal(t, 30*time.Second, c.cfg.Timeout)
	assert.Equal(t, 4, c.cfg.MaxRetries)
	assert.Equal(t, int64(64<<20), c.cfg.MaxBodyBytes)
	assert.NotNil(t, c.log)
	tr, ok := c.http.Transport.(*http.Transport)
	require.True(t, ok)
	assert.Equal(t, 64, tr.MaxIdleConnsPerHost)
	assert.NotNil(t, c.http.CheckRedirect, "redirects are not followed with our signature")

	c, err = New(Config{Endpoint: "http://h", AccessKey: testAK, SecretKey: testSK, MaxRetries: -1, Region: "zg"})
	require.NoError(t, err)
	assert.Equal(t, 0, c.cfg.MaxRetries)
	assert.Equal(t, "zg", c.cfg.Region)
}

func TestRGWTime(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
	}{
		{`"0.000000"`, time.Time{}},
		{`""`, time.Time{}},
		{`"2026-11-25T12:25:32.671183212Z"`, time.Date(2026, 11, 25, 12, 25, 32, 671183212, time.UTC)},
		{`"2026-11-25T12:25:30.377534Z"`, time.Date(2026, 11, 25, 12, 25, 30, 377534000, time.UTC)},
		{`"1795609530.377534"`, time.Unix(1795609530, 377534000).UTC()},
		{`1795609530.5`, time.Unix(1795609530, 500000000).UTC()},
	}
	for _, tc := range cases {
		var got rgwTime
		require.NoError(t, json.Unmarshal([]byte(tc.in), &got), tc.in)
		assert.True(t, tc.want.Equal(time.Time(got)), "%s: got %v", tc.in, time.Time(got))
	}
	var bad rgwTime
	assert.Error(t, json.Unmarshal([]byte(`"yesterday"`), &bad))
}

func TestFlexBool(t *testing.T) {
	for in, want := range map[string]bool{`true`: true, `false`: false, `"true"`: true, `"false"`: false} {
		var got flexBool
		require.NoError(t, json.Unmarshal([]byte(in), &got), in)
		assert.Equal(t, want, bool(got), in)
	}
	var bad flexBool
	assert.Error(t, json.Unmarshal([]byte(`"maybe"`), &bad))
	assert.Error(t, json.Unmarshal([]byte(`1`), &bad))
}

func TestSnippet(t *testing.T) {
	assert.Equal(t, "abc", snippet([]byte("abc"), 200))
	assert.Equal(t, "ab…", snippet([]byte("abcdef"), 2))
	assert.Equal(t, "a…", snippet([]byte("aé"), 2), "never cut inside a rune")
}
