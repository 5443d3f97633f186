// Package applier is the destination side of rgwsync. It holds leases on
// shards (package lease), dials the exporter's Replicate stream, subscribes
// to the shards it holds, writes every batch into the destination gateway in
// log order and acks it. The lease is checked before each write and before
// the ack (fencing): a shard whose lease is lost is dropped at once and its
// unacked batch is left for the next holder, which gets it again from the
// exporter (at-least-once; every write is idempotent).
package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/gwhealth"
	"github.com/rgwsync/rgwsync/internal/lease"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Dest is what the applier needs of the destination gateway.
type Dest interface {
	GetMetadata(ctx context.Context, section, key string) ([]byte, error)
	PutMetadata(ctx context.Context, section, key string, blob []byte, updateType string) (rgwadmin.UpdateStatus, error)
	DeleteMetadata(ctx context.Context, section, key string) error
}

// Leases is what the applier needs of the lease manager.
type Leases interface {
	Valid(u rgwlog.Unit) bool
	Deadline(u rgwlog.Unit) (time.Time, bool)
	Held() map[rgwlog.Unit]time.Time
	Release(u rgwlog.Unit)
	// Exclusive: a lock one applier of the destination holds at a time
	// (lease.Manager.Exclusive).
	Exclusive(ctx context.Context, name string) (release func(), err error)
}

// Config of an Applier.
type Config struct {
	// Gateway tells whether zone-b answers, from the requests made to it
	// (status; nil: not shown).
	Gateway      *gwhealth.Tracker
	ID           string // locker id, also sent in Hello
	Destination  string // bounds are kept under this name at the exporter
	DestEndpoint string
	Dest         Dest
	Conn         grpc.ClientConnInterface
	// Objects is the destination's S3 API, for data sync (nil: metadata
	// only; the applier then leases no data shard).
	Objects ObjectDest
	// Lease is the template of the lease manager, started once the
	// exporter's Welcome tells how many shards there are (Units and
	// OnChange are filled in here).
	Lease lease.Config
	// Parallel writes within one ordering group of a batch (default 16).
	ApplyConcurrency int
	// UpdateType is passed as update-type on metadata writes. Empty (the
	// default, what Ceph's own metadata sync does: APPLY_ALWAYS) is the
	// only safe value on 16.2.15: update-by-timestamp on a new
	// bucket.instance crashes radosgw (SIGSEGV in put_pre) and
	// update-by-version skips it. Ordering, not the gateway, keeps writes
	// fresh: one holder per shard (leases), log order, and blobs fetched
	// when the batch is built.
	UpdateType         string
	MaxInflightBatches uint32
	ReconnectMin       time.Duration
	ReconnectMax       time.Duration
	// DrainTimeout bounds the graceful shutdown: the batch being applied is
	// finished and acked within it (default 10s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
	// Audit, if set, receives one JSON line per applied batch (shard, seq,
	// start/end of the writes, the lease deadline held during them): the
	// evidence that no shard was applied by two appliers at once.
	Audit io.Writer
}

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	Applier       string    `json:"applier"`
	Shard         string    `json:"shard"`
	Seq           uint64    `json:"seq"`
	Entries       int       `json:"entries"`           // metadata entries
	Objects       int       `json:"objects,omitempty"` // object ops
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	LeaseDeadline time.Time `json:"lease_deadline"`
}

// Applier applies batches from one exporter into one destination.
type Applier struct {
	v1.UnimplementedStatusServiceServer

	cfg Config
	log *slog.Logger

	// leaseNote wakes the session to reconcile its subscriptions with the
	// leases held (coalesced: the session reads the state, not events).
	leaseNote chan struct{}
	// acquired counts each unit's acquisitions; lostWhy is why a unit was
	// last lost (under mu). A worker started under an older acquisition
	// is restarted: the lease lapsed in between.
	acquired map[rgwlog.Unit]uint64
	lostWhy  map[rgwlog.Unit]string

	leases     Leases
	leasesDone chan struct{}
	leaseCtx   context.Context
	auditMu    sync.Mutex

	gates      bucketGates // a bucket's writes against a suspension write
	verMu      sync.Mutex
	versioning map[string]versioningSeen // zone-b's bucket versioning, recently read
	// leftChecked: buckets whose zone-b instance this process looked at
	// for a suspension left by an interrupted write (undoLeftSuspension).
	leftChecked map[string]bool

	mu        sync.Mutex
	shards    map[rgwlog.Unit]*shardState
	connected bool
	lastErr   string
}

type shardState struct {
	phase    v1.ShardPhase
	applied  uint64
	failed   uint64
	lastSeq  uint64
	through  string
	head     string
	more     bool
	lastErr  string
	lastTime time.Time
}

// New returns an applier. Run does the work.
func New(cfg Config) (*Applier, error) {
	if cfg.Dest == nil || cfg.Conn == nil || cfg.ID == "" || cfg.Destination == "" {
		return nil, errors.New("applier: Dest, Conn, ID and Destination are required")
	}
	if cfg.ApplyConcurrency <= 0 {
		cfg.ApplyConcurrency = 16
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 200 * time.Millisecond
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Applier{
		cfg:       cfg,
		log:       cfg.Logger,
		shards:    map[rgwlog.Unit]*shardState{},
		leaseNote: make(chan struct{}, 1),
		acquired:  map[rgwlog.Unit]uint64{},
		lostWhy:   map[rgwlog.Unit]string{},
	}, nil
}

// LeaseChanged is the lease manager's OnChange hook.
func (a *Applier) LeaseChanged(ev lease.Event) {
	a.cfg.Metrics.leaseChanges.WithLabelValues(fmt.Sprint(ev.Held)).Inc()
	if ev.Held {
		a.cfg.Metrics.leasesHeld.Inc()
	} else {
		a.cfg.Metrics.leasesHeld.Dec()
	}
	if !ev.Held {
		if r := moveReason(ev.Reason); r != "" {
			a.cfg.Metrics.leaseMoves.WithLabelValues(r).Inc()
		}
	}
	a.mu.Lock()
	if ev.Held {
		a.acquired[ev.Unit]++
	} else {
		a.lostWhy[ev.Unit] = ev.Reason
	}
	a.mu.Unlock()
	// The session reconciles with Held() (and every reconcileEvery): an
	// event is a hint, never lost work. Before, events were queued (1024)
	// and one found the lease invalid for a moment or the queue full, and
	// the shard stayed held and never subscribed (CI: a full sync stopped
	// at 12162 of 12320 objects after leases expired under load).
	select {
	case a.leaseNote <- struct{}{}:
	default:
	}
}

// moveReason is the lease_moves_total label of a lost lease's reason (""
// for a release at shutdown, which is no move).
func moveReason(reason string) string {
	switch reason {
	case lease.ReasonShutdown:
		return ""
	case lease.ReasonRebalanced:
		return "rebalanced"
	case lease.ReasonTaken:
		return "taken"
	case lease.ReasonExpired:
		return "expired"
	case lease.ReasonRevoked:
		return "revoked"
	}
	return "other"
}

// reconcileEvery is how often a session re-checks its subscriptions
// against the leases held, besides each lease change.
const reconcileEvery = time.Second

// Run keeps a Replicate stream open (reconnecting with backoff) until ctx
// ends, then releases the leases.
func (a *Applier) Run(ctx context.Context) error {
	// The leases outlive ctx until the session has drained: a batch being
	// applied at shutdown is finished and acked under its lease, then the
	// leases are released.
	leaseCtx, leaseCancel := context.WithCancel(context.WithoutCancel(ctx))
	a.leaseCtx = leaseCtx
	defer func() {
		leaseCancel()
		if a.leasesDone != nil {
			<-a.leasesDone
		}
	}()
	backoff := a.cfg.ReconnectMin
	for ctx.Err() == nil {
		start := time.Now()
		err := a.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.mu.Lock()
		a.connected = false
		if err != nil {
			a.lastErr = err.Error()
		}
		a.mu.Unlock()
		a.cfg.Metrics.reconnects.Inc()
		if time.Since(start) > time.Minute {
			backoff = a.cfg.ReconnectMin
		}
		a.log.Warn("stream to exporter ended; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.cfg.ReconnectMax)
	}
	return nil
}

// startLeases starts the lease manager once (it outlives sessions: a
// reconnect to the exporter does not give up the shards).
func (a *Applier) startLeases(ctx context.Context, mdShards, dataShards int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leases != nil {
		return nil
	}
	if mdShards <= 0 {
		return errors.New("exporter announced no metadata shards")
	}
	lc := a.cfg.Lease
	lc.Units = append(rgwlog.MetadataUnits(mdShards), rgwlog.DataUnits(dataShards)...)
	lc.OnChange = a.LeaseChanged
	if lc.Holder == "" {
		lc.Holder = a.cfg.ID
	}
	m, err := lease.New(lc)
	if err != nil {
		return err
	}
	a.leases = m
	a.leasesDone = make(chan struct{})
	go func() {
		defer close(a.leasesDone)
		_ = m.Run(ctx)
	}()
	return nil
}

// Leases returns the lease manager (nil before the first Welcome).
func (a *Applier) Leases() Leases {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leases
}

// work applies the batches of one shard, in order, and acks them.
func (a *Applier) work(ctx context.Context, s *session, wk *shardWorker) {
	log := a.log.With("shard", wk.unit.String())
	for {
		var b *v1.Batch
		select {
		case <-ctx.Done():
			return
		case <-s.draining:
			return
		case b = <-wk.in:
		}
		if !a.leases.Valid(wk.unit) {
			log.Warn("lease no longer valid: dropping the shard's batches", "seq", b.GetSeq())
			return
		}
		start := time.Now()
		failed, err := a.applyBatch(ctx, wk.unit, b)
		if err == nil && len(b.GetObjects()) > 0 {
			var ofailed []*v1.RetryItem
			var ask *asker
			if s.pull {
				ask = &asker{send: func(index uint32, skip bool, chunks uint32) {
					s.send(ctx, &v1.ReplicateRequest{Msg: &v1.ReplicateRequest_BodyRequest{BodyRequest: &v1.BodyRequest{
						Shard: wire.Ref(wk.unit), Generation: wk.gen, Seq: b.GetSeq(), Index: index, Skip: skip, Chunks: chunks}}})
				}}
				if s.chunkCredit {
					ask.grant = chunkQueue
				}
			}
			ofailed, err = a.applyObjects(ctx, wk.unit, b, wk.chunks, ask)
			failed = append(failed, ofailed...)
		}
		if err != nil {
			// Fenced or cancelled mid-batch: no ack; the next holder gets
			// the batch again.
			log.Warn("batch abandoned", "seq", b.GetSeq(), "err", err)
			return
		}
		// Fence the ack too: a holder that lost the lease while applying
		// must not move the bound.
		if !a.leases.Valid(wk.unit) {
			log.Warn("lease lost while applying: not acking", "seq", b.GetSeq())
			return
		}
		s.send(ctx, &v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Ack{Ack: &v1.Ack{
			Shard: wire.Ref(wk.unit), Seq: b.GetSeq(), ThroughMarker: b.GetThroughMarker(), Failed: failed, Generation: wk.gen}}})
		applied := len(b.GetEntries()) + len(b.GetObjects()) - len(failed)
		a.cfg.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
		a.audit(wk.unit, b, start)
		a.shardUpdate(wk.unit, func(st *shardState) {
			st.applied += uint64(applied)
			st.failed += uint64(len(failed))
			st.lastSeq, st.through, st.head, st.more = b.GetSeq(), b.GetThroughMarker(), b.GetSourceHeadMarker(), b.GetMore()
			st.lastTime = time.Now()
			if len(failed) > 0 {
				st.lastErr = failed[0].GetError()
			} else {
				st.lastErr = ""
			}
		})
		log.Debug("batch applied", "seq", b.GetSeq(), "entries", len(b.GetEntries()), "failed", len(failed), "through", b.GetThroughMarker())
	}
}

var errFenced = errors.New("lease lost")

// applyBatch writes a batch's entries in dependency order: groups by
// rgwlog.ApplyRank, each group in parallel (its keys are distinct: the
// exporter de-duplicates a batch).
func (a *Applier) applyBatch(ctx context.Context, u rgwlog.Unit, b *v1.Batch) ([]*v1.RetryItem, error) {
	groups := map[int][]*v1.MetadataEntry{}
	for _, en := range b.GetEntries() {
		en = a.deletedInstanceAsDelete(en)
		r := rgwlog.ApplyRank(en.GetSection(), en.GetOp() == v1.MetadataOp_METADATA_OP_DELETE)
		groups[r] = append(groups[r], en)
	}
	ranks := make([]int, 0, len(groups))
	for r := range groups {
		ranks = append(ranks, r)
	}
	sort.Ints(ranks)
	var (
		mu     sync.Mutex
		failed []*v1.RetryItem
		fenced bool
	)
	for _, r := range ranks {
		sem := make(chan struct{}, a.cfg.ApplyConcurrency)
		var wg sync.WaitGroup
		for _, en := range groups[r] {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !a.leases.Valid(u) {
				fenced = true
				break
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				lctx, cancel, err := a.writeCtx(ctx, u)
				if err == nil {
					err = a.applyEntry(lctx, en)
					cancel()
				}
				if errors.Is(err, errFenced) || (err != nil && !a.leases.Valid(u)) {
					mu.Lock()
					fenced = true
					mu.Unlock()
					return
				}
				if err != nil {
					a.cfg.Metrics.errors.WithLabelValues("apply").Inc()
					a.log.Warn("apply failed", "shard", u.String(), "section", en.GetSection(), "key", en.GetName(), "op", en.GetOp().String(), "err", err)
					mu.Lock()
					failed = append(failed, &v1.RetryItem{Section: en.GetSection(), Name: en.GetName(), Error: err.Error(),
						Attempts: en.GetAttempt() + 1, Timestamp: en.GetTimestamp()})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if fenced {
			return nil, errFenced
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return failed, nil
}

// deletedInstanceAsDelete turns the put of a removed bucket's instance
// (rgwlog.BucketDeleted: Tentacle keeps it with flags 64) into a delete.
// Put onto an instance zone-b has, that blob kills a Tentacle gateway
// (SIGSEGV in put_prepare, again after every restart: FACTS.md section 19);
// the source's own metadata says the bucket is gone, so zone-b's instance
// goes too. Newer exporters send it as a delete already; this guard is the
// applier's, which alone talks to zone-b.
func (a *Applier) deletedInstanceAsDelete(en *v1.MetadataEntry) *v1.MetadataEntry {
	if en.GetSection() != rgwlog.SectionBucketInstance || en.GetOp() != v1.MetadataOp_METADATA_OP_PUT {
		return en
	}
	if del, err := rgwlog.BucketDeleted(en.GetBlob()); err != nil || !del {
		return en
	}
	a.log.Debug("bucket instance of a removed bucket (flags 64): deleted on the destination, not put", "key", en.GetName())
	d := proto.Clone(en).(*v1.MetadataEntry)
	d.Op, d.Blob = v1.MetadataOp_METADATA_OP_DELETE, nil
	return d
}

// keepShardCount is the blob to put for en: a bucket instance zone-b has
// keeps zone-b's number of index shards. Reef and later reshard in place
// (the instance stays, its num_shards changes: FACTS.md section 32), and
// zone-b lays its index anew from a put's num_shards over the shard objects
// it has, stranding their entries (listed, never deleted). zone-b's index
// is its own; only a new instance takes the source's number.
func (a *Applier) keepShardCount(ctx context.Context, en *v1.MetadataEntry) ([]byte, error) {
	if en.GetSection() != rgwlog.SectionBucketInstance {
		return en.GetBlob(), nil
	}
	want, err := rgwlog.NumShards(en.GetBlob())
	if err != nil {
		return nil, fmt.Errorf("bucket instance %s: %w", en.GetName(), err)
	}
	have, err := a.cfg.Dest.GetMetadata(ctx, rgwlog.SectionBucketInstance, en.GetName())
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return en.GetBlob(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the destination's bucket instance %s before the put: %w", en.GetName(), err)
	}
	n, err := rgwlog.NumShards(have)
	if err != nil {
		return nil, fmt.Errorf("the destination's bucket instance %s: %w", en.GetName(), err)
	}
	if n == want {
		return en.GetBlob(), nil
	}
	a.log.Info("bucket instance resharded at the source: the destination keeps its own index shards",
		"key", en.GetName(), "source_shards", want, "destination_shards", n)
	return rgwlog.WithNumShards(en.GetBlob(), n)
}

// writeCtx bounds one write to u's lease: a write that starts after the
// local deadline (say the process was frozen between the fence check and
// the request) is cancelled before it is sent, instead of landing after
// the next holder's writes. A write whose body outlasts the lease (a large
// object) is cut too and retried by the holder of the next lease.
func (a *Applier) writeCtx(ctx context.Context, u rgwlog.Unit) (context.Context, context.CancelFunc, error) {
	d, ok := a.leases.Deadline(u)
	if !ok {
		return nil, nil, errFenced
	}
	c, cancel := context.WithDeadline(ctx, d)
	return c, cancel, nil
}

func (a *Applier) applyEntry(ctx context.Context, en *v1.MetadataEntry) error {
	if en.GetSection() == rgwlog.SectionBucketInstance {
		// Alone among this applier's writes of the bucket: not while a
		// null version is written in a suspension of it (which puts the
		// instance back after), nor between a write's read of zone-b's
		// versioning and the write (a toggle applied in between stored a
		// null version as another kind: FACTS.md section 15).
		release, err := a.alone(ctx, rgwlog.InstanceS3Bucket(en.GetName()), "for its bucket instance's metadata")
		if err != nil {
			return err
		}
		defer release()
	}
	switch en.GetOp() {
	case v1.MetadataOp_METADATA_OP_PUT:
		blob, err := a.keepShardCount(ctx, en)
		if err != nil {
			return err
		}
		st, err := a.cfg.Dest.PutMetadata(ctx, en.GetSection(), en.GetName(), blob, a.cfg.UpdateType)
		if err != nil {
			return err
		}
		if st.Applied || st.Status == "" {
			a.cfg.Metrics.applied.WithLabelValues(en.GetSection(), "put").Inc()
		} else {
			a.cfg.Metrics.applied.WithLabelValues(en.GetSection(), "skipped").Inc()
		}
		a.cfg.Metrics.bytes.Add(float64(len(en.GetBlob())))
		return nil
	case v1.MetadataOp_METADATA_OP_DELETE:
		err := a.cfg.Dest.DeleteMetadata(ctx, en.GetSection(), en.GetName())
		if err != nil && !errors.Is(err, rgwadmin.ErrNotFound) {
			return err
		}
		a.cfg.Metrics.applied.WithLabelValues(en.GetSection(), "delete").Inc()
		return nil
	}
	return fmt.Errorf("unknown metadata op %v", en.GetOp())
}

func (a *Applier) audit(u rgwlog.Unit, b *v1.Batch, start time.Time) {
	if a.cfg.Audit == nil {
		return
	}
	line, _ := json.Marshal(AuditRecord{Applier: a.cfg.ID, Shard: u.String(), Seq: b.GetSeq(), Entries: len(b.GetEntries()),
		Objects: len(b.GetObjects()), Start: start, End: time.Now(), LeaseDeadline: a.leases.Held()[u]})
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	_, _ = a.cfg.Audit.Write(append(line, '\n'))
}

func (a *Applier) shardUpdate(u rgwlog.Unit, f func(*shardState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.shards[u]
	if st == nil {
		st = &shardState{}
		a.shards[u] = st
	}
	f(st)
}
