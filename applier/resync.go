package main

// rgwsync-applier resync: asks the exporter to send again what a verify
// found different (or whole buckets), through the usual pipeline.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/statuscli"
	"github.com/rgwsync/rgwsync/internal/verifier"
)

// resyncMain runs the resync subcommand.
func resyncMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the applier's YAML configuration (exporter, tls, destination)")
	var buckets bucketFlags
	fs.Var(&buckets, "bucket", `every object of this bucket ("name" or "tenant/name"; repeatable)`)
	from := fs.String("from", "", "the differences a verify -json printed (a file; - for stdin): their objects")
	olderThan := fs.Duration("older-than", 0, "every object version the source last modified more than this long ago (e.g. 720h), of the -bucket buckets or of every replicated bucket")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long (with -older-than: 0, no limit, by default)")
	if err := fs.Parse(args); err != nil {
		return &statuscli.ExitError{Code: 2, Err: err}
	}
	if *olderThan > 0 {
		if *from != "" {
			return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("resync: -older-than and -from do not go together")}
		}
		timeoutSet := false
		fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
		if !timeoutSet {
			*timeout = 0
		}
		return resyncOlderMain(*path, buckets, time.Now().Add(-*olderThan), *timeout, stdout, stderr)
	}
	req := &v1.ResyncRequest{Buckets: buckets}
	if *from != "" {
		objs, md, err := readDiffs(*from)
		if err != nil {
			return &statuscli.ExitError{Code: 2, Err: err}
		}
		req.Objects, req.Metadata = objs, md
	}
	if len(req.Buckets) == 0 && len(req.Objects) == 0 && len(req.Metadata) == 0 {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("resync: nothing to do: give -bucket, -from (with differences) or -older-than")}
	}
	cfg, conn, _, err := exporterOf(*path, stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	req.Destination = cfg.Destination.Name
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := v1.NewStatusServiceClient(conn).Resync(ctx, req)
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("resync: %w", err)}
	}
	fmt.Fprintf(stdout, "resync queued: %d index shard(s) to list again, %d object version(s) and %d metadata entr(y/ies) to send again\n",
		resp.GetBucketShards(), resp.GetObjects(), resp.GetMetadata())
	fmt.Fprintln(stdout, "follow it with: rgwsync-exporter errors (the versions wait there until applied), then verify again")
	return nil
}

// readDiffs reads verify -json lines: the object versions and the
// metadata entries to send again (each once).
func readDiffs(path string) ([]*v1.ResyncObject, []*v1.ResyncMetadata, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("-from: %w", err)
		}
		defer f.Close()
		r = f
	}
	seen := map[[3]string]bool{}
	var objs []*v1.ResyncObject
	var md []*v1.ResyncMetadata
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var d verifier.Diff
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, nil, fmt.Errorf("-from %s line %d: not a verify -json line: %w", path, n, err)
		}
		if d.Kind != "object" {
			// A metadata difference: its section and key (a bucket's
			// entry point as "tenant/name", where S3 writes "tenant:name").
			key := d.Key
			if d.Kind == "bucket" {
				key = strings.Replace(key, ":", "/", 1)
			}
			id := [3]string{d.Kind, key, "\x00"}
			if !seen[id] {
				seen[id] = true
				md = append(md, &v1.ResyncMetadata{Section: d.Kind, Key: key})
			}
			continue
		}
		id := [3]string{d.Bucket, d.Key, d.VersionID}
		if !seen[id] {
			seen[id] = true
			objs = append(objs, &v1.ResyncObject{Bucket: d.Bucket, Key: d.Key, VersionId: d.VersionID})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("-from %s: %w", path, err)
	}
	return objs, md, nil
}

// resyncOlderMain runs resync -older-than.
func resyncOlderMain(path string, buckets []string, cutoff time.Time, timeout time.Duration, stdout, stderr io.Writer) error {
	cfg, conn, _, err := exporterOf(path, stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	src := v1.NewSourceServiceClient(conn)
	scope, err := src.GetScope(ctx, &v1.GetScopeRequest{})
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("exporter %s: what it replicates: %w", cfg.Exporter, err)}
	}
	keep, err := scopeFilter(scope, "")
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: err}
	}
	queued, listed, err := resyncOlderThan(ctx, src, v1.NewStatusServiceClient(conn), cfg.Destination.Name, buckets, keep, cutoff, stderr)
	fmt.Fprintf(stdout, "resync queued: %d object version(s) last modified before %s (of %d listed)\n",
		queued, cutoff.UTC().Format(time.RFC3339), listed)
	if err != nil {
		return &statuscli.ExitError{Code: 2, Err: fmt.Errorf("resync: %w", err)}
	}
	fmt.Fprintln(stdout, "follow it with: rgwsync-exporter errors (the versions wait there until applied), then verify again")
	return nil
}
