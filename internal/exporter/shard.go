package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/rgwsync/rgwsync/internal/wire"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// worker serves one subscription: reads after the bound, sends batches
// within the window, and turns acks into durable bounds.
type worker struct {
	e     *Exporter
	d     *destination
	sub   *subscription
	stats *shardStats
	log   *slog.Logger

	key      checkpoint.Key
	bound    checkpoint.Bound // as stored
	pos      string           // read position: through-marker of the last batch sent
	seq      uint64
	inflight []*sentBatch
	sending  map[string]bool // retry items in flight, by section/name
	credit   *credit         // this shard's part of the stream's byte window
	// mdResyncSeen: the destination's mdResyncAdded when this mdlog
	// shard last took its resyncs (takeMDResyncs).
	mdResyncSeen uint64
}

type sentBatch struct {
	seq       uint64
	through   string
	entries   int // raw log entries covered (for "behind")
	first     time.Time
	retried   []checkpoint.Retry // retry items resent in this batch
	srcFailed []*v1.RetryItem    // items the source could not give us
	payload   int64
	applied   int
	more      bool
	// rechecks: the keys this batch deletes on the destination, and the
	// bucket instances it writes that the source is resharding away
	// (rgwlog.Resharding): each is fetched once more after RecheckDelay
	// (addMetaRechecks).
	rechecks []keyRef
	// buckets: the bucket entry points this batch writes (a new bucket,
	// or a new instance after a reshard): once applied, every index shard
	// of the bucket's instance gets a full sync if it has no bound.
	buckets []appliedBucket
	// fence: what its bucket instances hold of the versioning fence.
	fence *fenceHold
}

// batchSource produces the next batch of a shard after pos.
type batchSource interface {
	next(ctx context.Context, pos string, max int) (b *readBatch, err error)
	// finished reports that everything up to pos has been read for good
	// (the full sync has no more keys to list).
	finished(pos string) bool
}

type readBatch struct {
	entries   []*v1.MetadataEntry
	through   string
	raw       int // log entries read (before de-duplication and filtering)
	first     time.Time
	more      bool
	head      string
	srcFailed []*v1.RetryItem
}

func (w *worker) run(ctx context.Context) error {
	u := w.sub.unit
	w.key = checkpoint.UnitKey(w.d.name, u)
	w.sending = map[string]bool{}
	w.mdResyncSeen = math.MaxUint64 // look once at the start: asked before a restart
	w.credit = newCredit(w.sub.st.bytes, w.sub.st.maxB)
	w.credit.onWait = func() {
		w.stats.wait("a share of the stream's byte window (other shards' batches in flight hold it)")
	}
	// The batches in flight are sent again to the shard's next holder:
	// what they held of the window goes back to the stream now, and of
	// the versioning fence.
	defer w.credit.giveAll()
	defer func() {
		for _, sb := range w.inflight {
			w.release(sb.fence)
		}
	}()

	if u.Log == rgwlog.LogData {
		return w.runData(ctx)
	}
	src, err := w.start(ctx)
	if err != nil || src == nil {
		return err
	}
	return w.runEngine(ctx, mdLoop{w: w, src: src})
}

// start readies a metadata shard: its source (an mdlog shard waits for the
// metadata full sync first), its bound, its phase. A nil source: ctx ended.
func (w *worker) start(ctx context.Context) (batchSource, error) {
	u := w.sub.unit
	var src batchSource
	switch u.Log {
	case rgwlog.LogMetadata:
		if !w.d.isFullDone() {
			w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_WAITING_FULL_SYNC, "waiting for the metadata full sync")
			select {
			case <-ctx.Done():
				return nil, nil
			case <-w.d.fullDoneCh():
			}
		}
		src = &mdlogSource{e: w.e, shard: int(u.Shard)}
	case rgwlog.LogMetadataFull:
		src = &fullSource{e: w.e}
	default:
		return nil, fmt.Errorf("unsupported log type %v", u.Log)
	}

	b, ok, err := w.e.cfg.Store.Get(w.key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no bound for %s: destination not initialised", w.key)
	}
	w.bound = b
	w.pos = b.Marker
	w.publish()
	phase := v1.ShardPhase_SHARD_PHASE_INCREMENTAL
	if u.Log == rgwlog.LogMetadataFull {
		phase = v1.ShardPhase_SHARD_PHASE_FULL_SYNC
		if b.Phase == checkpoint.PhaseDone {
			phase = v1.ShardPhase_SHARD_PHASE_DONE
		}
	}
	w.setPhase(ctx, phase, "")

	return src, nil
}

// waitAcks says a worker waits for the acks of n batches in flight.
func waitAcks(n int, why string) string {
	s := fmt.Sprintf("acks of %d batches in flight", n)
	if why != "" {
		s += " (" + why + ")"
	}
	return s
}

// untilNextWork is the idle wait, shortened when a retry comes due sooner.
func (w *worker) untilNextWork(idle time.Duration) time.Duration {
	d := idle
	now := time.Now()
	for _, r := range w.bound.Retries {
		if w.sending[retryKey(r.Section, r.Name)] {
			continue
		}
		if until := r.NextAttempt.Sub(now); until < d {
			d = max(until, time.Millisecond)
		}
	}
	return d
}

func (w *worker) setPhase(ctx context.Context, p v1.ShardPhase, detail string) {
	var changed bool
	w.stats.update(func(s *shardStats) { changed = s.phase != p; s.phase = p })
	if changed {
		_ = w.sub.st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_ShardState{ShardState: &v1.ShardState{
			Shard: wire.Ref(w.sub.unit), Phase: p, Detail: detail}}})
	}
}

func (w *worker) caughtUp(ctx context.Context, src batchSource) {
	if w.sub.unit.Log == rgwlog.LogMetadataFull {
		if w.bound.Phase == checkpoint.PhaseDone {
			w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_DONE, "")
		}
		return
	}
	// A scheduled re-check is of a change applied already: the shard is
	// caught up, and says what it still waits for (pendingRechecks).
	if failures(w.bound.Retries) == 0 {
		w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_CAUGHT_UP, "")
	}
}

// pendingRechecks says which scheduled re-checks a caught-up shard waits
// for ("" when none).
func pendingRechecks(rs []checkpoint.Retry, now time.Time) string {
	n := 0
	var next time.Time
	for _, r := range rs {
		if r.Error != recheckMark {
			continue
		}
		n++
		if next.IsZero() || r.NextAttempt.Before(next) {
			next = r.NextAttempt
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("the re-check of %d applied key(s), the next in %s", n, max(next.Sub(now), 0).Round(time.Second))
}

// sendNext reads and sends one batch; false when there was nothing to send.
func (w *worker) sendNext(ctx context.Context, src batchSource) (bool, error) {
	// Retries that are due go first, in a batch that does not move the bound.
	var due []checkpoint.Retry
	now := time.Now()
	for _, r := range w.bound.Retries {
		if !w.sending[retryKey(r.Section, r.Name)] && !r.NextAttempt.After(now) && len(due) < w.e.cfg.BatchEntries {
			due = append(due, r)
		}
	}
	var rb *readBatch
	if len(due) > 0 {
		entries, failed := w.e.fetchAll(ctx, retryRefs(due))
		rb = &readBatch{entries: entries, through: w.pos, srcFailed: failed, first: oldestRetry(due)}
		for _, en := range rb.entries {
			en.Attempt = attemptsOf(due, en.Section, en.Name) + 1
		}
	} else {
		if src.finished(w.pos) {
			return false, nil
		}
		var err error
		rb, err = src.next(ctx, w.pos, w.e.cfg.BatchEntries)
		if err != nil {
			return false, err
		}
		if rb == nil {
			return false, nil
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	// A versioned bucket's instance waits while object writes that land
	// by its versioning are in flight (fence.go): kept as a retry.
	hold := w.fenceEntries(rb, now)
	sent := false
	defer func() {
		if !sent {
			w.release(hold)
		}
	}()
	w.seq++
	var payload int64
	for _, en := range rb.entries {
		payload += int64(len(en.Blob)) + int64(len(en.Name)) + 64
	}
	batch := &v1.Batch{
		Shard:            wire.Ref(w.sub.unit),
		Generation:       w.sub.gen,
		Seq:              w.seq,
		Entries:          rb.entries,
		ThroughMarker:    rb.through,
		SourceHeadMarker: rb.head,
		More:             rb.more,
		PayloadBytes:     uint64(payload),
	}
	// Stream-wide byte window: memory stays bounded whatever the backlog.
	// (Metadata blobs are small: they are read before their bytes are
	// taken, and dropped, to be read again, when the window is full.)
	need, err := w.credit.take(ctx, payload)
	if err != nil {
		return false, err
	}
	if err := w.sub.st.throttle(ctx, payload); err != nil {
		w.credit.give(need)
		return false, err
	}
	sb := &sentBatch{seq: w.seq, through: rb.through, entries: rb.raw, first: rb.first, retried: due,
		srcFailed: rb.srcFailed, payload: need, more: rb.more, applied: len(rb.entries), fence: hold}
	for _, en := range rb.entries {
		if needsRecheck(en) {
			sb.rechecks = append(sb.rechecks, keyRef{section: en.GetSection(), name: en.GetName(), ts: en.GetTimestamp().AsTime(),
				again: en.GetOp() == v1.MetadataOp_METADATA_OP_PUT})
		}
	}
	if w.sub.unit.Log == rgwlog.LogMetadata {
		sb.buckets = appliedBuckets(rb.entries)
	}
	// In flight from the moment it is handed to the stream: a status read
	// as soon as the applier has the batch says what the shard waits for.
	w.stats.wait(waitAcks(len(w.inflight)+1, ""))
	if err := w.sub.st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Batch{Batch: batch}}); err != nil {
		w.credit.give(need)
		return false, err
	}
	sent = true
	w.stats.progressed()
	for _, r := range due {
		w.sending[retryKey(r.Section, r.Name)] = true
	}
	w.inflight = append(w.inflight, sb)
	w.pos = rb.through
	if rb.head != "" && w.sub.unit.Log == rgwlog.LogMetadata {
		w.e.setHead(w.sub.unit.Shard, rb.head)
	}
	w.e.cfg.Metrics.batchesSent.WithLabelValues(w.d.name, w.sub.unit.Log.String()).Inc()
	w.publish()
	if w.sub.unit.Log == rgwlog.LogMetadata {
		w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_INCREMENTAL, "")
	}
	return true, nil
}

// handleAck records an acked batch durably. Acks must come in order.
func (w *worker) handleAck(ack *v1.Ack, src batchSource) error {
	if len(w.inflight) == 0 || ack.GetSeq() != w.inflight[0].seq {
		want := uint64(0)
		if len(w.inflight) > 0 {
			want = w.inflight[0].seq
		}
		return fmt.Errorf("protocol: ack for batch %d, expected %d", ack.GetSeq(), want)
	}
	sb := w.inflight[0]
	if ack.GetThroughMarker() != sb.through {
		return fmt.Errorf("protocol: ack of batch %d through %q, sent through %q", sb.seq, ack.GetThroughMarker(), sb.through)
	}
	now := time.Now().UTC()
	nb := w.bound
	if sb.through != w.bound.Marker {
		nb.TrimSafe = w.bound.Marker
	}
	nb.Marker = sb.through
	nb.UpdatedAt = now
	nb.Applier = w.sub.st.applier

	// Retries: drop the ones resent in this batch, then add what failed.
	resent := map[string]checkpoint.Retry{}
	for _, r := range sb.retried {
		resent[retryKey(r.Section, r.Name)] = r
	}
	var kept []checkpoint.Retry
	for _, r := range w.bound.Retries {
		if _, ok := resent[retryKey(r.Section, r.Name)]; !ok {
			kept = append(kept, r)
		}
	}
	failed := append(append([]*v1.RetryItem(nil), ack.GetFailed()...), sb.srcFailed...)
	w.countResyncs(sb.retried, failed)
	for _, f := range failed {
		k := retryKey(f.GetSection(), f.GetName())
		prev, wasRetry := resent[k]
		attempts := uint32(1)
		ts := f.GetTimestamp().AsTime()
		if wasRetry {
			attempts = prev.Attempts + 1
			ts = prev.Timestamp
		}
		// The same key may already be kept (failed in an earlier batch).
		replaced := false
		for i := range kept {
			if retryKey(kept[i].Section, kept[i].Name) == k {
				kept[i].Error, kept[i].Attempts = f.GetError(), max(kept[i].Attempts, attempts)
				kept[i].NextAttempt, kept[i].LastAttempt = now.Add(w.e.backoff(kept[i].Attempts)), now
				replaced = true
			}
		}
		if !replaced {
			kept = append(kept, checkpoint.Retry{Section: f.GetSection(), Name: f.GetName(), Error: f.GetError(),
				Attempts: attempts, Timestamp: ts, NextAttempt: now.Add(w.e.backoff(attempts)), LastAttempt: now})
		}
		w.log.Warn("item failed; kept for retry", "section", f.GetSection(), "key", f.GetName(), "attempts", attempts, "err", f.GetError())
	}
	nb.Retries = w.addMetaRechecks(kept, sb, failed, resent, now)
	nb.OldestTime = oldestUnapplied(w.inflight[1:], nb.Retries)
	if w.sub.unit.Log == rgwlog.LogMetadataFull && src.finished(sb.through) && len(w.inflight) == 1 && nb.Phase != checkpoint.PhaseDone {
		nb.Phase = checkpoint.PhaseDone
	}
	// The new bucket entry points zone-b took are to be checked (their
	// instances' shards queued for the data sync): kept in the store with
	// the bound that acks them, until checked.
	buckets := appliedOK(sb.buckets, failed)
	if err := w.e.cfg.Store.Put(append([]checkpoint.Entry{{Key: w.key, Bound: nb}}, w.e.instanceChecks(w.d, buckets, now)...)...); err != nil {
		// Without a durable bound nothing may move on: end the subscription.
		return fmt.Errorf("store bound %s: %w", w.key, err)
	}
	if nb.Phase == checkpoint.PhaseDone && w.bound.Phase != checkpoint.PhaseDone {
		w.log.Info("metadata full sync done", "retries", len(kept))
		w.d.markFullDone()
	}
	w.bound = nb
	w.release(sb.fence)
	w.inflight = w.inflight[1:]
	for k := range resent {
		delete(w.sending, k)
	}
	w.credit.give(sb.payload)
	w.stats.progressed()
	w.e.bucketsApplied(w.d, buckets, now)
	applied := max(sb.applied-len(ack.GetFailed()), 0)
	w.e.cfg.Metrics.entriesApplied.WithLabelValues(w.d.name, w.sub.unit.Log.String()).Add(float64(applied))
	w.e.cfg.Metrics.retriesFailed.WithLabelValues(w.d.name, w.sub.unit.Log.String()).Add(float64(len(failed)))
	w.stats.update(func(s *shardStats) { s.applied += uint64(applied); s.bytes += uint64(sb.payload) })
	w.publish()
	return nil
}
