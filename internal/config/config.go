// Package config loads the YAML configuration of the exporter and the
// applier. Unknown keys are errors (a typo must not silently fall back to a
// default); secrets may come from the environment instead of the file; every
// validation error names the key that is wrong.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Gateway is an RGW endpoint with a system user's keys.
type Gateway struct {
	Endpoint  string `yaml:"endpoint"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	Region    string `yaml:"region"`
	// Per request attempt.
	Timeout time.Duration `yaml:"timeout"`
}

// TLS of the exporter <-> applier link (and of the applier's status
// endpoint): mutual TLS 1.3. The files are re-read when they change, so
// certificates rotate without a restart; Validate never opens them.
type TLS struct {
	// Insecure allows plaintext gRPC; meant for loopback tests only.
	Insecure bool `yaml:"insecure"`
	// CA is the PEM bundle peers' certificates must chain to (several CAs
	// during a CA rotation: old + new).
	CA string `yaml:"ca"`
	// Cert and Key are this process's certificate (PEM, may carry
	// intermediates) and key: a server certificate on the exporter, a
	// client one on the applier (server and client when the applier's
	// status listen is on).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// AllowedPeers are the peer identities accepted: a certificate SAN DNS
	// name, SAN URI or subject CN (case-insensitive). Empty: any
	// certificate of the CA. On the exporter: the appliers and operators
	// allowed to call (health checks excepted); on the applier: the
	// exporter it accepts and the operators allowed on its status endpoint.
	AllowedPeers []string `yaml:"allowed_peers"`
	// ServerName, applier only: the name the exporter's certificate must
	// carry (default: the host part of exporter).
	ServerName string `yaml:"server_name"`
}

// Exporter is the exporter's configuration.
type Exporter struct {
	ID            string  `yaml:"id"`
	Listen        string  `yaml:"listen"`
	MetricsListen string  `yaml:"metrics_listen"`
	BoundsPath    string  `yaml:"bounds_path"`
	LogLevel      string  `yaml:"log_level"`
	Source        Gateway `yaml:"source"`
	TLS           TLS     `yaml:"tls"`
	Sync          struct {
		Sections           []string      `yaml:"sections"`
		BatchEntries       int           `yaml:"batch_entries"`
		FetchConcurrency   int           `yaml:"fetch_concurrency"`
		PollMin            time.Duration `yaml:"poll_min"`
		PollMax            time.Duration `yaml:"poll_max"`
		RetryMin           time.Duration `yaml:"retry_min"`
		RetryMax           time.Duration `yaml:"retry_max"`
		MaxInflightBatches int           `yaml:"max_inflight_batches"`
		MaxInflightBytes   int64         `yaml:"max_inflight_bytes"`
		// StallAfter: a shard with work pending and no batch sent nor ack
		// taken for this long is stalled (logged, counted, shown).
		StallAfter time.Duration `yaml:"stall_after"`
		// BandwidthBytesPerSecond caps the payload streamed to each applier
		// (a token bucket per stream); 0 = unlimited.
		BandwidthBytesPerSecond int64 `yaml:"bandwidth_bytes_per_second"`
	} `yaml:"sync"`
	// Data is object (data) sync, on by default.
	Data struct {
		Enabled bool `yaml:"enabled"`
		// Objects up to inline_max bytes travel inside their batch; larger
		// ones stream in chunk_size chunks.
		InlineMax int64 `yaml:"inline_max"`
		ChunkSize int   `yaml:"chunk_size"`
	} `yaml:"data"`
	// Filter selects the buckets replicated (path.Match globs on the bucket
	// name, "tenant/name" for tenant buckets). Empty include = all; exclude
	// wins over include.
	Filter struct {
		Include []string `yaml:"include"`
		Exclude []string `yaml:"exclude"`
	} `yaml:"filter"`
	// Trim, when enabled, trims the source's metadata log shards up to what
	// every known destination has applied.
	Trim struct {
		Enabled  bool          `yaml:"enabled"`
		Interval time.Duration `yaml:"interval"`
	} `yaml:"trim"`
}

// Applier is the applier's configuration.
type Applier struct {
	ID            string `yaml:"id"`
	Exporter      string `yaml:"exporter"` // host:port of the exporter
	Listen        string `yaml:"listen"`   // status/health gRPC
	MetricsListen string `yaml:"metrics_listen"`
	LogLevel      string `yaml:"log_level"`
	// AuditLog, if set, gets a JSON line per applied batch (shard, times,
	// lease deadline).
	AuditLog string `yaml:"audit_log"`
	// Destination zone: its name keys the bounds at the exporter and tags
	// the leases.
	Destination struct {
		Name string `yaml:"name"`
		// ZoneID of the destination zone. Found in the period by endpoint
		// when empty; needed when the endpoint is a load balancer or proxy
		// not listed among the zone's endpoints.
		ZoneID  string `yaml:"zone_id"`
		Gateway `yaml:",inline"`
	} `yaml:"destination"`
	TLS   TLS `yaml:"tls"`
	Lease struct {
		Length     time.Duration `yaml:"length"`
		Renew      time.Duration `yaml:"renew"`
		IDBase     int           `yaml:"id_base"`
		MaxMembers int           `yaml:"max_members"`
	} `yaml:"lease"`
	Apply struct {
		Concurrency        int    `yaml:"concurrency"`
		UpdateType         string `yaml:"update_type"`
		MaxInflightBatches int    `yaml:"max_inflight_batches"`
	} `yaml:"apply"`
}

// Environment variables that override secrets (and keys) of the file.
const (
	EnvSourceAccessKey = "RGWSYNC_SOURCE_ACCESS_KEY"
	EnvSourceSecretKey = "RGWSYNC_SOURCE_SECRET_KEY"
	EnvDestAccessKey   = "RGWSYNC_DEST_ACCESS_KEY"
	EnvDestSecretKey   = "RGWSYNC_DEST_SECRET_KEY"
)

// LoadExporter reads an exporter configuration (defaults, then the file,
// then secrets from the environment). The caller applies flags, then
// Validate.
func LoadExporter(path string) (*Exporter, error) {
	c := &Exporter{Listen: "127.0.0.1:7443", BoundsPath: "rgwsync-bounds.db", LogLevel: "info"}
	c.Data.Enabled = true // objects follow the metadata unless data.enabled: false
	if err := load(path, c); err != nil {
		return nil, err
	}
	envOverride(&c.Source.AccessKey, EnvSourceAccessKey)
	envOverride(&c.Source.SecretKey, EnvSourceSecretKey)
	return c, nil
}

// LoadApplier reads an applier configuration like LoadExporter.
func LoadApplier(path string) (*Applier, error) {
	c := &Applier{Listen: "127.0.0.1:7444", LogLevel: "info"}
	if err := load(path, c); err != nil {
		return nil, err
	}
	envOverride(&c.Destination.AccessKey, EnvDestAccessKey)
	envOverride(&c.Destination.SecretKey, EnvDestSecretKey)
	return c, nil
}

func load(path string, into any) error {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func envOverride(dst *string, env string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		*dst = v
	}
}

// Validate checks an exporter configuration.
func (c *Exporter) Validate() error {
	var errs []error
	errs = append(errs, checkGateway("source", c.Source, EnvSourceAccessKey, EnvSourceSecretKey)...)
	errs = append(errs, checkAddr("listen", c.Listen, true), checkAddr("metrics_listen", c.MetricsListen, false),
		checkLevel(c.LogLevel), checkTLS(c.TLS, false))
	if c.BoundsPath == "" {
		errs = append(errs, errors.New("bounds_path: required"))
	}
	s := c.Sync
	errs = append(errs, nonNeg("sync.batch_entries", s.BatchEntries), nonNeg("sync.fetch_concurrency", s.FetchConcurrency),
		nonNeg("sync.max_inflight_batches", s.MaxInflightBatches), nonNeg("sync.max_inflight_bytes", int(s.MaxInflightBytes)),
		nonNegDur("sync.poll_min", s.PollMin), nonNegDur("sync.poll_max", s.PollMax), nonNegDur("sync.stall_after", s.StallAfter),
		nonNegDur("sync.retry_min", s.RetryMin), nonNegDur("sync.retry_max", s.RetryMax))
	if s.PollMin > 0 && s.PollMax > 0 && s.PollMin > s.PollMax {
		errs = append(errs, fmt.Errorf("sync.poll_min %s is above sync.poll_max %s", s.PollMin, s.PollMax))
	}
	if s.BandwidthBytesPerSecond < 0 {
		errs = append(errs, fmt.Errorf("sync.bandwidth_bytes_per_second: %d is negative", s.BandwidthBytesPerSecond))
	}
	for _, g := range append(append([]string(nil), c.Filter.Include...), c.Filter.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			errs = append(errs, fmt.Errorf("filter: bad pattern %q: %v", g, err))
		}
	}
	errs = append(errs, nonNegDur("trim.interval", c.Trim.Interval))
	if c.Data.InlineMax < 0 || c.Data.InlineMax > 8<<20 {
		errs = append(errs, fmt.Errorf("data.inline_max %d: want 0..8 MiB (a batch must fit a gRPC message)", c.Data.InlineMax))
	}
	if c.Data.ChunkSize < 0 || c.Data.ChunkSize > 4<<20 {
		errs = append(errs, fmt.Errorf("data.chunk_size %d: want 0..4 MiB", c.Data.ChunkSize))
	}
	if s.BatchEntries > 1000 {
		errs = append(errs, fmt.Errorf("sync.batch_entries %d: the gateway returns at most 1000 log entries per call", s.BatchEntries))
	}
	for _, sec := range s.Sections {
		switch sec {
		case "user", "bucket", "bucket.instance", "otp", "roles", "topic", "account", "group":
		default:
			errs = append(errs, fmt.Errorf("sync.sections: unknown metadata section %q", sec))
		}
	}
	return joinErrs(errs)
}

// Validate checks an applier configuration.
func (c *Applier) Validate() error {
	var errs []error
	errs = append(errs, checkGateway("destination", c.Destination.Gateway, EnvDestAccessKey, EnvDestSecretKey)...)
	if c.Exporter == "" {
		errs = append(errs, errors.New("exporter: required (host:port of rgwsync-exporter)"))
	} else {
		errs = append(errs, checkAddr("exporter", c.Exporter, true))
	}
	errs = append(errs, checkAddr("listen", c.Listen, false), checkAddr("metrics_listen", c.MetricsListen, false),
		checkLevel(c.LogLevel), checkTLS(c.TLS, true))
	if host, _, err := net.SplitHostPort(c.Exporter); err == nil && host == "" && !c.TLS.Insecure && c.TLS.ServerName == "" {
		errs = append(errs, fmt.Errorf("tls.server_name: required, exporter %q names no host to verify its certificate against", c.Exporter))
	}
	l := c.Lease
	errs = append(errs, nonNegDur("lease.length", l.Length), nonNegDur("lease.renew", l.Renew),
		nonNeg("lease.id_base", l.IDBase), nonNeg("lease.max_members", l.MaxMembers),
		nonNeg("apply.concurrency", c.Apply.Concurrency), nonNeg("apply.max_inflight_batches", c.Apply.MaxInflightBatches))
	if l.Length > 0 && l.Length < 3*time.Second {
		errs = append(errs, fmt.Errorf("lease.length %s: at least 3s", l.Length))
	}
	if l.Length > 0 && l.Renew > 0 && l.Renew >= l.Length/2 {
		errs = append(errs, fmt.Errorf("lease.renew %s must be under half of lease.length %s", l.Renew, l.Length))
	}
	switch c.Apply.UpdateType {
	case "", "update-by-version":
	case "update-by-timestamp":
		errs = append(errs, errors.New("apply.update_type update-by-timestamp: refused, it crashes radosgw 16.2.15 on a new bucket.instance (SIGSEGV in put_pre)"))
	default:
		errs = append(errs, fmt.Errorf("apply.update_type %q: want empty (apply always, the default) or update-by-version", c.Apply.UpdateType))
	}
	return joinErrs(errs)
}

func checkGateway(name string, g Gateway, envAK, envSK string) []error {
	var errs []error
	if g.Endpoint == "" {
		errs = append(errs, fmt.Errorf("%s.endpoint: required (e.g. http://rgw.example:8080)", name))
	} else if u, err := url.Parse(g.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s.endpoint %q: want http(s)://host[:port]", name, g.Endpoint))
	}
	if g.AccessKey == "" {
		errs = append(errs, fmt.Errorf("%s.access_key: required (or set %s)", name, envAK))
	}
	if g.SecretKey == "" {
		errs = append(errs, fmt.Errorf("%s.secret_key: required (or set %s)", name, envSK))
	}
	if g.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: negative", name))
	}
	return errs
}

func checkAddr(key, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s: required (host:port)", key)
		}
		return nil
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return fmt.Errorf("%s %q: want host:port", key, v)
	}
	return nil
}

func checkLevel(l string) error {
	switch strings.ToLower(l) {
	case "", "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("log_level %q: want debug, info, warn or error", l)
}

func checkTLS(t TLS, client bool) error {
	var errs []error
	if !client && t.ServerName != "" {
		errs = append(errs, errors.New("tls.server_name: applier only (the name the applier expects in the exporter's certificate)"))
	}
	for i, p := range t.AllowedPeers {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, fmt.Errorf("tls.allowed_peers[%d]: empty", i))
		}
	}
	if t.Insecure {
		if t.CA != "" || t.Cert != "" || t.Key != "" || len(t.AllowedPeers) > 0 || t.ServerName != "" {
			errs = append(errs, errors.New("tls.insecure: true disables TLS: remove tls.ca, cert, key, allowed_peers and server_name (or tls.insecure)"))
		}
		return errors.Join(errs...)
	}
	if t.CA == "" || t.Cert == "" || t.Key == "" {
		errs = append(errs, errors.New("tls: ca, cert and key are required (or tls.insecure: true for plaintext on loopback)"))
	}
	return errors.Join(errs...)
}

func nonNeg(key string, v int) error {
	if v < 0 {
		return fmt.Errorf("%s: %d is negative", key, v)
	}
	return nil
}

func nonNegDur(key string, v time.Duration) error {
	if v < 0 {
		return fmt.Errorf("%s: %s is negative", key, v)
	}
	return nil
}

func joinErrs(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(out...))
}
