// Package exporter is the source side of rgwsync. It serves the Replicate
// stream to appliers: for every shard an applier subscribes to, it reads the
// source gateway's log after the destination's bound, fetches the metadata
// blobs the entries name and streams them in batches; when the applier acks a
// batch it stores the new bound durably (bbolt, fsynced) before it sends
// anything that depends on it. It also serves Status and GetBounds.
//
// Invariants:
//   - a bound only moves to a batch's through-marker after that batch was
//     acked (and every earlier batch of the shard was acked);
//   - items the applier (or the source fetch) failed on are stored with the
//     bound as retries in the same transaction, and sent again until they
//     succeed;
//   - a destination without bounds is initialised by recording every mdlog
//     shard's head marker *before* the full sync lists keys, and incremental
//     shards are served only once the full sync is done, so nothing logged
//     during the full sync is missed or applied out of order.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/filter"
	"github.com/rgwsync/rgwsync/internal/gwhealth"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Source is what the exporter needs of the source gateway's admin API.
type Source interface {
	MDLogInfo(ctx context.Context) (rgwadmin.LogInfo, error)
	MDLogShardInfo(ctx context.Context, period string, shard int) (rgwadmin.ShardInfo, error)
	ListMDLog(ctx context.Context, period string, shard int, marker string, max int) (rgwadmin.MDLogPage, error)
	ListMetadataKeys(ctx context.Context, section, marker string, max int) (rgwadmin.KeyPage, error)
	GetMetadata(ctx context.Context, section, key string) ([]byte, error)
	TrimMDLog(ctx context.Context, period string, shard int, marker string) error
}

// Config of an Exporter. Zero values take the defaults.
type Config struct {
	ID             string
	Source         Source
	SourceEndpoint string // for Status
	// Gateway tells whether the source answers, from the requests made to
	// it (status; nil: not shown).
	Gateway *gwhealth.Tracker
	Store   *checkpoint.Store
	// Metadata sections replicated (default user, bucket.instance, bucket).
	Sections []string
	// Log entries read per batch (default 100).
	BatchEntries int
	// Parallel reads from the source: metadata fetches per batch, and object
	// stats/reads across the whole exporter (default 16).
	FetchConcurrency int
	// Idle polling of a caught-up shard: starts at PollMin after the last
	// entry and doubles up to PollMax (defaults 50ms, 1s).
	PollMin, PollMax time.Duration
	// Backoff of a failed item: RetryMin doubling up to RetryMax.
	RetryMin, RetryMax time.Duration
	// Flow control defaults (an applier may ask for less).
	MaxInflightBatches int   // per shard, default 4
	MaxInflightBytes   int64 // per stream, default 64 MiB
	// DrainTimeout bounds how long a stream waits for acks at shutdown
	// (default 10s).
	DrainTimeout time.Duration
	// How often the source's shard heads are read for Status (default 5s).
	HeadPollInterval time.Duration
	// Data enables data (object) sync; Data and Objects are the source's
	// admin and S3 APIs for it.
	Data    DataSource
	Objects ObjectSource
	// Objects up to InlineMax bytes travel inside their batch (default
	// 1 MiB); larger ones follow in ChunkSize chunks (default 1 MiB).
	InlineMax int64
	ChunkSize int
	// RecheckDelay: a deleted object is reconciled once more this long
	// after its delete was applied (default 30s; negative: never).
	RecheckDelay time.Duration
	// StallAfter: a shard with work pending and no batch sent nor ack taken
	// for this long is stalled: logged, counted, shown (default 2m).
	StallAfter time.Duration
	// Filter selects the buckets replicated (nil: all).
	Filter *filter.Buckets
	// BandwidthBytesPerSecond caps the payload streamed on each stream (0:
	// unlimited).
	BandwidthBytesPerSecond int64
	// Trim enables trimming the source mdlog, every TrimInterval (default
	// 10m), up to what every known destination has applied.
	Trim         bool
	TrimInterval time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

func (c *Config) setDefaults() {
	if len(c.Sections) == 0 {
		c.Sections = rgwlog.DefaultSections
	}
	setDefault(&c.BatchEntries, 100)
	setDefault(&c.FetchConcurrency, 16)
	setDefault(&c.PollMin, 50*time.Millisecond)
	setDefault(&c.PollMax, time.Second)
	setDefault(&c.RetryMin, time.Second)
	setDefault(&c.RetryMax, 5*time.Minute)
	setDefault(&c.MaxInflightBatches, 4)
	setDefault(&c.MaxInflightBytes, 16<<20)
	setDefault(&c.HeadPollInterval, 5*time.Second)
	setDefault(&c.TrimInterval, 10*time.Minute)
	setDefault(&c.DrainTimeout, 10*time.Second)
	setDefault(&c.InlineMax, 1<<20)
	setDefault(&c.RecheckDelay, 30*time.Second)
	setDefault(&c.ChunkSize, 1<<20)
	setDefault(&c.StallAfter, 2*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Exporter serves ReplicationService and StatusService.
type Exporter struct {
	v1.UnimplementedReplicationServiceServer
	v1.UnimplementedStatusServiceServer
	v1.UnimplementedSourceServiceServer

	cfg        Config
	log        *slog.Logger
	period     string
	mdShards   int
	dataShards int // 0: data sync off
	sections   map[string]bool

	mu    sync.Mutex
	dests map[string]*destination
	heads map[uint32]string // mdlog shard -> head marker, as last read
	// listing: the newest bucket listing shared by resyncs (bucketShardsSince).
	listingMu sync.Mutex
	listing   *bucketListing
	gens      genCache     // bucket instances' index log generations (generations.go)
	noGensAt  atomic.Int64 // when the source last named no index log generations (mayHaveGenerations)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	drainOnce sync.Once
	draining  chan struct{} // closed by Drain

	fetchSem *semaphore.Weighted // object reads from the source, exporter-wide

	applied []*appliedLane // bucket entry points acked, their instances to check (instances.go)
}

// New checks the source (a wrong key or endpoint fails here, with the
// gateway's answer) and returns an exporter. Start begins background work.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	cfg.setDefaults()
	if cfg.Source == nil || cfg.Store == nil {
		return nil, errors.New("exporter: Source and Store are required")
	}
	info, err := cfg.Source.MDLogInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the source's metadata log info: %w", err)
	}
	if info.NumShards <= 0 {
		return nil, fmt.Errorf("source metadata log has %d shards: is this a metadata master in a zonegroup with more than one zone?", info.NumShards)
	}
	e := &Exporter{
		applied:  newAppliedLanes(),
		cfg:      cfg,
		log:      cfg.Logger,
		period:   info.Period,
		mdShards: info.NumShards,
		sections: map[string]bool{},
		dests:    map[string]*destination{},
		heads:    map[uint32]string{},
		draining: make(chan struct{}),
		fetchSem: semaphore.NewWeighted(int64(cfg.FetchConcurrency)),
	}
	for _, s := range cfg.Sections {
		e.sections[s] = true
	}
	if cfg.Data != nil {
		if cfg.Objects == nil {
			return nil, errors.New("exporter: data sync needs Objects (the source's S3 API)")
		}
		di, err := cfg.Data.DataLogInfo(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the source's data log info: %w", err)
		}
		if di.NumShards <= 0 {
			return nil, fmt.Errorf("source data log has %d shards", di.NumShards)
		}
		e.dataShards = di.NumShards
	}
	// Destinations known from an earlier run, so Status shows them.
	entries, err := cfg.Store.List("")
	if err != nil {
		return nil, err
	}
	for _, en := range entries {
		e.destinationLocked(en.Key.Destination)
	}
	return e, nil
}

// Start runs the head poller and the instance lanes until Close.
func (e *Exporter) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	for _, l := range e.applied {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.run(ctx, e)
		}()
	}
	if err := e.resumeInstanceChecks(); err != nil {
		e.log.Error("resume the bucket instance checks of the last run (they are done when their buckets next change)", "err", err)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.pollHeads(ctx)
	}()
	if e.cfg.Trim {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.trimLoop(ctx)
		}()
	}
}

// Close stops background work. Streams end when the gRPC server stops.
func (e *Exporter) Close() {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
}

// Drain starts a graceful shutdown: no new batch is sent, the acks of the
// batches in flight are still taken (and stored), and each Replicate
// stream ends once nothing of it is in flight (or after DrainTimeout).
func (e *Exporter) Drain() {
	e.drainOnce.Do(func() { close(e.draining) })
}

func (e *Exporter) isDraining() bool {
	select {
	case <-e.draining:
		return true
	default:
		return false
	}
}

// Period is the source's mdlog period.
func (e *Exporter) Period() string { return e.period }

func (e *Exporter) pollHeads(ctx context.Context) {
	t := time.NewTicker(e.cfg.HeadPollInterval)
	defer t.Stop()
	for {
		e.refreshGauges()
		for i := range e.mdShards {
			si, err := e.cfg.Source.MDLogShardInfo(ctx, e.period, i)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.log.Warn("read source shard head", "shard", i, "err", err)
				continue
			}
			e.setHead(uint32(i), si.Marker)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setHead records a shard's newest marker; it only moves forward (the
// poller and the workers both report, in any order).
// refreshGauges recomputes the lag/behind gauges (they are derived from
// the same state as Status) so /metrics is current without a Status call.
func (e *Exporter) refreshGauges() {
	e.mu.Lock()
	names := make([]string, 0, len(e.dests))
	for n := range e.dests {
		names = append(names, n)
	}
	e.mu.Unlock()
	for _, n := range names {
		if _, err := e.destinationStatus(n, 0); err != nil {
			e.log.Warn("refresh metrics", "destination", n, "err", err)
		}
	}
}

func (e *Exporter) setHead(shard uint32, marker string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if marker == "" {
		return
	}
	if c, err := rgwlog.CompareMDLogMarkers(marker, e.heads[shard]); err == nil && c <= 0 {
		return
	}
	e.heads[shard] = marker
}

func (e *Exporter) head(shard uint32) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.heads[shard]
}

// destination is the state of one destination zone.
type destination struct {
	name string

	initMu      sync.Mutex
	initialised bool

	// dataResync is bumped when a data shard finds its log trimmed past its
	// bound: every data worker of the destination then re-checks.
	dataResync atomic.Uint64
	// shardsAdded is bumped when bucket shards were handed to the data
	// workers that own them (news, instances.go).
	shardsAdded atomic.Uint64
	news        shardNews

	// settled: how far in time the metadata is applied (settled.go).
	settled mdSettled
	// fence: a bucket's instance metadata and the object writes that land
	// by its versioning are never in flight at once (fence.go).
	fence versioningFence

	// resync: object versions asked for by Resync since the start —
	// queued, applied, failed attempts (Status).
	resyncQueued, resyncApplied, resyncFailed atomic.Uint64
	// mdResyncAdded is bumped when metadata keys were asked to be
	// resynced: the mdlog shards' workers look for theirs.
	mdResyncAdded atomic.Uint64

	mu       sync.Mutex
	fullDone chan struct{} // closed once the full sync is done
	subs     map[rgwlog.Unit]*subscription
	stats    map[rgwlog.Unit]*shardStats
	appliers map[string]int
}

func (e *Exporter) destinationLocked(name string) *destination {
	d := e.dests[name]
	if d == nil {
		d = &destination{
			name:     name,
			fullDone: make(chan struct{}),
			subs:     map[rgwlog.Unit]*subscription{},
			stats:    map[rgwlog.Unit]*shardStats{},
			appliers: map[string]int{},
		}
		e.dests[name] = d
	}
	return d
}

func (e *Exporter) destination(name string) *destination {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.destinationLocked(name)
}

func (d *destination) stat(u rgwlog.Unit) *shardStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats[u]
	if s == nil {
		s = &shardStats{}
		d.stats[u] = s
	}
	return s
}

// ensureInitialised records, once per destination, the bounds that make a
// full sync safe: every mdlog shard's head marker first, then the full-sync
// position at its start, in one durable transaction.
func (e *Exporter) ensureInitialised(ctx context.Context, d *destination) error {
	d.initMu.Lock()
	defer d.initMu.Unlock()
	if d.initialised {
		return nil
	}
	fullKey := checkpoint.UnitKey(d.name, rgwlog.Unit{Log: rgwlog.LogMetadataFull})
	b, ok, err := e.cfg.Store.Get(fullKey)
	if err != nil {
		return err
	}
	if !ok {
		heads, err := e.readHeads(ctx)
		if err != nil {
			return fmt.Errorf("initialise destination %s: %w", d.name, err)
		}
		entries := make([]checkpoint.Entry, 0, e.mdShards+1)
		now := time.Now().UTC()
		for i, h := range heads {
			u := rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: uint32(i)}
			entries = append(entries, checkpoint.Entry{Key: checkpoint.UnitKey(d.name, u), Bound: checkpoint.Bound{
				Marker: h, Phase: checkpoint.PhaseIncremental, UpdatedAt: now,
			}})
		}
		b = checkpoint.Bound{Marker: fullPos{}.String(), Phase: checkpoint.PhaseFullSync, UpdatedAt: now}
		entries = append(entries, checkpoint.Entry{Key: fullKey, Bound: b})
		if err := e.cfg.Store.Put(entries...); err != nil {
			return fmt.Errorf("initialise destination %s: %w", d.name, err)
		}
		e.log.Info("new destination: recorded mdlog heads, starting metadata full sync",
			"destination", d.name, "shards", e.mdShards, "period", e.period)
	}
	if e.dataShards > 0 {
		if err := e.initData(ctx, d); err != nil {
			return err
		}
	}
	if b.Phase == checkpoint.PhaseDone {
		d.markFullDone()
	}
	d.initialised = true
	return nil
}

// readHeads reads every mdlog shard's start position, a few at a time.
func (e *Exporter) readHeads(ctx context.Context) ([]string, error) {
	heads := make([]string, e.mdShards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range e.mdShards {
		g.Go(func() error {
			h, err := e.startPosition(gctx, i)
			heads[i] = h
			return err
		})
	}
	return heads, g.Wait()
}

// startPosition is where a new bound of an mdlog shard starts: its newest
// entry, or "" when the log holds no entry at all (then the shard's &info
// marker may name an entry trimmed long ago, which would later look like a
// trim past the bound; and listing from "" misses nothing logged after
// this check).
func (e *Exporter) startPosition(ctx context.Context, shard int) (string, error) {
	oldest, err := e.cfg.Source.ListMDLog(ctx, e.period, shard, "", 1)
	if err != nil {
		return "", fmt.Errorf("read mdlog shard %d: %w", shard, err)
	}
	if len(oldest.Entries) == 0 {
		return "", nil
	}
	si, err := e.cfg.Source.MDLogShardInfo(ctx, e.period, shard)
	if err != nil {
		return "", fmt.Errorf("read mdlog shard %d head: %w", shard, err)
	}
	return si.Marker, nil
}

func (d *destination) markFullDone() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.fullDone:
	default:
		close(d.fullDone)
	}
}

// fullDoneCh is closed once the current full sync is done (a re-sync
// replaces it with a new, open one).
func (d *destination) fullDoneCh() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fullDone
}

func (d *destination) isFullDone() bool {
	select {
	case <-d.fullDoneCh():
		return true
	default:
		return false
	}
}

func (d *destination) reopenFull() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.fullDone:
		d.fullDone = make(chan struct{})
	default:
	}
}

// shardStats is what Status shows of a shard while it is served.
type shardStats struct {
	mu           sync.Mutex
	phase        v1.ShardPhase
	behind       uint64
	behindMore   bool
	oldest       time.Time
	retries      int
	holder       string
	leaseExpires time.Time
	applied      uint64
	bytes        uint64
	inflight     int
	lastErr      string
	bound        string
	// waiting: what the worker waits for while it has work pending (empty:
	// nothing pending); progress: its last batch sent or ack taken, or the
	// moment it began to wait. Together they tell a stall (see stalled).
	waiting    string
	progress   time.Time
	stallShown bool // the stall was logged (once per stall)
}

// wait records what the worker waits for now ("" when it has nothing
// pending). A wait that starts after an idle spell starts the stall clock.
func (s *shardStats) wait(reason string) {
	s.update(func(s *shardStats) {
		if reason != "" && s.waiting == "" {
			s.progress = time.Now()
		}
		s.waiting = reason
		if reason == "" {
			s.stallShown = false
		}
	})
}

// progressed records a batch sent or an ack taken.
func (s *shardStats) progressed() {
	s.update(func(s *shardStats) { s.progress, s.stallShown = time.Now(), false })
}

// stalledSince is when a stall began: the worker waits with work pending
// and has made no progress for at least after; zero when not stalled.
func (s *shardStats) stalledSince(now time.Time, after time.Duration) time.Time {
	if s.waiting == "" || s.holder == "" || s.progress.IsZero() || now.Sub(s.progress) < after {
		return time.Time{}
	}
	return s.progress
}

func (s *shardStats) update(f func(s *shardStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *shardStats) snapshot() shardStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return shardStats{
		phase: s.phase, behind: s.behind, behindMore: s.behindMore, oldest: s.oldest,
		retries: s.retries, holder: s.holder, leaseExpires: s.leaseExpires, applied: s.applied, bytes: s.bytes,
		inflight: s.inflight, lastErr: s.lastErr, bound: s.bound,
		waiting: s.waiting, progress: s.progress, stallShown: s.stallShown,
	}
}
