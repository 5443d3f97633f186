// Package verifier compares the destination with the source, as
// `rgwsync-applier verify` does: the metadata the exporter replicates
// (users, bucket entry points, bucket instances) and every object version
// of the replicated buckets — which versions exist, which is current,
// delete markers, size, ETag, and (Attrs) content headers, user metadata,
// tags, ACL and owner. A difference is reported only if it is still there
// when the key is read again after RecheckAfter, and not when the source
// changed the key after the verify began (the sync may not have had it
// yet): those are counted as changed.
package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/verify"
)

// Config is one verify.
type Config struct {
	Source, Destination Side
	// Buckets to compare ("name" or "tenant:name"); empty: every bucket
	// the source's metadata lists (as the exporter serves them: the
	// replicated ones).
	Buckets []string
	// Metadata: compare the metadata sections too.
	Metadata bool
	Sections []string // default rgwlog.DefaultSections
	// Keep says which metadata keys (and, through section "bucket",
	// which buckets) are compared (nil: all): the exporter's scope, so
	// that what it does not replicate is not a difference.
	Keep func(section, key string) bool
	// Attrs: compare every version's attributes (one request per version
	// and side more).
	Attrs bool
	// Rate bounds the requests per second to each side (0: none).
	Rate float64
	// Concurrency: versions whose attributes are read at once (default 16).
	Concurrency int
	// RecheckAfter: how long after a difference is seen the key is read
	// again (the sync's lag).
	RecheckAfter time.Duration
	// MaxSuspects bounds the keys held for a recheck at once.
	MaxSuspects int
	// Progress gets a line every ProgressEvery (nil: none).
	Progress      io.Writer
	ProgressEvery time.Duration
	// Report gets each difference as it is confirmed.
	Report func(Diff)
}

// Diff is one confirmed difference.
type Diff struct {
	Kind        string `json:"kind"` // "object", "bucket", or a metadata section
	Bucket      string `json:"bucket,omitempty"`
	Key         string `json:"key"`
	VersionID   string `json:"version_id,omitempty"`
	Field       string `json:"field"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

func (d Diff) String() string {
	where := d.Key
	if d.Source == "" && d.Destination == "" {
		return fmt.Sprintf("%s %s: %s", d.Kind, where, d.Field)
	}
	if d.Kind == "object" {
		where = d.Bucket + "/" + d.Key
		if d.VersionID != "" {
			where += " version " + d.VersionID
		}
	}
	return fmt.Sprintf("%s %s: %s: source %s, destination %s", d.Kind, where, d.Field, quoteEmpty(d.Source), quoteEmpty(d.Destination))
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// Result sums a verify up.
type Result struct {
	Buckets     int
	Versions    int64 // compared (the larger side of each key)
	Differences int
	// Changed: keys that differed and that the source changed after the
	// verify began (not reported: the sync may not have had them yet).
	Changed int
	Elapsed time.Duration
}

// counter is a side that can count a bucket's versions cheaply (the
// destination zone's bucket stats): the estimate of the time left.
type counter interface {
	CountVersions(ctx context.Context, bucket string) (int64, error)
}

type stats struct {
	versions, statted atomic.Int64
	total             atomic.Int64 // versions expected (0: unknown)
	diffs, changed    atomic.Int64
}

type run struct {
	cfg      Config
	src, dst Side
	start    time.Time
	stats    stats
	named    bool // the buckets were named (Config.Buckets), not listed
}

// Run compares; it returns when everything was compared (the differences
// went to Report) or on the first error of either side.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Source == nil || cfg.Destination == nil {
		return Result{}, errors.New("verify: a source and a destination are required")
	}
	if cfg.RecheckAfter <= 0 {
		cfg.RecheckAfter = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.MaxSuspects <= 0 {
		cfg.MaxSuspects = 10000
	}
	if len(cfg.Sections) == 0 {
		cfg.Sections = rgwlog.DefaultSections
	}
	if cfg.Report == nil {
		cfg.Report = func(Diff) {}
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	v := &run{cfg: cfg, src: limit(cfg.Source, newLimiter(cfg.Rate)), dst: limit(cfg.Destination, newLimiter(cfg.Rate)), start: time.Now()}
	stop := v.progress()
	defer stop()
	if cfg.Metadata {
		if err := v.metadata(ctx); err != nil {
			return v.result(0), err
		}
	}
	buckets := cfg.Buckets
	v.named = len(buckets) > 0
	if len(buckets) == 0 {
		keys, err := verify.Keys(ctx, v.src, rgwlog.SectionBucket)
		if err != nil {
			return v.result(0), fmt.Errorf("list the source's buckets: %w", err)
		}
		for _, k := range keys {
			if cfg.Keep == nil || cfg.Keep(rgwlog.SectionBucket, k) {
				buckets = append(buckets, strings.Replace(k, "/", ":", 1))
			}
		}
	}
	// The counts feed the estimate as they come: read beside the
	// comparison, not before it (thousands of buckets' stats would delay
	// the first comparison by as many requests).
	cctx, stopCount := context.WithCancel(ctx)
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		v.countVersions(cctx, buckets)
	}()
	defer func() {
		stopCount()
		<-counted
	}()
	for i, b := range buckets {
		if err := v.bucket(ctx, b); err != nil {
			return v.result(i), fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return v.result(len(buckets)), nil
}

func (v *run) result(buckets int) Result {
	return Result{Buckets: buckets, Versions: v.stats.versions.Load(), Differences: int(v.stats.diffs.Load()),
		Changed: int(v.stats.changed.Load()), Elapsed: time.Since(v.start)}
}

func (v *run) report(ds []Diff) {
	for _, d := range ds {
		v.stats.diffs.Add(1)
		v.cfg.Report(d)
	}
}

// progress prints a line every ProgressEvery until stopped.
func (v *run) progress() (stop func()) {
	if v.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	t := time.NewTicker(v.cfg.ProgressEvery)
	go func() {
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n, el := v.stats.versions.Load(), time.Since(v.start)
				left := ""
				if total, rate := v.stats.total.Load(), float64(n)/el.Seconds(); total > n && rate > 0 {
					left = fmt.Sprintf(" of about %d, about %s left", total, (time.Duration(float64(total-n)/rate) * time.Second).Round(time.Second))
				}
				fmt.Fprintf(v.cfg.Progress, "verify: %d versions compared%s (%.0f/s), %d differences, %d changed during the verify, %s\n",
					n, left, float64(n)/el.Seconds(), v.stats.diffs.Load(), v.stats.changed.Load(), el.Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// countVersions adds up the destination's counts of the buckets' versions
// (best effort: without them the progress has no estimate of the time left;
// until all are read, the estimate counts those read).
func (v *run) countVersions(ctx context.Context, buckets []string) {
	c, ok := v.cfg.Destination.(counter)
	if !ok || v.cfg.Progress == nil {
		return
	}
	for _, b := range buckets {
		n, err := c.CountVersions(ctx, b)
		if err != nil {
			return
		}
		v.stats.total.Add(n)
	}
}

// suspect is a key that differed, with when to look again.
type suspect struct {
	key string
	at  time.Time
}

// bucket compares one bucket's objects, rechecking what differs.
func (v *run) bucket(ctx context.Context, bucket string) error {
	var held []suspect
	recheck := func(all bool) error {
		for len(held) > 0 && (all || len(held) >= v.cfg.MaxSuspects || time.Now().After(held[0].at)) {
			s := held[0]
			held = held[1:]
			if wait := time.Until(s.at); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			ds, err := v.recheck(ctx, bucket, s.key)
			if err != nil {
				return err
			}
			v.report(ds)
		}
		return nil
	}
	err := v.bucketDiffs(ctx, bucket, func(key string, _ []Diff) error {
		held = append(held, suspect{key: key, at: time.Now().Add(v.cfg.RecheckAfter)})
		return recheck(false)
	})
	if err != nil {
		if isNotFound(err) {
			return v.bucketMissing(ctx, bucket, err)
		}
		return err
	}
	return recheck(true)
}

// bucketMissing: a listing answered NoSuchBucket; a difference when the
// source has the bucket and the destination does not.
func (v *run) bucketMissing(ctx context.Context, bucket string, err error) error {
	key := strings.Replace(bucket, ":", "/", 1)
	_, serr := v.src.GetMetadata(ctx, rgwlog.SectionBucket, key)
	_, derr := v.dst.GetMetadata(ctx, rgwlog.SectionBucket, key)
	switch {
	case serr == nil && errors.Is(derr, rgwadmin.ErrNotFound):
		v.report([]Diff{{Kind: "bucket", Bucket: bucket, Key: bucket, Field: "bucket", Source: "present", Destination: "missing"}})
		return nil
	case errors.Is(serr, rgwadmin.ErrNotFound) && derr == nil:
		v.report([]Diff{{Kind: "bucket", Bucket: bucket, Key: bucket, Field: "bucket", Source: "missing", Destination: "present"}})
		return nil
	case errors.Is(serr, rgwadmin.ErrNotFound) && errors.Is(derr, rgwadmin.ErrNotFound) && v.named:
		return fmt.Errorf("no such bucket on either zone")
	case errors.Is(serr, rgwadmin.ErrNotFound) && errors.Is(derr, rgwadmin.ErrNotFound):
		return nil // removed on both since the list of buckets was read
	}
	return err
}

// recheck reads key again on both sides: its differences now, or none
// when the source changed it after the verify began.
func (v *run) recheck(ctx context.Context, bucket, key string) ([]Diff, error) {
	src, dst, err := v.keyNow(ctx, bucket, key)
	if err != nil {
		return nil, err
	}
	for _, e := range src {
		if e.Mtime.After(v.start) {
			v.stats.changed.Add(1)
			return nil, nil
		}
	}
	return v.keyDiffs(ctx, bucket, key, src, dst)
}

// metadata compares the metadata sections (their keys held in memory:
// users and buckets, not objects), each difference read again after
// RecheckAfter.
func (v *run) metadata(ctx context.Context) error {
	diffs, err := verify.Metadata(ctx, v.src, v.dst, v.cfg.Sections, v.cfg.Keep)
	if err != nil {
		return err
	}
	if len(diffs) == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(time.Now().Add(v.cfg.RecheckAfter))):
	}
	for _, d := range diffs {
		again, err := verify.Metadata(ctx, one{v.src, d.Section, d.Key}, one{v.dst, d.Section, d.Key}, []string{d.Section}, nil)
		if err != nil {
			return err
		}
		for _, a := range again {
			d := Diff{Kind: a.Section, Key: a.Key, Field: a.What}
			if strings.Contains(a.What, "only on the destination") {
				d.Field, d.Source, d.Destination = "entry", "missing", "present"
			} else if strings.Contains(a.What, "missing on the destination") {
				d.Field, d.Source, d.Destination = "entry", "present", "missing"
			}
			v.report([]Diff{d})
		}
	}
	return nil
}

// one is a side whose section lists one key at most (a recheck).
type one struct {
	Side
	section, key string
}

func (o one) ListMetadataKeys(ctx context.Context, section, _ string, _ int) (rgwadmin.KeyPage, error) {
	_, err := o.GetMetadata(ctx, section, o.key)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return rgwadmin.KeyPage{}, nil
	}
	if err != nil {
		return rgwadmin.KeyPage{}, err
	}
	return rgwadmin.KeyPage{Keys: []string{o.key}}, nil
}

func isNotFound(err error) bool {
	var gerr *rgwobj.GatewayError
	return errors.Is(err, rgwobj.ErrNotFound) || errors.Is(err, rgwadmin.ErrNotFound) ||
		(errors.As(err, &gerr) && slices.Contains([]string{"NoSuchBucket", "NoSuchKey"}, gerr.Code))
}
