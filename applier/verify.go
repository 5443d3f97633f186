package main

// rgwsync-applier verify: compares the destination with the source, read
// through the exporter (internal/verifier).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/filter"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/statuscli"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
	"github.com/rgwsync/rgwsync/internal/verifier"
	"google.golang.org/grpc"
)

// bucketFlags is a repeatable -bucket.
type bucketFlags []string

func (b *bucketFlags) String() string { return strings.Join(*b, ",") }
func (b *bucketFlags) Set(v string) error {
	*b = append(*b, strings.Replace(v, "/", ":", 1)) // "tenant/name" as the metadata writes it
	return nil
}

// verifyMain runs the verify subcommand: exit 0 when the zones are equal,
// 1 when it found differences, 2 when it could not compare.
func verifyMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the applier's YAML configuration (exporter, tls, destination)")
	var buckets bucketFlags
	fs.Var(&buckets, "bucket", `only this bucket ("name" or "tenant/name"; repeatable); default: every replicated bucket`)
	asJSON := fs.Bool("json", false, "print each difference as a JSON line")
	rate := fs.Float64("rate", 0, "at most this many requests per second to each zone (0: no limit)")
	concurrency := fs.Int("concurrency", 16, "versions whose attributes are read at once")
	attrs := fs.Bool("attrs", true, "compare every version's attributes too (content headers, metadata, tags, ACL, owner)")
	match := fs.String("match", "", "only users and buckets whose name matches this glob (path.Match; a tenant's as \"tenant/name\")")
	metadata := fs.Bool("metadata", true, "compare users, buckets and bucket instances (default true; false when -bucket is given)")
	recheck := fs.Duration("recheck-after", 10*time.Second, "read a differing key again after this long before reporting it")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: none)")
	if err := fs.Parse(args); err != nil {
		return &statuscli.ExitError{Code: 2, Err: err}
	}
	mdSet := false
	fs.Visit(func(f *flag.Flag) { mdSet = mdSet || f.Name == "metadata" })
	if len(buckets) > 0 && !mdSet {
		*metadata = false
	}
	cfg, conn, log, err := exporterOf(*path, stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	admin, err := rgwadmin.New(rgwadmin.Config{Endpoint: cfg.Destination.Endpoint, AccessKey: cfg.Destination.AccessKey,
		SecretKey: cfg.Destination.SecretKey, Region: cfg.Destination.Region, Timeout: cfg.Destination.Timeout, Logger: log})
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("destination: %w", err)}
	}
	objects, err := rgwobj.New(rgwobj.Config{Endpoint: cfg.Destination.Endpoint, AccessKey: cfg.Destination.AccessKey,
		SecretKey: cfg.Destination.SecretKey, Region: cfg.Destination.Region, Timeout: cfg.Destination.Timeout, Logger: log})
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("destination objects: %w", err)}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	scope, err := v1.NewSourceServiceClient(conn).GetScope(ctx, &v1.GetScopeRequest{})
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("exporter %s: what it replicates: %w", cfg.Exporter, err)}
	}
	keep, err := scopeFilter(scope, *match)
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: err}
	}
	enc := json.NewEncoder(stdout)
	vc := verifier.Config{
		Source: verifier.Source(v1.NewSourceServiceClient(conn)), Destination: verifier.Zone(admin, objects),
		Buckets: buckets, Metadata: *metadata, Sections: scope.GetSections(), Keep: keep, Attrs: *attrs, Rate: *rate, Concurrency: *concurrency, RecheckAfter: *recheck,
		Report: func(d verifier.Diff) {
			if *asJSON {
				_ = enc.Encode(d)
			} else {
				fmt.Fprintln(stdout, d)
			}
		},
	}
	if !*quiet {
		vc.Progress = stderr
	}
	res, err := verifier.Run(ctx, vc)
	summary := fmt.Sprintf("verify: %d bucket(s), %d versions compared in %s; %d difference(s); %d key(s) changed on the source during the verify (not compared)",
		res.Buckets, res.Versions, res.Elapsed.Round(time.Millisecond), res.Differences, res.Changed)
	if err != nil {
		fmt.Fprintln(stderr, summary)
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("verify: %w", err)}
	}
	fmt.Fprintln(stderr, summary)
	if res.Differences > 0 {
		return &statuscli.ExitError{Code: 1, Err: fmt.Errorf("verify: %d difference(s) found", res.Differences)}
	}
	return nil
}

// scopeFilter keeps the metadata keys the exporter replicates (its
// sections and bucket filter) that match (a glob over user ids and bucket
// names; "" matches all).
func scopeFilter(scope *v1.GetScopeResponse, match string) (func(section, key string) bool, error) {
	f, err := filter.New(scope.GetInclude(), scope.GetExclude())
	if err != nil {
		return nil, fmt.Errorf("the exporter's bucket filter: %w", err)
	}
	if _, err := path.Match(match, ""); err != nil {
		return nil, fmt.Errorf("-match %q: %w", match, err)
	}
	sections := map[string]bool{}
	for _, s := range scope.GetSections() {
		sections[s] = true
	}
	return func(section, key string) bool {
		if !sections[section] || !f.Metadata(section, key) {
			return false
		}
		if match == "" {
			return true
		}
		name, _, _ := strings.Cut(key, ":") // a bucket instance: its bucket
		ok, _ := path.Match(match, name)
		return ok
	}, nil
}

// exporterOf loads the applier's configuration at path and dials its
// exporter, as the applier does (a subcommand's errors: exit status 2).
func exporterOf(path string, stderr io.Writer) (*config.Applier, *grpc.ClientConn, *slog.Logger, error) {
	cfg, err := config.LoadApplier(path)
	if err != nil {
		return nil, nil, nil, &statuscli.ExitError{Code: 2, Err: err}
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, nil, &statuscli.ExitError{Code: 2, Err: err}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	creds, err := tlsconfig.ClientCreds(cfg.TLS, cfg.Exporter, log)
	if err != nil {
		return nil, nil, nil, &statuscli.ExitError{Code: 2, Err: err}
	}
	conn, err := dialExporter(cfg.Exporter, creds, grpcprom.NewClientMetrics())
	if err != nil {
		return nil, nil, nil, &statuscli.ExitError{Code: 2, Err: err}
	}
	return cfg, conn, log, nil
}
