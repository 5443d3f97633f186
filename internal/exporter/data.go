package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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
}

// ObjectSource is what data sync needs of the source's S3 API.
type ObjectSource interface {
	// StatRead: every attribute, and up to n bytes of the body, in one
	// request (rgwobj.Client.StatRead).
	StatRead(ctx context.Context, bucket, key, versionID string, n int64) (rgwobj.ObjectInfo, []byte, error)
	Get(ctx context.Context, bucket, key, versionID string, offset, length int64) (io.ReadCloser, error)
	ListShard(ctx context.Context, bucketShard, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error)
	FindVersion(ctx context.Context, bucketShard, key, versionID string) (rgwobj.ListEntry, bool, error)
}

// Phases of a bucket index shard's bound.
const (
	phaseBucketFull = "full"        // listing the shard's objects; FullStart holds the bilog marker to go on from
	phaseBucketInc  = "incremental" // following the shard's bilog from Marker
)

// bucketShard names a bucket index shard as the logs do:
// "[tenant/]name:instance[:shard]".
type bucketShard struct {
	key      string
	bucket   string // "[tenant/]name"
	instance string
	shard    int // -1: unsharded
}

func parseBucketShard(key string) (bucketShard, error) {
	bs := bucketShard{key: key, shard: -1}
	rest := key
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		if n, err := strconv.Atoi(rest[i+1:]); err == nil && strings.Count(rest, ":") >= 2 {
			bs.shard = n
			rest = rest[:i]
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return bs, fmt.Errorf("bucket shard %q: want [tenant/]bucket:instance[:shard]", key)
	}
	bs.bucket, bs.instance = rest[:i], rest[i+1:]
	return bs, nil
}

// s3Bucket is the bucket as an S3 request names it (a tenant's bucket is
// "tenant:name").
func (b bucketShard) s3Bucket() string { return strings.Replace(b.bucket, "/", ":", 1) }

// name is the bucket's name without its tenant (for the bucket filter and
// the datalog hash the full "[tenant/]name" is used where Ceph does).
func (b bucketShard) instanceKey() string { return b.bucket + ":" + b.instance }

// initData records, for a destination without data bounds, every datalog
// shard's head, then (for the full sync) every bucket index shard of every
// bucket, under the datalog shard that logs it, with the bilog marker to
// go on from — read before the shard is listed, so nothing written during
// the listing is missed.
func (e *Exporter) initData(ctx context.Context, d *destination) error {
	k0 := rgwlog.Unit{Log: v1.LogType_LOG_TYPE_DATA}.Key(d.name)
	if _, ok, err := e.cfg.Store.Get(k0); err != nil || ok {
		return err
	}
	now := time.Now().UTC()
	var entries []checkpoint.Entry
	for i := range e.dataShards {
		head, err := e.dataStartPosition(ctx, i)
		if err != nil {
			return fmt.Errorf("initialise data sync of %s: %w", d.name, err)
		}
		u := rgwlog.Unit{Log: v1.LogType_LOG_TYPE_DATA, Shard: uint32(i)}
		entries = append(entries, checkpoint.Entry{Key: u.Key(d.name), Bound: checkpoint.Bound{Marker: head, Phase: phaseIncremental, UpdatedAt: now}})
	}
	shards, err := e.allBucketShards(ctx)
	if err != nil {
		return fmt.Errorf("initialise data sync of %s: %w", d.name, err)
	}
	for _, bs := range shards {
		if !e.cfg.Filter.Bucket(bs.bucket) {
			continue
		}
		entries = append(entries, checkpoint.Entry{Key: e.bucketShardKey(d.name, bs), Bound: checkpoint.Bound{Phase: phaseBucketFull, UpdatedAt: now}})
	}
	// The datalog heads go in last: their presence marks the init done.
	if err := e.cfg.Store.Put(entries[e.dataShards:]...); err != nil {
		return err
	}
	if err := e.cfg.Store.Put(entries[:e.dataShards]...); err != nil {
		return err
	}
	e.log.Info("data sync initialised: datalog heads recorded, bucket shards queued for full sync",
		"destination", d.name, "bucket_shards", len(entries)-e.dataShards)
	return nil
}

func (e *Exporter) bucketShardKey(dest string, bs bucketShard) checkpoint.Key {
	return checkpoint.Key{Destination: dest, Log: checkpoint.LogBucketIndex,
		Shard: uint32(rgwobj.DataLogShard(bs.bucket, bs.shard, e.dataShards)), Instance: bs.key}
}

// allBucketShards lists the index shards of every bucket's current instance.
func (e *Exporter) allBucketShards(ctx context.Context) ([]bucketShard, error) {
	var out []bucketShard
	marker := ""
	for {
		page, err := e.cfg.Source.ListMetadataKeys(ctx, rgwlog.SectionBucket, marker, 1000)
		if err != nil {
			return nil, fmt.Errorf("list buckets: %w", err)
		}
		for _, name := range page.Keys {
			shards, err := e.shardsOf(ctx, name)
			if errors.Is(err, rgwadmin.ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, shards...)
		}
		if !page.Truncated || page.Marker == "" {
			return out, nil
		}
		marker = page.Marker
	}
}

// shardsOf reads a bucket's current instance and its number of index shards.
func (e *Exporter) shardsOf(ctx context.Context, bucket string) ([]bucketShard, error) {
	id, err := e.currentInstance(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return e.instanceShards(ctx, bucket, id, -1)
}

// instanceShards are the index shards of bucket's instance id, numShards
// of them (read from the source's instance when negative).
func (e *Exporter) instanceShards(ctx context.Context, bucket, id string, numShards int) ([]bucketShard, error) {
	if id == "" {
		return nil, fmt.Errorf("bucket %s: entry point without bucket_id", bucket)
	}
	inst := bucket + ":" + id
	n := numShards
	if n < 0 {
		ib, err := e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucketInstance, inst)
		if err != nil {
			return nil, err
		}
		if n, err = rgwlog.NumShards(ib); err != nil {
			return nil, fmt.Errorf("%s: %w", inst, err)
		}
	}
	if n <= 0 {
		return []bucketShard{{key: inst, bucket: bucket, instance: id, shard: -1}}, nil
	}
	out := make([]bucketShard, n)
	for i := range n {
		out[i] = bucketShard{key: fmt.Sprintf("%s:%d", inst, i), bucket: bucket, instance: id, shard: i}
	}
	return out, nil
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
	inflight   []*dataBatch
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
}

// hotFor is how long a bucket shard stays hot after the datalog named it
// or its bilog had news: past the gateway's 30 s datalog window.
const hotFor = 40 * time.Second

// maxHot bounds the bucket shards one datalog shard polls (the ones most
// lately active stay).
const maxHot = 32

func (dw *dataWorker) markHot(key string) {
	if dw.hot == nil {
		dw.hot = map[string]time.Time{}
	}
	dw.hot[key] = time.Now().Add(hotFor)
	if len(dw.hot) > maxHot {
		oldest, first := "", time.Time{}
		for k, t := range dw.hot {
			if first.IsZero() || t.Before(first) {
				oldest, first = k, t
			}
		}
		delete(dw.hot, oldest)
	}
}

// requeueHot queues the hot bucket shards (not queued already) for a bilog
// read; expired ones are dropped. It says whether it queued any.
func (dw *dataWorker) requeueHot() bool {
	now := time.Now()
	queued := map[string]bool{}
	for _, k := range dw.queue {
		queued[k] = true
	}
	var keys []string
	for k, until := range dw.hot {
		if now.After(until) {
			delete(dw.hot, k)
			continue
		}
		if bd, ok := dw.bounds[k]; ok && bd.Phase == phaseBucketInc && !queued[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	dw.queue = append(dw.queue, keys...)
	return len(keys) > 0
}

type dataBatch struct {
	seq      uint64
	payload  int64
	objBytes int64 // object bytes the batch writes (inline and chunked)
	ops      int
	first    time.Time
	// commit returns the bounds this batch moves, given the failed items.
	commit func(failed []*v1.RetryItem) []checkpoint.Entry
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
	dw := &dataWorker{worker: w, shard: int(w.sub.unit.Shard), bounds: map[string]*checkpoint.Bound{}, readPos: map[string]string{}}
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
	return dw.loop(ctx)
}

func (dw *dataWorker) loop(ctx context.Context) error {
	idle := dw.e.cfg.PollMin
	var backoff time.Duration
	for {
		if dw.e.isDraining() && len(dw.inflight) == 0 {
			return nil
		}
		var wait <-chan time.Time
		if dw.e.isDraining() {
			dw.stats.wait(waitAcks(len(dw.inflight), "draining"))
		} else if len(dw.inflight) >= dw.sub.st.window {
			dw.stats.wait(waitAcks(len(dw.inflight), "the shard's window of batches is full"))
		} else {
			sent, err := dw.step(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, errNoCredit):
				// Only this shard's acks free what it holds: wait for one
				// (no timer: one is in flight, see credit).
				dw.stats.wait(waitAcks(len(dw.inflight), "the stream's byte window is full"))
			case err != nil:
				backoff = min(max(2*backoff, dw.e.cfg.PollMin), 30*time.Second)
				dw.log.Warn("data sync step failed; will retry", "err", err, "backoff", backoff)
				dw.stats.update(func(s *shardStats) { s.lastErr = err.Error() })
				dw.stats.wait("the source: " + err.Error())
				dw.e.cfg.Metrics.errors.WithLabelValues("source").Inc()
				wait = time.After(jitter(backoff))
			case sent:
				backoff, idle = 0, dw.e.cfg.PollMin
				select {
				case ack := <-dw.sub.acks:
					if err := dw.handleAck(ack); err != nil {
						return err
					}
				default:
				}
				continue
			default:
				if len(dw.inflight) == 0 {
					dw.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_CAUGHT_UP, "")
					dw.stats.wait("")
				} else {
					dw.stats.wait(waitAcks(len(dw.inflight), ""))
				}
				wait = time.After(idle)
				idle = min(2*idle, dw.e.cfg.PollMax)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case ack := <-dw.sub.acks:
			if err := dw.handleAck(ack); err != nil {
				return err
			}
		case <-wait:
		}
	}
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
		return true, dw.sendBatch(ctx, "", nil, nil, nil, time.Time{}, 0, func([]*v1.RetryItem) []checkpoint.Entry {
			nb := dw.bound
			nb.TrimSafe, nb.Marker, nb.UpdatedAt, nb.Applier = nb.Marker, next, time.Now().UTC(), dw.sub.st.applier
			dw.bound = nb
			return []checkpoint.Entry{{Key: dw.key, Bound: nb}}
		})
	}
	page, err := dw.e.cfg.Data.ListDataLog(ctx, dw.shard, dw.dlPos, dw.e.cfg.BatchEntries)
	if err != nil {
		return false, fmt.Errorf("list datalog shard %d after %q: %w", dw.shard, dw.dlPos, err)
	}
	// As for the mdlog: the entry at the bound is never trimmed by us, so
	// an oldest entry after it means someone trimmed entries not applied.
	if dw.dlPos != "" && len(dw.inflight) == 0 && (len(page.Entries) > 0 || time.Since(dw.checked) > idleTrimCheck) {
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
	if dw.resyncSeen != dw.d.dataResync.Load() || (dw.bound.Phase == phaseResync && !dw.resyncing) {
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
		if en.EntityType != "bucket" || seen[en.Key] {
			continue
		}
		seen[en.Key] = true
		bs, err := parseBucketShard(en.Key)
		if err != nil {
			dw.log.Warn("datalog entry with an unexpected key, skipped", "key", en.Key, "err", err)
			continue
		}
		if !dw.e.cfg.Filter.Bucket(bs.bucket) {
			continue
		}
		dw.queue = append(dw.queue, en.Key)
		dw.markHot(en.Key)
	}
	last := page.Entries[len(page.Entries)-1]
	dw.dlNext = last.LogID
	if dw.dlNext == "" {
		dw.dlNext = page.Marker
	}
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
		if bd.Phase == phaseBucketFull {
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
				dw.dropBucketShard(key)
				continue
			}
			return false, true, err
		}
		if !more {
			dw.queue = dw.queue[1:]
		}
		if sent {
			return true, true, nil
		}
	}
	return false, false, nil
}

// dataTrimmed: the datalog shard no longer holds the entry at the read
// position (its oldest entry is after it, or it is empty).
func (dw *dataWorker) dataTrimmed(ctx context.Context) (bool, string, error) {
	first, err := dw.e.cfg.Data.ListDataLog(ctx, dw.shard, "", 1)
	if err != nil {
		return false, "", fmt.Errorf("read the oldest entry of datalog shard %d: %w", dw.shard, err)
	}
	if len(first.Entries) == 0 {
		return true, "", nil
	}
	oldest := first.Entries[0].LogID
	return oldest > dw.dlPos, oldest, nil
}

// resyncData handles a datalog shard trimmed past its bound: the changes
// it would have named are unknown, so every bucket index shard this datalog
// shard logs is looked at again — the known ones have their bilogs read
// from their own bounds (bilogs were not trimmed by this), the unknown ones
// (buckets created in the lost range) get a full sync — and the datalog
// bound moves to the shard's head. Logged and counted.
func (dw *dataWorker) resyncData(ctx context.Context) error {
	dw.e.cfg.Metrics.resyncs.WithLabelValues(dw.d.name).Inc()
	dw.log.Warn("re-checking every bucket shard this datalog shard logs (datalog trimmed past a bound)")
	head, err := dw.e.dataStartPosition(ctx, dw.shard)
	if err != nil {
		return err
	}
	shards, err := dw.e.allBucketShards(ctx)
	if err != nil {
		return err
	}
	var keys []string
	now := time.Now().UTC()
	var entries []checkpoint.Entry
	for _, bs := range shards {
		if !dw.e.cfg.Filter.Bucket(bs.bucket) || rgwobj.DataLogShard(bs.bucket, bs.shard, dw.e.dataShards) != dw.shard {
			continue
		}
		if _, ok := dw.bounds[bs.key]; !ok {
			bd := &checkpoint.Bound{Phase: phaseBucketFull, UpdatedAt: now}
			dw.bounds[bs.key] = bd
			dw.readPos[bs.key] = ""
			entries = append(entries, checkpoint.Entry{Key: dw.e.bucketShardKey(dw.d.name, bs), Bound: *bd})
		}
		keys = append(keys, bs.key)
	}
	// The bound moves to the head but stays phaseResync until every bucket
	// shard queued here is read and acked (resyncDone): a restart or a
	// lease move before that queues them all again. (Stored as
	// incremental here, the queue, only in memory, was lost.)
	nb := dw.bound
	nb.Marker, nb.TrimSafe, nb.UpdatedAt, nb.Phase = head, "", now, phaseResync
	nb.Resyncs++
	entries = append(entries, checkpoint.Entry{Key: dw.key, Bound: nb})
	if err := dw.e.cfg.Store.Put(entries...); err != nil {
		return err
	}
	dw.bound = nb
	dw.dlPos, dw.dlNext = head, ""
	dw.queue = append(dw.queue[:0], keys...)
	dw.resyncing = true
	return nil
}

// resyncDone ends a re-check whose queue is worked: a batch without ops
// whose ack (after every batch before it, acks come in order) stores the
// datalog bound as incremental.
func (dw *dataWorker) resyncDone(ctx context.Context) error {
	dw.resyncing = false
	dw.log.Info("re-check of the bucket shards of this datalog shard sent; done once acked")
	return dw.sendBatch(ctx, "", nil, nil, nil, time.Time{}, 0, func([]*v1.RetryItem) []checkpoint.Entry {
		nb := dw.bound
		if nb.Phase != phaseResync || dw.resyncing {
			return nil // a newer re-check began meanwhile
		}
		nb.Phase, nb.UpdatedAt, nb.Applier = phaseIncremental, time.Now().UTC(), dw.sub.st.applier
		dw.bound = nb
		return []checkpoint.Entry{{Key: dw.key, Bound: nb}}
	})
}

// phaseResync marks a datalog bound whose shard must re-check its bucket
// shards (set on every data shard of a destination when one of them found
// its log trimmed past its bound; survives restarts).
const phaseResync = "resync"

// markDataResync makes every data shard of d re-check its bucket shards:
// durably (each datalog bound's phase), and at once for running workers.
func (e *Exporter) markDataResync(d *destination) error {
	all, err := e.cfg.Store.ListLog(d.name, checkpoint.LogData)
	if err != nil {
		return err
	}
	var entries []checkpoint.Entry
	for _, en := range all {
		en.Bound.Phase = phaseResync
		entries = append(entries, en)
	}
	if err := e.cfg.Store.Put(entries...); err != nil {
		return err
	}
	d.dataResync.Add(1)
	return nil
}

// dataStartPosition is where a datalog bound starts: the newest entry, or
// "" when the shard is empty (its &info marker may name a trimmed entry).
func (e *Exporter) dataStartPosition(ctx context.Context, shard int) (string, error) {
	first, err := e.cfg.Data.ListDataLog(ctx, shard, "", 1)
	if err != nil {
		return "", fmt.Errorf("read datalog shard %d: %w", shard, err)
	}
	if len(first.Entries) == 0 {
		return "", nil
	}
	si, err := e.cfg.Data.DataLogShardInfo(ctx, shard)
	if err != nil {
		return "", fmt.Errorf("read datalog shard %d head: %w", shard, err)
	}
	return si.Marker, nil
}

func (dw *dataWorker) startBucketShard(ctx context.Context, key string) error {
	info, err := dw.e.cfg.Data.BILogInfo(ctx, key)
	if err != nil {
		if gone, gerr := dw.e.bucketGone(ctx, key); gerr == nil && gone {
			dw.dropBucketShard(key)
			return errDropped
		}
		return fmt.Errorf("bilog info of %s: %w", key, err)
	}
	bd := &checkpoint.Bound{Phase: phaseBucketFull, FullStart: info.MaxMarker, UpdatedAt: time.Now().UTC()}
	k := dw.boundKey(key)
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: k, Bound: *bd}); err != nil {
		return err
	}
	dw.bounds[key] = bd
	dw.readPos[key] = ""
	return dw.instanceMet(ctx, key)
}

var errDropped = errors.New("bucket shard dropped: the bucket was removed")

// bucketGone says whether the bucket of a bucket shard no longer exists at
// the source (its entry point is gone, or points at another instance: the
// bucket was removed, maybe created again).
func (e *Exporter) bucketGone(ctx context.Context, key string) (bool, error) {
	bs, err := parseBucketShard(key)
	if err != nil {
		return false, err
	}
	id, err := e.currentInstance(ctx, bs.bucket)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return id != bs.instance, nil
}

// currentInstance is the bucket_id a bucket's entry point names (its
// current instance); ErrNotFound when the bucket does not exist.
func (e *Exporter) currentInstance(ctx context.Context, bucket string) (string, error) {
	ep, err := e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucket, bucket)
	if err != nil {
		return "", err
	}
	id, err := rgwlog.BucketID(ep)
	if err != nil {
		return "", fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return id, nil
}

// dropBucketShard forgets a bucket shard of a removed bucket: off the queue,
// out of memory and out of the store.
func (dw *dataWorker) dropBucketShard(key string) {
	dw.log.Info("bucket removed at the source: its index shard is done", "bucket_shard", key)
	for i, k := range dw.queue {
		if k == key {
			dw.queue = append(dw.queue[:i:i], dw.queue[i+1:]...)
			break
		}
	}
	delete(dw.bounds, key)
	delete(dw.readPos, key)
	del := []checkpoint.Key{dw.boundKey(key), relistKey(dw.boundKey(key))}
	if bs, err := parseBucketShard(key); err == nil {
		del = append(del, metKey(dw.d, bs.instanceKey())) // its entry point never comes now
	}
	if err := dw.e.cfg.Store.Delete(del...); err != nil {
		dw.log.Warn("forget bucket shard", "bucket_shard", key, "err", err)
	}
}

// nextFull is a bucket shard still in full sync with listing left.
func (dw *dataWorker) nextFull() (string, bool) {
	var keys []string
	for k, bd := range dw.bounds {
		if bd.Phase == phaseBucketFull && dw.readPos[k] != fullDoneMark {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	sort.Strings(keys)
	return keys[0], true
}

// fullDoneMark: the read position of a bucket shard whose listing is all
// sent (its last page not yet acked).
const fullDoneMark = "\x00listed"

// sendFullPage lists one page of a bucket shard in full sync and sends it.
// The first time, it records the bilog marker to go on from afterwards.
func (dw *dataWorker) sendFullPage(ctx context.Context, key string) error {
	bd := dw.bounds[key]
	if bd.FullStart == "" && bd.Marker == "" && dw.readPos[key] == "" {
		info, err := dw.e.cfg.Data.BILogInfo(ctx, key)
		if err != nil {
			if gone, gerr := dw.e.bucketGone(ctx, key); gerr == nil && gone {
				dw.dropBucketShard(key)
				return nil
			}
			return fmt.Errorf("bilog info of %s: %w", key, err)
		}
		bd.FullStart = info.MaxMarker
		if bd.FullStart == "" {
			bd.FullStart = emptyBILog
		}
		k := dw.boundKey(key)
		if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: k, Bound: *bd}); err != nil {
			return err
		}
	}
	bs, err := parseBucketShard(key)
	if err != nil {
		return err
	}
	km, vm, _ := strings.Cut(dw.readPos[key], "\x00")
	page, err := dw.e.cfg.Objects.ListShard(ctx, key, km, vm, dw.e.cfg.BatchEntries)
	if errors.Is(err, rgwobj.ErrNotFound) {
		// Only the source's metadata says the bucket is gone (then there
		// is nothing to list; its deletions come by metadata sync). Any
		// other 404 is an error, retried and shown: taken as "gone", a
		// wrong address once lost every object of tenants' buckets
		// written before the full sync (issue #11, hole 1).
		gone, gerr := dw.e.bucketGone(ctx, key)
		switch {
		case gerr != nil:
			return fmt.Errorf("list %s after %q: %w (checking whether the bucket still exists: %v)", key, km, err, gerr)
		case !gone:
			return fmt.Errorf("list %s after %q: the source answered not found, but its metadata still has this bucket instance: %w", key, km, err)
		}
		page = rgwobj.ListPage{}
	} else if err != nil {
		return fmt.Errorf("list %s after %q: %w", key, km, err)
	}
	var refs []objRef
	for _, en := range page.Entries {
		// "null" in an unversioned bucket (no epoch) is just the object;
		// in a versioned or suspended one it is the null version.
		version := en.VersionID
		if version == "null" && en.VersionedEpoch == 0 {
			version = ""
		}
		r := objRef{bs: bs, key: en.Key, version: version, epoch: en.VersionedEpoch, ts: en.Mtime}
		if en.DeleteMarker {
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER
		}
		refs = append(refs, r)
	}
	next := fullDoneMark
	if page.Truncated {
		next = page.NextKeyMarker + "\x00" + page.NextVersionMarker
	}
	refs = dw.order.hold(key, refs, dw.bounds[key].Retries)
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return err // the page is listed again once there is room
	}
	dw.readPos[key] = next
	ops, failed := dw.buildOps(ctx, refs, "full:"+key, res)
	k := dw.boundKey(key)
	gen := dw.listGen[key]
	return dw.sendBatch(ctx, key, ops, failed, nil, time.Now().UTC(), res, func(f []*v1.RetryItem) []checkpoint.Entry {
		cur, ok := dw.bounds[key]
		if !ok {
			return nil // dropped meanwhile (its bucket was removed)
		}
		nb := *cur
		nb.UpdatedAt = time.Now().UTC()
		if dw.listGen[key] != gen {
			// A listing started again since (listAgain): this page's
			// position is not the new listing's; only its retries count.
		} else if next == fullDoneMark {
			nb.Phase, nb.Marker = phaseBucketInc, nb.FullStart
			if nb.Marker == emptyBILog {
				nb.Marker = ""
			}
			dw.readPos[key] = nb.Marker
		} else {
			nb.Marker = next
		}
		nb.Retries = addRechecks(addRetries(nb.Retries, f, dw.e, epochsOf(refs)), ops, f, dw.e.cfg.RecheckDelay)
		dw.bounds[key] = &nb
		return []checkpoint.Entry{{Key: k, Bound: nb}}
	})
}

// emptyBILog stands for "the bilog was empty" in FullStart (which is ""
// before it is read).
const emptyBILog = "\x00empty"

// sendBILog reads one page of a bucket shard's bilog after its read
// position and sends it; more says another page may follow.
func (dw *dataWorker) sendBILog(ctx context.Context, key string) (sent, more bool, err error) {
	bs, err := parseBucketShard(key)
	if err != nil {
		return false, false, err
	}
	pos := dw.readPos[key]
	entries, err := dw.e.cfg.Data.ListBILog(ctx, key, pos, dw.e.cfg.BatchEntries)
	if err != nil {
		return false, false, fmt.Errorf("list bilog %s after %q: %w", key, pos, err)
	}
	entries, trimmed, err := dw.checkBILogTrim(ctx, key, pos, entries)
	if err != nil || trimmed {
		return false, trimmed, err
	}
	if len(entries) == 0 {
		return false, false, nil
	}
	dw.markHot(key)
	refs := dw.order.hold(key, opsFromBILog(bs, entries), dw.bounds[key].Retries)
	last := entries[len(entries)-1].OpID
	if _, m, ok := strings.Cut(last, "#"); ok {
		last = m // listing markers are without the "N#" shard prefix
	}
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return false, false, err // the page is read again once there is room
	}
	dw.readPos[key] = last
	ops, failed := dw.buildOps(ctx, refs, key, res)
	k := dw.boundKey(key)
	err = dw.sendBatch(ctx, key, ops, failed, nil, entries[0].Timestamp, res, func(f []*v1.RetryItem) []checkpoint.Entry {
		cur, ok := dw.bounds[key]
		if !ok {
			return nil // dropped meanwhile (its bucket was removed)
		}
		nb := *cur
		if nb.Phase == phaseBucketInc {
			// (Back in full sync since, its log found trimmed: the
			// listing decides where the bilog is read from.)
			nb.TrimSafe, nb.Marker = nb.Marker, last
		}
		nb.UpdatedAt = time.Now().UTC()
		nb.Retries = addRechecks(addRetries(nb.Retries, f, dw.e, epochsOf(refs)), ops, f, dw.e.cfg.RecheckDelay)
		dw.bounds[key] = &nb
		return []checkpoint.Entry{{Key: k, Bound: nb}}
	})
	return err == nil, len(entries) >= dw.e.cfg.BatchEntries, err
}

// objRef is an object (version) a log named, with what it asks for.
type objRef struct {
	bs      bucketShard
	key     string
	version string
	epoch   uint64
	kind    v1.ObjectOpKind // unspecified: reconcile with the source's current state
	ts      time.Time
	marker  string
	attempt uint32
	// held: not sent now, kept for retry behind an earlier op of its key
	// (the reason).
	held string
}

// opsFromBILog turns bilog entries into object work. An unversioned key is
// reconciled with what the source has now (its last entry in the page
// stands for all). In a versioned bucket each version is its own key:
// link_olh writes the version with its epoch, link_olh_del lays a delete
// marker with the source's id, unlink_instance / del of an instance
// removes that version. "write" entries of versioned objects are skipped:
// their epoch is the index's, not the object's; the link_olh that follows
// carries the right one.
func opsFromBILog(bs bucketShard, entries []rgwadmin.BILogEntry) []objRef {
	type k struct{ key, version string }
	last := map[k]int{}
	var refs []objRef
	var dead []bool
	for _, en := range entries {
		if en.State != "" && en.State != "complete" {
			continue
		}
		r := objRef{bs: bs, key: en.Object, version: en.Instance, ts: en.Timestamp, marker: en.OpID}
		olhOp := en.Op == "link_olh" || en.Op == "link_olh_del" || en.Op == "unlink_instance"
		switch {
		case r.version == "null" && !en.Versioned && !olhOp:
			r.version = "" // the object of an unversioned bucket
		case r.version == "" && olhOp:
			// An OLH op without an instance is the null version (a write
			// while versioning was suspended: "write" instance "" then
			// "link_olh" instance "" with the epoch, measured on 16.2.15).
			r.version = "null"
		}
		versioned := en.Versioned || r.version != ""
		if olhOp {
			// Only an OLH op's ver.epoch is the version's OLH epoch. A
			// "write" or "del" entry's is the head object's RADOS version
			// (measured: unlink_instance epoch 4 then del epoch 536). Sent
			// as rgwx-versioned-epoch it does harm: an unversioned object
			// becomes an OLH with a null instance that no DELETE removes
			// (TestNullVersionWithEpochIsNotDeletable: the "resurrected
			// deletes"), a version delete pushes the destination's OLH
			// epoch past the source's.
			r.epoch = en.Ver.Epoch
		}
		switch en.Op {
		case "write", "del":
			if versioned && en.Op == "write" {
				if en.Versioned || r.version == "" {
					// A new version: its link_olh follows with the epoch.
					continue
				}
				// "versioned": false on a named instance: a change of that
				// existing version's attributes (PUT/DELETE ?tagging, PUT
				// ?acl, with or without versionId; measured, FACTS.md §7).
				// Re-checked as the source has the version now (its epoch
				// from the index): the applier then sets its tags and ACL
				// in place.
				break
			}
			if versioned {
				if r.version == "" {
					// The null instance's del (measured, FACTS.md
					// section 13): it follows the unlink_instance "" or
					// link_olh_del "" that carries the removal with its
					// epoch. Taken as its own op it named no version
					// (refused on zone-b, then retried as a copy of the
					// key's current version without its id).
					continue
				}
				if _, ok := last[k{r.key, r.version}]; !ok {
					// A version delete logs unlink_instance (with the
					// OLH epoch) and then del (measured): the unlink, in
					// this page or an earlier one, carries the delete. A
					// del alone would have no epoch, and an epoch-less
					// delete of a version zone-b still has (its unlink
					// kept for retry) pushes zone-b's OLH epoch past the
					// source's (a delete marker then not current: chaos
					// seed 2).
					continue
				}
				r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
			}
		case "link_olh":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_PUT
		case "link_olh_del":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER
		case "unlink_instance":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		default:
			continue // cancel, syncstop, resync, ...: nothing to copy
		}
		kk := k{r.key, r.version}
		if kk.version == "" {
			// The object without a version id is the null version: a
			// later OLH op of the null instance (its removal, a delete
			// marker over it) stands for an earlier plain write.
			kk.version = "null"
		}
		if i, ok := last[kk]; ok {
			if r.epoch == 0 && r.kind == refs[i].kind {
				// The "del" after an unlink_instance: keep the unlink's
				// epoch.
				r.epoch = refs[i].epoch
			}
			// The later entry wins, in its own place: the ops of one key
			// go in the log's (the epochs') order. (V1, V2, removal of V1
			// at the place of V1 would write V2 after an epoch above its
			// own: not current on the destination.)
			dead[i] = true
		}
		last[kk] = len(refs)
		refs = append(refs, r)
		dead = append(dead, false)
	}
	out := refs[:0]
	for i, r := range refs {
		if !dead[i] {
			out = append(out, r)
		}
	}
	return out
}

// buildOps stats every object (in parallel) and builds its op; an object
// the source cannot give is a failed item (kept for retry), not a stall.
func (dw *dataWorker) buildOps(ctx context.Context, refs []objRef, marker string, reserved int64) ([]*v1.ObjectOp, []*v1.RetryItem) {
	ops := make([]*v1.ObjectOp, len(refs))
	errs := make([]error, len(refs))
	// Inline bodies fill what the batch reserved of the stream's window
	// beyond its ops' own overhead (the rest stream as chunks), and source
	// reads are capped exporter-wide: memory does not grow with the number
	// of busy shards, and nothing is read that the window has no room for.
	var budget atomic.Int64
	budget.Store(reserved - opsOverhead(refs))
	var wg sync.WaitGroup
	for i, r := range refs {
		if r.held != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dw.e.fetchSem.Acquire(ctx, 1); err != nil {
				errs[i] = err
				return
			}
			defer dw.e.fetchSem.Release(1)
			ops[i], errs[i] = dw.e.buildOp(ctx, r, &budget)
		}()
	}
	wg.Wait()
	srcFailed := make([]bool, len(refs))
	for i := range refs {
		srcFailed[i] = errs[i] != nil
	}
	holdBehindFailures(refs, srcFailed)
	var out []*v1.ObjectOp
	var failed []*v1.RetryItem
	for i, op := range ops {
		r := refs[i]
		item := func(msg string) *v1.RetryItem {
			return &v1.RetryItem{Section: "object", Name: r.key, Bucket: r.bs.s3Bucket(), Key: r.key,
				VersionId: r.version, BucketShard: r.bs.key, Error: msg, Timestamp: timestamppb.New(r.ts)}
		}
		if r.held != "" {
			failed = append(failed, item(rgwlog.HeldPrefix+r.held))
			continue
		}
		if errs[i] != nil {
			if ctx.Err() == nil {
				dw.log.Warn("read object from source failed", "bucket", r.bs.bucket, "object", r.key, "version", r.version, "err", errs[i])
			}
			failed = append(failed, item("source: "+errs[i].Error()))
			continue
		}
		if op == nil {
			continue
		}
		op.Index = uint32(len(out))
		if op.Marker == "" {
			op.Marker = marker
		}
		dw.log.Debug("object op", "bucket", op.GetBucket(), "object", op.GetKey(), "version", op.GetVersionId(),
			"op", op.GetKind().String(), "epoch", op.GetVersionedEpoch(), "size", op.GetAttrs().GetSize(), "marker", op.GetMarker())
		op.Timestamp = timestamppb.New(r.ts)
		out = append(out, op)
	}
	return out, failed
}

// buildOp turns a reference into an op, reading the object's current state
// (and its body, when small).
func (e *Exporter) buildOp(ctx context.Context, r objRef, inlineBudget *atomic.Int64) (*v1.ObjectOp, error) {
	if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED && r.version != "" {
		// A retry or re-check of one version: what it must be on the
		// destination is what the source's index says now — a version
		// with its epoch (written without it, the destination would give
		// it a new one and could make it current over a later version), a
		// delete marker (Stat cannot see those), or nothing.
		le, found, err := e.cfg.Objects.FindVersion(ctx, r.bs.key, r.key, r.version)
		if err != nil {
			return nil, err
		}
		switch {
		case !found:
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		case le.DeleteMarker:
			r.kind, r.epoch = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, le.VersionedEpoch
		default:
			r.kind, r.epoch = v1.ObjectOpKind_OBJECT_OP_KIND_PUT, le.VersionedEpoch
		}
	}
	op := &v1.ObjectOp{Bucket: r.bs.s3Bucket(), Key: r.key, VersionId: r.version, Marker: r.marker}
	if r.version != "" {
		// Only a named version has an order to keep; an unversioned
		// object written with an epoch becomes an undeletable OLH on the
		// destination (see opsFromBILog).
		op.VersionedEpoch = r.epoch
	}
	switch r.kind {
	case v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION:
		op.Kind = r.kind
		owner, err := e.bucketOwner(ctx, r.bs)
		if err != nil {
			return nil, err
		}
		op.Owner = owner
		return op, nil
	}
	// Small objects come whole with their attributes (one request instead
	// of a Stat and a GET: the source gateway's CPU is what a catch-up of
	// small objects waits for, BENCHMARKS.md run G).
	info, head, err := e.cfg.Objects.StatRead(ctx, op.Bucket, r.key, r.version, min(e.cfg.InlineMax, statReadAhead))
	if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED && r.version == "" &&
		(errors.Is(err, rgwobj.ErrNotFound) || err == nil && info.VersionID != "" && info.VersionID != "null") {
		// An object without a version id is the null version. When the
		// key's current one is another version or none (a delete marker,
		// or nothing: a 404 is no proof either way), the source's index
		// says what the null version is now: copied as the current one
		// it became a new version of zone-b without its id (make chaos
		// seed 4: null versions only on zone-b), deleted plainly it
		// became a delete marker zone-b's source never had.
		r.version = "null"
		return e.buildOp(ctx, r, inlineBudget)
	}
	if errors.Is(err, rgwobj.ErrNotFound) {
		if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_PUT {
			// The version is gone already (a later entry removes it) if
			// the source's bucket index agrees; a 404 alone is no proof
			// (a wrong address answers it too).
			v := r.version
			if v == "" {
				v = "null"
			}
			_, found, ferr := e.cfg.Objects.FindVersion(ctx, r.bs.key, r.key, v)
			switch {
			case ferr != nil:
				return nil, fmt.Errorf("read %s/%s: %w (checking the source's bucket index: %v)", op.Bucket, r.key, err, ferr)
			case found:
				return nil, fmt.Errorf("read %s/%s: the source answered not found, but its bucket index lists the object: %w", op.Bucket, r.key, err)
			}
			return nil, nil
		}
		op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE
		if r.version != "" {
			op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		}
		owner, err := e.bucketOwner(ctx, r.bs)
		if err != nil {
			return nil, err
		}
		op.Owner = owner
		return op, nil
	}
	if err != nil {
		return nil, err
	}
	if len(head) > 0 {
		e.cfg.Metrics.objectBytesRead.Add(float64(len(head)))
	}
	op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_PUT
	op.Owner = info.Owner
	if op.VersionId == "" && (info.VersionID == "" || info.VersionID == "null") {
		// The object without a version id is the null version: say so, or a
		// destination bucket whose versioning state has not caught up yet
		// (metadata and data travel separately) would give it a random id.
		// On an unversioned bucket the gateway stores it as it would anyway.
		op.VersionId = "null"
	}
	op.Attrs = &v1.ObjectAttrs{
		Size: info.Size, Etag: info.ETag, ContentType: info.ContentType, CacheControl: info.CacheControl,
		ContentDisposition: info.ContentDisposition, ContentEncoding: info.ContentEncoding,
		ContentLanguage: info.ContentLanguage, Expires: info.Expires, UserMeta: info.UserMeta, Tags: info.Tags,
		Acl: info.ACL, PartSizes: info.PartSizes, SourceMtime: timestamppb.New(info.Mtime),
	}
	if info.Size > e.cfg.InlineMax || inlineBudget.Add(-info.Size) < 0 {
		op.Chunked = true
		return op, nil
	}
	if info.Size == 0 {
		return op, nil
	}
	if int64(len(head)) == info.Size {
		op.Body = head
		return op, nil
	}
	rc, err := e.cfg.Objects.Get(ctx, op.Bucket, r.key, r.version, 0, info.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, info.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", op.Bucket, r.key, err)
	}
	if int64(len(body)) != info.Size {
		return nil, fmt.Errorf("read %s/%s: %d bytes, stat said %d (changed meanwhile?)", op.Bucket, r.key, len(body), info.Size)
	}
	op.Body = body
	e.cfg.Metrics.objectBytesRead.Add(float64(len(body)))
	return op, nil
}

// statReadAhead is how much of a body buildOp reads with the attributes:
// objects up to this size cost one request; a larger one reads this much
// more than it needs (counted in object_bytes_read).
const statReadAhead = 64 << 10

// bucketOwner is the owner of a bucket (for rgwx-uid of deletes). It is
// read from the shard's instance; when the source no longer has that
// instance (a reshard removes the old one: FACTS.md section 10) from the
// bucket's current one — the owner is the bucket's. Before, every op of
// the old instance's bilog tail failed its source read for good (a chaos
// run: 1,401 failed reads of one bucket, "bucket.instance … 404").
func (e *Exporter) bucketOwner(ctx context.Context, bs bucketShard) (string, error) {
	b, err := e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucketInstance, bs.instanceKey())
	if errors.Is(err, rgwadmin.ErrNotFound) {
		if id, cerr := e.currentInstance(ctx, bs.bucket); cerr == nil && id != "" && id != bs.instance {
			b, err = e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucketInstance, bs.bucket+":"+id)
		}
	}
	if err != nil {
		return "", fmt.Errorf("owner of bucket %s: %w", bs.bucket, err)
	}
	var v struct {
		Data struct {
			BucketInfo struct {
				Owner  string `json:"owner"`
				Bucket struct {
					Tenant string `json:"tenant"`
				} `json:"bucket"`
			} `json:"bucket_info"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("owner of bucket %s: %w", bs.bucket, err)
	}
	owner := v.Data.BucketInfo.Owner
	if t := v.Data.BucketInfo.Bucket.Tenant; t != "" && !strings.Contains(owner, "$") {
		owner = t + "$" + owner
	}
	return owner, nil
}

// sendBatch sends ops (and the chunks of chunked ones) as one batch.
// reserved is what the caller took of the stream's window for it
// (reserve); what the batch does not need of it goes back at once.
// resent are the retries the batch sends again (keyOrder).
func (dw *dataWorker) sendBatch(ctx context.Context, bs string, ops []*v1.ObjectOp, srcFailed []*v1.RetryItem, resent []checkpoint.Retry, first time.Time,
	reserved int64, commit func([]*v1.RetryItem) []checkpoint.Entry) error {
	dw.seq++
	var payload int64
	for _, op := range ops {
		payload += opOverhead(op.GetKey()) + int64(len(op.GetBody()))
	}
	batch := &v1.Batch{Shard: dw.sub.unit.Ref(), Generation: dw.sub.gen, Seq: dw.seq, Objects: ops, PayloadBytes: uint64(payload),
		ThroughMarker: strconv.FormatUint(dw.seq, 10)}
	need := min(payload, reserved)
	dw.credit.give(reserved - need)
	if err := dw.sub.st.throttle(ctx, payload); err != nil {
		dw.credit.give(need)
		return err
	}
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
		commit: func(f []*v1.RetryItem) []checkpoint.Entry { return commit(append(f, srcFailed...)) }}
	dw.inflight = append(dw.inflight, db)
	dw.order.sent(db.seq, bs, ops, srcFailed, resent)
	dw.e.cfg.Metrics.batchesSent.WithLabelValues(dw.d.name, logLabel(dw.sub.unit.Log)).Inc()
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

// opOverhead is what an op costs in its batch beside its inline body.
func opOverhead(key string) int64 { return int64(len(key)) + 128 }

// opsOverhead is the most the refs' ops cost beside their inline bodies.
func opsOverhead(refs []objRef) int64 {
	var n int64
	for _, r := range refs {
		if r.held == "" {
			n += opOverhead(r.key)
		}
	}
	return n
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

func (dw *dataWorker) handleAck(ack *v1.Ack) error {
	if len(dw.inflight) == 0 || ack.GetSeq() != dw.inflight[0].seq {
		return fmt.Errorf("protocol: ack for batch %d out of order", ack.GetSeq())
	}
	db := dw.inflight[0]
	entries := db.commit(ack.GetFailed())
	if err := dw.e.cfg.Store.Put(entries...); err != nil {
		return fmt.Errorf("store data bounds: %w", err)
	}
	dw.inflight = dw.inflight[1:]
	dw.order.acked(db.seq)
	dw.credit.give(db.payload)
	dw.stats.progressed()
	applied := max(db.ops-len(ack.GetFailed()), 0)
	dw.e.cfg.Metrics.entriesApplied.WithLabelValues(dw.d.name, logLabel(dw.sub.unit.Log)).Add(float64(applied))
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
	for _, b := range dw.inflight {
		behind += uint64(b.ops)
		if !b.first.IsZero() && (oldest.IsZero() || b.first.Before(oldest)) {
			oldest = b.first
		}
	}
	retries := 0
	for _, bd := range dw.bounds {
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
		s.behind, s.behindMore, s.oldest = behind, len(dw.queue) > 0 || dw.dlNext != "", oldest
		s.retries, s.inflight, s.bound = retries, len(dw.inflight), dw.bound.Marker
	})
}

// addRetries adds failed object items to a bucket shard's retries.
func addRetries(rs []checkpoint.Retry, failed []*v1.RetryItem, e *Exporter, epochs map[string]uint64) []checkpoint.Retry {
	now := time.Now().UTC()
	for _, f := range failed {
		found := false
		for i := range rs {
			if rs[i].Name == f.GetKey() && rs[i].VersionID == f.GetVersionId() {
				if !rgwlog.Held(f.GetError()) {
					rs[i].Attempts++ // held again is not a failure of its own: no longer backoff
				}
				rs[i].Error = f.GetError()
				rs[i].NextAttempt = now.Add(e.backoff(rs[i].Attempts))
				if ep := epochs[f.GetKey()+"\x00"+f.GetVersionId()]; ep > 0 {
					rs[i].Epoch = ep
				}
				found = true
			}
		}
		if !found {
			rs = append(rs, checkpoint.Retry{Section: "object", Name: f.GetKey(), VersionID: f.GetVersionId(),
				Epoch: epochs[f.GetKey()+"\x00"+f.GetVersionId()],
				Error: f.GetError(), Attempts: 1, Timestamp: f.GetTimestamp().AsTime(), NextAttempt: now.Add(e.backoff(1))})
		}
	}
	return rs
}

// epochsOf maps key+"\x00"+version to the epoch each ref carries.
func epochsOf(refs []objRef) map[string]uint64 {
	m := map[string]uint64{}
	for _, r := range refs {
		if r.epoch > 0 {
			m[r.key+"\x00"+r.version] = r.epoch
		}
	}
	return m
}

// recheckMark is the Error of a scheduled re-check (not a failure).
const recheckMark = "recheck"

// addRechecks schedules, for every delete of ops that was applied, one
// re-check of the key after delay: the key is reconciled with the source
// again (and deleted again if still gone). A write from an earlier holder
// of the shard that reached the destination late — held in a network
// buffer, or sent by a process frozen past its lease — would otherwise
// leave a deleted object there for good.
func addRechecks(rs []checkpoint.Retry, ops []*v1.ObjectOp, failed []*v1.RetryItem, delay time.Duration) []checkpoint.Retry {
	if delay <= 0 {
		return rs
	}
	bad := map[string]bool{}
	for _, f := range failed {
		bad[f.GetKey()+"\x00"+f.GetVersionId()] = true
	}
	have := map[string]bool{}
	for _, r := range rs {
		have[r.Name+"\x00"+r.VersionID] = true
	}
	now := time.Now().UTC()
	for _, op := range ops {
		k := op.GetKind()
		if k != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE && k != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION {
			continue
		}
		id := op.GetKey() + "\x00" + op.GetVersionId()
		if bad[id] || have[id] {
			continue
		}
		have[id] = true
		rs = append(rs, checkpoint.Retry{Section: "object", Name: op.GetKey(), VersionID: op.GetVersionId(),
			Epoch: op.GetVersionedEpoch(), Error: recheckMark, Timestamp: op.GetTimestamp().AsTime(), NextAttempt: now.Add(delay)})
	}
	return rs
}

// dueRetry is a bucket shard with retries to send now (readyRetries).
func (dw *dataWorker) dueRetry() (string, bool) {
	now := time.Now()
	keys := make([]string, 0)
	for k := range dw.bounds {
		if len(dw.order.ready(k, dw.bounds[k].Retries, now)) > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	sort.Strings(keys)
	return keys[0], true
}

// sendRetries resends a bucket shard's ready retries: each object is
// reconciled with the source's current state.
func (dw *dataWorker) sendRetries(ctx context.Context, key string) error {
	bs, err := parseBucketShard(key)
	if err != nil {
		return err
	}
	resent := dw.order.ready(key, dw.bounds[key].Retries, time.Now())
	var refs []objRef
	for _, r := range resent {
		refs = append(refs, objRef{bs: bs, key: r.Name, version: r.VersionID, epoch: r.Epoch, ts: r.Timestamp, attempt: r.Attempts})
	}
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return err
	}
	ops, failed := dw.buildOps(ctx, refs, "retry:"+key, res)
	k := dw.boundKey(key)
	return dw.sendBatch(ctx, key, ops, failed, resent, time.Time{}, res, func(f []*v1.RetryItem) []checkpoint.Entry {
		cur, ok := dw.bounds[key]
		if !ok {
			return nil // dropped meanwhile (its bucket was removed)
		}
		nb := *cur
		sent := map[string]bool{}
		for _, r := range resent {
			sent[itemID(key, r.Name, r.VersionID)] = true
		}
		failedNow := map[string]bool{}
		for _, it := range f {
			failedNow[itemID(key, it.GetKey(), it.GetVersionId())] = true
		}
		var kept []checkpoint.Retry
		for _, r := range nb.Retries {
			id := itemID(key, r.Name, r.VersionID)
			if sent[id] && !failedNow[id] {
				continue // applied
			}
			kept = append(kept, r)
		}
		nb.Retries = addRetries(kept, f, dw.e, epochsOf(refs))
		nb.UpdatedAt = time.Now().UTC()
		dw.bounds[key] = &nb
		return []checkpoint.Entry{{Key: k, Bound: nb}}
	})
}

var _ = slog.Default
