package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/rgwsync/rgwsync/internal/wire"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// DataSource is what data sync needs of the source's admin API.
type DataSource interface {
	DataLogInfo(ctx context.Context) (rgwadmin.LogInfo, error)
	DataLogShardInfo(ctx context.Context, shard int) (rgwadmin.ShardInfo, error)
	ListDataLog(ctx context.Context, shard int, marker string, max int) (rgwadmin.DataLogPage, error)
	TrimDataLog(ctx context.Context, shard int, marker string) error
	BILogInfo(ctx context.Context, bucketInstance string) (rgwadmin.BILogInfo, error)
	ListBILog(ctx context.Context, bucketInstance, marker string, max int) ([]rgwadmin.BILogEntry, error)
	TrimBILog(ctx context.Context, bucketInstance, endMarker string) error
}

// ObjectSource is what data sync needs of the source's S3 API.
type ObjectSource interface {
	// StatRead: every attribute, and up to n bytes of the body, in one
	// request (rgwobj.Client.StatRead).
	StatRead(ctx context.Context, bucket, key, versionID string, n int64) (rgwobj.ObjectInfo, []byte, error)
	Get(ctx context.Context, bucket, key, versionID string, offset, length int64) (io.ReadCloser, error)
	ListShard(ctx context.Context, bucketShard, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error)
	FindVersion(ctx context.Context, bucketShard, key, versionID string) (rgwobj.ListEntry, bool, error)
	// FindVersionInBucket: the same by the bucket's S3 name, from its
	// current instance (after a reshard removed the old one's index).
	FindVersionInBucket(ctx context.Context, bucket, key, versionID string) (rgwobj.ListEntry, bool, error)
}

// dataWorker serves one datalog shard: the full sync of the bucket index
// shards it logs, then their bilogs as the datalog names them.
type dataWorker struct {
	*worker
	shard int

	bounds     map[string]*checkpoint.Bound // bucket shard key -> acked bound
	readPos    map[string]string            // bucket shard key -> read position (ahead of acks)
	queue      []string                     // bucket shards named by the datalog page being worked
	dlPos      string                       // datalog read position
	dlNext     string                       // marker to advance to once the queue is done
	sent       []*dataBatch
	order      keyOrder       // the per-key order of versioned ops (keyorder.go)
	checked    time.Time      // last trim check
	resyncSeen uint64         // destination's data re-sync epoch this worker has done
	addedSeen  uint64         // destination's shardsAdded this worker has loaded
	listGen    map[string]int // bumped by listAgain: older listing pages' acks move nothing
	// resyncing: the queue holds a re-check of every bucket shard of this
	// datalog shard; the bound stays phaseResync (durably) until the
	// re-check is sent and acked (resyncDone).
	resyncing bool
	// hot: bucket shards changed lately, until when they are polled. The
	// gateway writes one datalog entry per bucket shard per
	// rgw_data_log_window (30 s): later changes in the window show up only
	// when its renewal re-adds the entry, up to ~30 s later (the benchmark's
	// lag p50 was 9 s). Ceph's own sync learns them from the source's
	// notifications; here the bilogs of hot shards are read again whenever
	// the datalog has nothing new, at the worker's idle cadence.
	hot map[string]time.Time
	// news: when a hot bucket shard's bilog last had entries. One with news
	// within veryHotFor is re-read at the fast cadence (hotPoll) however
	// long the datalog has been quiet; the other hot ones at most every
	// slowHotEvery meanwhile (nextSlowHot), so the fast cadence costs a
	// read of the shards that are busy only.
	news        map[string]time.Time
	nextSlowHot time.Time
	// genWait: bucket shards polled at the idle cadence, hot or not, until
	// an index log generation changes hands: a later one waiting for the
	// older ones to close, an older one until it closes (generations.go).
	genWait map[string]bool
	// genClear: later generations' shards found with no older shard of
	// their instance open; none opens again (older generations get no new
	// bounds), so gateGen need not look again.
	genClear map[string]bool
	// pendingFence: what the ops buildOps built last hold of the
	// versioning fence (fence.go), moved to the batch sendBatch sends.
	pendingFence *fenceHold
}

type dataBatch struct {
	seq      uint64
	payload  int64
	objBytes int64 // object bytes the batch writes (inline and chunked)
	ops      int
	first    time.Time
	// commit is what the batch's ack moves (commitOf); srcFailed the
	// items the source could not give, kept as retries with the
	// applier's failures.
	commit    batchCommit
	srcFailed []*v1.RetryItem
	fence     *fenceHold // what its ops hold of the versioning fence
}

func (w *worker) runData(ctx context.Context) error {
	if !w.d.isFullDone() {
		w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_WAITING_FULL_SYNC, "waiting for the metadata full sync (buckets first)")
		select {
		case <-ctx.Done():
			return nil
		case <-w.d.fullDoneCh():
		}
	}
	dw := &dataWorker{worker: w, shard: int(w.sub.unit.Shard), bounds: map[string]*checkpoint.Bound{}, readPos: map[string]string{},
		genWait: map[string]bool{}, genClear: map[string]bool{}, listGen: map[string]int{}}
	b, ok, err := w.e.cfg.Store.Get(w.key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no bound for %s: data sync not initialised", w.key)
	}
	w.bound = b
	dw.dlPos = b.Marker
	dw.resyncSeen = w.d.dataResync.Load() // a persisted phaseResync covers earlier ones
	dw.addedSeen = w.d.shardsAdded.Load()
	mine, err := w.e.cfg.Store.ListLogShard(w.d.name, checkpoint.LogBucketIndex, uint32(dw.shard))
	if err != nil {
		return err
	}
	for _, en := range mine {
		bd := en.Bound
		dw.bounds[en.Key.Instance] = &bd
		dw.readPos[en.Key.Instance] = bd.Marker
		if bs, err := rgwlog.ParseBucketShard(en.Key.Instance); err == nil && bs.Gen > 0 {
			// It may wait for an older generation (its datalog entries
			// are behind the datalog bound): polled until it does not.
			dw.genWait[en.Key.Instance] = true
		}
	}
	// Shards handed over while no worker ran here: the bounds are in the
	// list above already, the re-listings in the store (and in memory,
	// when handed over since this exporter started).
	relist, err := w.e.cfg.Store.ListLogShard(w.d.name, checkpoint.LogRelist, uint32(dw.shard))
	if err != nil {
		return err
	}
	if len(relist) > 0 {
		keys := make([]checkpoint.Key, len(relist))
		for i, en := range relist {
			keys[i] = dw.boundKey(en.Key.Instance)
		}
		w.d.news.listAgain(keys)
	}
	if err := dw.takeNews(); err != nil {
		return err
	}
	w.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_INCREMENTAL, "")
	// What is in flight at the end is sent again to the shard's next
	// holder: its hold of the versioning fence ends here.
	defer func() {
		dw.release(dw.pendingFence)
		for _, db := range dw.sent {
			dw.release(db.fence)
		}
	}()
	return w.runEngine(ctx, dw)
}

// step sends the next batch of work, if any: due retries, then bucket
// shards in full sync, then the bilogs of the shards the datalog named,
// then the datalog bound itself.
func (dw *dataWorker) step(ctx context.Context) (bool, error) {
	if n := dw.d.shardsAdded.Load(); n != dw.addedSeen {
		dw.addedSeen = n
		if err := dw.takeNews(); err != nil {
			return false, err
		}
	}
	if key, ok := dw.dueRetry(); ok {
		return true, dw.sendRetries(ctx, key)
	}
	if key, ok := dw.nextFull(); ok {
		return true, dw.sendFullPage(ctx, key)
	}
	if sent, handled, err := dw.workQueue(ctx); handled {
		return sent, err
	}
	if dw.resyncing && dw.dlNext == "" {
		return true, dw.resyncDone(ctx)
	}
	if dw.dlNext != "" {
		// Every shard of the page is read (and sent): move the datalog bound.
		next := dw.dlNext
		dw.dlNext = ""
		dw.dlPos = next
		return true, dw.sendBatch(ctx, nil, nil, time.Time{}, 0, batchCommit{kind: commitDatalog, marker: next})
	}
	page, err := dw.e.cfg.Data.ListDataLog(ctx, dw.shard, dw.dlPos, dw.e.cfg.BatchEntries)
	if err != nil {
		return false, fmt.Errorf("list datalog shard %d after %q: %w", dw.shard, dw.dlPos, err)
	}
	// As for the mdlog: the entry at the bound is never trimmed by us, so
	// an oldest entry after it means someone trimmed entries not applied.
	if dw.dlPos != "" && len(dw.sent) == 0 && (len(page.Entries) > 0 || time.Since(dw.checked) > idleTrimCheck) {
		dw.checked = time.Now()
		if trimmed, oldest, err := dw.dataTrimmed(ctx); err != nil {
			return false, err
		} else if trimmed {
			dw.log.Error("source datalog trimmed past the bound: re-checking every bucket shard of every datalog shard",
				"bound", dw.dlPos, "oldest_left", oldest)
			// A shard that was empty when the destination was initialised
			// cannot tell it was trimmed: whoever trimmed this one may have
			// trimmed those too, so every data shard re-checks.
			if err := dw.e.markDataResync(dw.d); err != nil {
				return false, err
			}
		}
	}
	if dw.resyncSeen != dw.d.dataResync.Load() || (dw.bound.Phase == checkpoint.PhaseResync && !dw.resyncing) {
		dw.resyncSeen = dw.d.dataResync.Load()
		return true, dw.resyncData(ctx)
	}
	if len(page.Entries) == 0 {
		if dw.requeueHot() {
			// Nothing new in the datalog: the hot shards' bilogs.
			sent, _, err := dw.workQueue(ctx)
			return sent, err
		}
		return false, nil
	}
	seen := map[string]bool{}
	for _, en := range page.Entries {
		key := rgwlog.BucketShardKey(en.Key, en.Gen)
		if en.EntityType != "bucket" || seen[key] {
			continue
		}
		seen[key] = true
		bs, err := rgwlog.ParseBucketShard(key)
		if err != nil {
			dw.log.Warn("datalog entry with an unexpected key, skipped", "key", en.Key, "generation", en.Gen, "err", err)
			continue
		}
		if !dw.e.cfg.Filter.Bucket(bs.Bucket) {
			continue
		}
		dw.queue = append(dw.queue, key)
		dw.markHot(key)
	}
	last := page.Entries[len(page.Entries)-1]
	dw.dlNext = last.LogID
	if dw.dlNext == "" {
		dw.dlNext = page.Marker
	}
	dw.publishData() // behind: a datalog page read, its bucket shards to read
	return dw.step(ctx)
}

// boundKey is the store key of a bucket shard's bound (kept under this
// datalog shard).
func (dw *dataWorker) boundKey(key string) checkpoint.Key {
	return checkpoint.Key{Destination: dw.d.name, Log: checkpoint.LogBucketIndex, Shard: uint32(dw.shard), Instance: key}
}

// workQueue works the queue of bucket shards the datalog (or the hot set)
// named: the first one with something to do is read and sent. handled says
// the step ends here (sent, waiting for a full sync's last ack, or failed);
// not handled, the queue is empty.
func (dw *dataWorker) workQueue(ctx context.Context) (sent, handled bool, err error) {
	for len(dw.queue) > 0 {
		key := dw.queue[0]
		delete(dw.genWait, key) // gateGen and closeGen put it back
		if wait, err := dw.gateGen(ctx, key); err != nil {
			return false, true, err
		} else if wait {
			dw.queue = dw.queue[1:]
			continue
		}
		bd, ok := dw.bounds[key]
		if !ok {
			// A bucket shard the full sync did not know (created later):
			// record where its bilog is now, then list it.
			if err := dw.startBucketShard(ctx, key); errors.Is(err, errDropped) {
				continue
			} else if err != nil {
				return false, true, err
			}
			return true, true, dw.sendFullPage(ctx, key)
		}
		if bd.Phase == checkpoint.PhaseBucketFull {
			if dw.readPos[key] == fullDoneMark {
				// Listed and sent; its bilog is read once the last page is
				// acked (the bound then turns incremental at FullStart).
				return false, true, nil
			}
			return true, true, dw.sendFullPage(ctx, key)
		}
		sent, more, err := dw.sendBILog(ctx, key)
		if errors.Is(err, errNoCredit) {
			return false, true, err
		}
		if err != nil {
			if gone, gerr := dw.e.bucketGone(ctx, key); gerr == nil && gone {
				// A removed bucket has no bilog any more: its shard is done
				// (the objects went with the bucket, by metadata sync).
				// Without this one removed bucket would block every other
				// bucket shard of this datalog shard for good.
				dw.forgetBucketShard(key, true)
				continue
			}
			return false, true, err
		}
		if !more && len(dw.queue) > 0 && dw.queue[0] == key { // a closed generation left the queue already
			dw.queue = dw.queue[1:]
		}
		if sent {
			return true, true, nil
		}
	}
	return false, false, nil
}

func (dw *dataWorker) startBucketShard(ctx context.Context, key string) error {
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return err
	}
	info, err := dw.e.shardInfo(ctx, bs)
	if err != nil {
		if gone, gerr := dw.e.bucketGone(ctx, key); gerr == nil && gone {
			dw.forgetBucketShard(key, true)
			return errDropped
		}
		return err
	}
	if info.LatestGen > bs.Gen {
		// An older generation's shard (FACTS.md section 32): closed, or
		// its bucket is followed from its latest generation.
		if err := dw.oldGenUnbound(ctx, bs, info); err != nil {
			return err
		}
		dw.forgetBucketShard(key, false)
		return errDropped
	}
	bd := &checkpoint.Bound{Phase: checkpoint.PhaseBucketFull, FullStart: info.MaxMarker, UpdatedAt: time.Now().UTC()}
	k := dw.boundKey(key)
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: k, Bound: *bd}); err != nil {
		return err
	}
	dw.bounds[key] = bd
	dw.readPos[key] = ""
	return dw.instanceMet(ctx, key)
}

var errDropped = errors.New("bucket shard dropped: the bucket was removed, or its index log generation is closed")

// forgetBucketShard forgets a bucket shard: off the queue, out of memory
// and out of the store. removed: its bucket was removed at the source
// (else its index log generation is closed).
func (dw *dataWorker) forgetBucketShard(key string, removed bool) {
	if removed {
		dw.log.Info("bucket removed at the source: its index shard is done", "bucket_shard", key)
	}
	delete(dw.genWait, key)
	delete(dw.genClear, key)
	for i, k := range dw.queue {
		if k == key {
			dw.queue = append(dw.queue[:i:i], dw.queue[i+1:]...)
			break
		}
	}
	delete(dw.bounds, key)
	delete(dw.readPos, key)
	del := []checkpoint.Key{dw.boundKey(key), relistKey(dw.boundKey(key))}
	if bs, err := rgwlog.ParseBucketShard(key); err == nil && removed {
		del = append(del, metKey(dw.d, bs.InstanceKey())) // its entry point never comes now
	}
	if err := dw.e.cfg.Store.Delete(del...); err != nil {
		dw.log.Warn("forget bucket shard", "bucket_shard", key, "err", err)
	}
}

// sendBatch sends ops (and the chunks of chunked ones) as one batch.
// reserved is what the caller took of the stream's window for it
// (reserve); what the batch does not need of it goes back at once.
// c says what its ack moves (its bucket shard, and for retries what it
// sends again: keyOrder).
func (dw *dataWorker) sendBatch(ctx context.Context, ops []*v1.ObjectOp, srcFailed []*v1.RetryItem, first time.Time,
	reserved int64, c batchCommit) error {
	hold := dw.pendingFence
	dw.pendingFence = nil
	sent := false
	defer func() {
		if !sent {
			dw.release(hold)
		}
	}()
	dw.seq++
	var payload int64
	for _, op := range ops {
		payload += opOverhead(op.GetKey()) + int64(len(op.GetBody()))
	}
	batch := &v1.Batch{Shard: wire.Ref(dw.sub.unit), Generation: dw.sub.gen, Seq: dw.seq, Objects: ops, PayloadBytes: uint64(payload),
		ThroughMarker: strconv.FormatUint(dw.seq, 10)}
	need := min(payload, reserved)
	dw.credit.give(reserved - need)
	if err := dw.sub.st.throttle(ctx, payload); err != nil {
		dw.credit.give(need)
		return err
	}
	dw.stats.wait(waitAcks(len(dw.sent)+1, "")) // in flight once handed to the stream
	if err := dw.sub.st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Batch{Batch: batch}}); err != nil {
		dw.credit.give(need)
		return err
	}
	dw.stats.progressed()
	var objBytes int64
	for _, op := range ops {
		objBytes += op.GetAttrs().GetSize()
	}
	db := &dataBatch{seq: dw.seq, payload: need, objBytes: objBytes, ops: len(ops), first: first,
		commit: c, srcFailed: srcFailed, fence: hold}
	sent = true
	dw.sent = append(dw.sent, db)
	dw.order.sent(db.seq, c.key, ops, srcFailed, c.resent)
	dw.e.cfg.Metrics.batchesSent.WithLabelValues(dw.d.name, dw.sub.unit.Log.String()).Inc()
	for _, op := range ops {
		if op.GetChunked() {
			if dw.sub.st.pull {
				skip, err := dw.bodyWanted(ctx, batch.Seq, op.GetIndex())
				if err != nil {
					return err
				}
				if skip {
					dw.e.cfg.Metrics.objectBytesSkipped.WithLabelValues(dw.d.name).Add(float64(op.GetAttrs().GetSize()))
					continue
				}
			}
			if err := dw.streamBody(ctx, batch.Seq, op); err != nil {
				// The applier cannot finish this batch; it will fail the
				// op and ack; at worst the stream ends and all is resent.
				return fmt.Errorf("stream %s/%s: %w", op.GetBucket(), op.GetKey(), err)
			}
		}
	}
	dw.publishData()
	return nil
}

// reserve takes, before anything is read from the source, the bytes of the
// stream's window the batch of refs may fill: their ops' overhead and room
// for inline bodies (a quarter of the window at most, so that several
// shards read at once). errNoCredit: the window is full and this shard
// holds some of it (see credit).
func (dw *dataWorker) reserve(ctx context.Context, refs []objRef) (int64, error) {
	n := opsOverhead(refs)
	for _, r := range refs {
		if r.held == "" && r.kind != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER && r.kind != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION {
			n += min(4*dw.e.cfg.InlineMax, dw.sub.st.maxB/4) // a body may be read
			break
		}
	}
	return dw.credit.take(ctx, n)
}

func (dw *dataWorker) commitAck(ack *v1.Ack) error {
	if len(dw.sent) == 0 || ack.GetSeq() != dw.sent[0].seq {
		return fmt.Errorf("protocol: ack for batch %d out of order", ack.GetSeq())
	}
	db := dw.sent[0]
	entries := dw.commitOf(db.commit, append(append([]*v1.RetryItem(nil), ack.GetFailed()...), db.srcFailed...))
	if err := dw.e.cfg.Store.Put(entries...); err != nil {
		return fmt.Errorf("store data bounds: %w", err)
	}
	dw.sent = dw.sent[1:]
	dw.release(db.fence)
	dw.order.acked(db.seq)
	dw.credit.give(db.payload)
	dw.stats.progressed()
	applied := max(db.ops-len(ack.GetFailed()), 0)
	dw.e.cfg.Metrics.entriesApplied.WithLabelValues(dw.d.name, dw.sub.unit.Log.String()).Add(float64(applied))
	dw.e.cfg.Metrics.objectsApplied.WithLabelValues(dw.d.name).Add(float64(applied))
	dw.stats.update(func(s *shardStats) { s.applied += uint64(applied); s.bytes += uint64(db.objBytes) })
	dw.e.cfg.Metrics.objectBytesApplied.WithLabelValues(dw.d.name).Add(float64(db.objBytes))
	for _, f := range ack.GetFailed() {
		lvl := slog.LevelWarn
		if rgwlog.Held(f.GetError()) {
			lvl = slog.LevelDebug // behind a failure logged already
		}
		dw.log.Log(context.Background(), lvl, "object failed on the destination; kept for retry", "bucket", f.GetBucket(), "object", f.GetKey(),
			"version", f.GetVersionId(), "err", f.GetError())
	}
	dw.publishData()
	return nil
}

func (dw *dataWorker) publishData() {
	var behind uint64
	var oldest time.Time
	for _, b := range dw.sent {
		behind += uint64(b.ops)
		if !b.first.IsZero() && (oldest.IsZero() || b.first.Before(oldest)) {
			oldest = b.first
		}
	}
	retries := 0
	// Work known to be left besides the batches in flight: a datalog page
	// whose bucket shards are not all read yet (dlNext), a datalog
	// re-check, a bucket shard's listing. Not the bucket shards polled
	// while they are hot or wait for a generation: those are looks for
	// news, and a caught-up shard that polls is not behind (issue #14,
	// item 7: the Tentacle demo ended with two data shards "behind 0+
	// entries" while caught up).
	more := dw.dlNext != "" || dw.resyncing
	for k, bd := range dw.bounds {
		if bd.Phase == checkpoint.PhaseBucketFull && dw.readPos[k] != fullDoneMark {
			more = true
		}
		for _, r := range bd.Retries {
			if r.Error == recheckMark {
				continue // a scheduled re-check, not a failure
			}
			retries++
			if oldest.IsZero() || r.Timestamp.Before(oldest) {
				oldest = r.Timestamp
			}
		}
	}
	dw.stats.update(func(s *shardStats) {
		s.behind, s.behindMore, s.oldest = behind, more, oldest
		s.retries, s.inflight, s.bound = retries, len(dw.sent), dw.bound.Marker
	})
}
