package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommandLineOverridesTheFile(t *testing.T) {
	path := "/etc/rgwsync/c.yaml"
	type conf struct{ Listen, LogLevel string }
	load := func(p string) (*conf, error) {
		require.Equal(t, path, p)
		return &conf{Listen: "127.0.0.1:1", LogLevel: "info"}, nil
	}
	cl := NewCommandLine[conf]("test")
	cl.Override("listen", "listen", "listen address", func(c *conf) *string { return &c.Listen })
	cl.Override("log-level", "log_level", "log level", func(c *conf) *string { return &c.LogLevel })
	cfg, err := cl.Load([]string{"-config", path, "-listen", "127.0.0.1:2"}, load)
	require.NoError(t, err)
	require.Equal(t, &conf{Listen: "127.0.0.1:2", LogLevel: "info"}, cfg, "a flag not given leaves the file's value")

	_, err = NewCommandLine[conf]("test").Load([]string{"-no-such-flag"}, load)
	require.ErrorContains(t, err, "no-such-flag")
}
