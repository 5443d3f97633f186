package exporter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Bucket instances met after the data sync's start (a new bucket, or the
// new instance of a reshard) and bucket-index logs trimmed past a bound:
// both put bucket shards into full sync, some of them owned by other data
// workers (datalog shards) than the one that found out.
//
// A reshard moves the objects into a new instance whose bilogs start
// empty, and zone-b, once metadata sync wrote that instance, lists the
// bucket from its empty index there (FACTS.md section 10). So every shard
// of an instance is listed as soon as one of its shards is met
// (instanceMet), and again once the bucket's entry point is applied on
// zone-b if the data sync met it before (bucketInstanceApplied).

// shardNews hands bucket shards to the data workers that own them: bounds
// stored (full sync) by another worker or by the metadata path, and
// shards to list again. Each worker takes its own at its next step
// (destination.shardsAdded says there is news); what a worker not running
// now would take, it reads from the store when it starts (the bounds, and
// the re-listings: checkpoint.LogRelist).
type shardNews struct {
	mu     sync.Mutex
	added  byShard[checkpoint.Entry]
	relist byShard[string] // bucket shard keys
}

// byShard holds items for the data workers, by datalog shard.
type byShard[T any] map[int][]T

func (m *byShard[T]) push(shard int, v T) {
	if *m == nil {
		*m = byShard[T]{}
	}
	(*m)[shard] = append((*m)[shard], v)
}

// take returns and forgets shard's items.
func (m byShard[T]) take(shard int) []T {
	out := m[shard]
	delete(m, shard)
	return out
}

// metKey is where the store keeps that the data sync met instance (a
// "bucket:instance") before zone-b had its entry point: until that entry
// point is applied (bucketInstanceApplied), across restarts.
func metKey(d *destination, instance string) checkpoint.Key {
	return checkpoint.Key{Destination: d.name, Log: checkpoint.LogInstanceMet, Instance: instance}
}

// relistKey is where the store keeps a bucket shard to be listed again
// until its worker has stored the listing's new bound.
func relistKey(k checkpoint.Key) checkpoint.Key {
	return checkpoint.Key{Destination: k.Destination, Log: checkpoint.LogRelist, Shard: k.Shard, Instance: k.Instance}
}

// checkKey is where the store keeps a bucket whose entry point zone-b
// took and whose instance is still to be checked (bucketInstanceApplied):
// stored with the metadata bound that acks the entry point, deleted once
// checked, resumed at start.
func checkKey(d *destination, bucket string) checkpoint.Key {
	return checkpoint.Key{Destination: d.name, Log: checkpoint.LogInstanceCheck, Instance: bucket}
}

func (n *shardNews) add(entries []checkpoint.Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, en := range entries {
		n.added.push(int(en.Key.Shard), en)
	}
}

func (n *shardNews) takeAdded(shard int) []checkpoint.Entry {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.added.take(shard)
}

func (n *shardNews) listAgain(keys []checkpoint.Key) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		n.relist.push(int(k.Shard), k.Instance)
	}
}

func (n *shardNews) takeRelist(shard int) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.relist.take(shard)
}

// queueUnlisted stores a full-sync bound for each of shards that has none,
// and hands them to their data workers. It returns the keys of those that
// had one already, and how many it added. fromLogStart: the instance's
// index was seen empty, so its bilogs are followed from their first entry
// instead (see bucketInstanceApplied).
func (e *Exporter) queueUnlisted(d *destination, shards []rgwlog.BucketShard, fromLogStart bool) (existing []checkpoint.Key, added int, err error) {
	existing, missing, err := e.splitListed(d, shards)
	if err != nil {
		return nil, 0, err
	}
	if err := e.queueShards(d, missing, fromLogStart); err != nil {
		return nil, 0, err
	}
	return existing, len(missing), nil
}

// splitListed sorts the store keys of shards into those with a bound and
// those without.
func (e *Exporter) splitListed(d *destination, shards []rgwlog.BucketShard) (existing, missing []checkpoint.Key, err error) {
	for _, bs := range shards {
		k := e.bucketShardKey(d.name, bs)
		_, ok, err := e.cfg.Store.Get(k)
		switch {
		case err != nil:
			return nil, nil, err
		case ok:
			existing = append(existing, k)
		default:
			missing = append(missing, k)
		}
	}
	return existing, missing, nil
}

// queueShards stores a first bound for each of keys, durably, and hands
// them to their data workers: full sync, or the bilog from its first entry
// (fromLogStart).
func (e *Exporter) queueShards(d *destination, keys []checkpoint.Key, fromLogStart bool) error {
	if len(keys) == 0 {
		return nil
	}
	now := time.Now().UTC()
	phase := checkpoint.PhaseBucketFull
	if fromLogStart {
		phase = checkpoint.PhaseIncremental
	}
	entries := make([]checkpoint.Entry, len(keys))
	for i, k := range keys {
		entries[i] = checkpoint.Entry{Key: k, Bound: checkpoint.Bound{Phase: phase, UpdatedAt: now}}
	}
	if err := e.cfg.Store.Put(entries...); err != nil {
		return err
	}
	d.news.add(entries)
	d.shardsAdded.Add(1)
	return nil
}

// instanceMet runs when the data sync meets a bucket shard it had no bound
// for (startBucketShard): every other index shard of that instance without
// a bound is queued for full sync too — a new bucket, or the new instance
// of a reshard, whose objects the gateway moved into shards that may never
// see a write, and so never a datalog entry.
func (dw *dataWorker) instanceMet(ctx context.Context, key string) error {
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return err
	}
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: metKey(dw.d, bs.InstanceKey()), Bound: checkpoint.Bound{UpdatedAt: time.Now().UTC()}}); err != nil {
		return err
	}
	if bs.Shard < 0 {
		return nil // an unsharded index has no siblings
	}
	shards, err := dw.e.shardsOf(ctx, bs.Bucket)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return nil // removed meanwhile: its shards are dropped as they come
	}
	if err != nil {
		return fmt.Errorf("index shards of %s: %w", bs.Bucket, err)
	}
	var siblings []rgwlog.BucketShard
	for _, sib := range shards {
		if sib.Instance == bs.Instance && sib.Key != key { // another instance current now: its shards come by the datalog
			siblings = append(siblings, sib)
		}
	}
	_, added, err := dw.e.queueUnlisted(dw.d, siblings, false)
	if added > 0 {
		dw.log.Info("bucket instance met: every index shard queued for full sync", "instance", bs.InstanceKey(), "shards_added", added)
	}
	return err
}

// appliedBucket is a bucket entry point a metadata batch wrote on zone-b,
// with the instance its blob names (id) and, when the batch carried that
// instance's blob too, its number of index shards (numShards; -1: not
// carried, read from the source).
type appliedBucket struct {
	name      string
	id        string
	numShards int
}

// appliedBuckets are the bucket entry points among a metadata batch's
// entries, with what its blobs say of their instances.
func appliedBuckets(entries []*v1.MetadataEntry) []appliedBucket {
	shards := map[string]int{}
	for _, en := range entries {
		if en.GetSection() == rgwlog.SectionBucketInstance && en.GetOp() != v1.MetadataOp_METADATA_OP_DELETE {
			if n, err := rgwlog.NumShards(en.GetBlob()); err == nil {
				shards[en.GetName()] = n
			}
		}
	}
	var out []appliedBucket
	for _, en := range entries {
		if en.GetSection() != rgwlog.SectionBucket || en.GetOp() == v1.MetadataOp_METADATA_OP_DELETE {
			continue
		}
		b := appliedBucket{name: en.GetName(), numShards: -1}
		if id, err := rgwlog.BucketID(en.GetBlob()); err == nil && id != "" {
			b.id = id
			if n, ok := shards[en.GetName()+":"+id]; ok {
				b.numShards = n
			}
		}
		out = append(out, b)
	}
	return out
}

// appliedOK are the bucket entry points of bs the applier did not fail.
func appliedOK(bs []appliedBucket, failed []*v1.RetryItem) []appliedBucket {
	if len(bs) == 0 {
		return nil
	}
	failedNames := map[string]bool{}
	for _, f := range failed {
		failedNames[f.GetName()] = true
	}
	var ok []appliedBucket
	for _, b := range bs {
		if !failedNames[b.name] {
			ok = append(ok, b)
		}
	}
	return ok
}

// bucketInstanceApplied runs once zone-b has a bucket's entry point as
// the source has it now (its metadata batch acked): every index shard of
// the current instance without a bound is queued for full sync, and the
// ones the data sync met before (copied, maybe, into the instance zone-b
// had then) are listed again. When no write follows a reshard, no datalog
// entry ever names the new instance: without this its objects stayed
// missing on zone-b for good (chaos, CHAOS_EXTENDED). Errors are logged;
// the datalog path still meets the instance on its next write.
//
// A new bucket's index is empty: listing each of its shards (a bilog info
// and a listing each, 11 shards by default) made the metadata sync of
// 1,000 new buckets 5 times slower (the bench's metadata run: 20,000 of
// zone-a's 27,700 requests). So the instance is first listed whole, one
// request (instanceEmpty): when it holds nothing, every object it will
// hold is written after that listing and logged in its shards' bilogs, so
// they are followed from their first entry. Anything else — entries, an
// error — lists the shards as before. An instance whose every shard has a
// bound already is not listed at all (a bucket's entry point is logged
// more than once as it is created).
//
// It runs in the instance lanes (instanceLanes), not on the metadata
// worker's ack path: run there, one bucket after another, its source
// requests held a shard's next batch, and the mdlog of a zone names most
// buckets in a few shards (the bench's 10,000 buckets fell in 4 of 64:
// the gateway's hash of similar names), so the metadata sync of 12,000
// items ran at 0.55 of the rate of 1,200 (issue #15, BENCHMARKS.md).
func (e *Exporter) bucketInstanceApplied(ctx context.Context, d *destination, b appliedBucket) error {
	if !e.checksInstances(b.name) {
		return nil
	}
	if _, ok, err := e.cfg.Store.Get(checkpoint.UnitKey(d.name, rgwlog.Unit{Log: rgwlog.LogData})); err != nil {
		return err
	} else if !ok {
		return nil // data sync not initialised: its init lists every bucket
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := e.currentInstance(ctx, b.name)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return nil // removed since
	}
	n := -1
	if err == nil && id == b.id {
		n = b.numShards // the batch carried this instance's blob
	}
	var shards []rgwlog.BucketShard
	if err == nil {
		shards, err = e.instanceShards(ctx, b.name, id, n)
	}
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return nil // removed since
	}
	if err != nil {
		return fmt.Errorf("read its index shards: %w", err)
	}
	mk := metKey(d, shards[0].InstanceKey())
	_, met, err := e.cfg.Store.Get(mk)
	if err != nil {
		return err
	}
	existing, missing, err := e.splitListed(d, shards)
	if err != nil {
		return fmt.Errorf("read its index shards' bounds: %w", err)
	}
	if len(missing) > 0 {
		empty, err := e.instanceEmpty(ctx, shards[0].InstanceKey())
		if err != nil {
			e.log.Debug("bucket entry point applied: could not list its instance whole (its shards are listed one by one)",
				"destination", d.name, "bucket", b.name, "err", err)
		}
		if err := e.queueShards(d, missing, empty); err != nil {
			return fmt.Errorf("queue its index shards: %w", err)
		}
		if empty {
			e.log.Debug("bucket instance applied on the destination: its index is empty, its bilogs are followed from their start",
				"destination", d.name, "bucket", b.name, "instance", id, "shards_added", len(missing))
		} else {
			e.log.Info("bucket instance applied on the destination: its index shards queued for full sync",
				"destination", d.name, "bucket", b.name, "instance", id, "shards_added", len(missing))
		}
	}
	if met && len(existing) > 0 {
		e.log.Info("bucket instance applied on the destination after its shards were met: listing them again",
			"destination", d.name, "bucket", b.name, "shards", len(existing))
		relist := make([]checkpoint.Entry, len(existing))
		for i, k := range existing {
			relist[i] = checkpoint.Entry{Key: relistKey(k), Bound: checkpoint.Bound{UpdatedAt: time.Now().UTC()}}
		}
		if err := e.cfg.Store.Put(relist...); err != nil {
			return fmt.Errorf("store its shards' re-listing: %w", err)
		}
		d.news.listAgain(existing)
		d.shardsAdded.Add(1)
	}
	if met {
		return e.cfg.Store.Delete(mk)
	}
	return nil
}

// instanceLanes run bucketInstanceApplied, a bucket always in the same
// lane (its checks stay in the order they were acked).
const instanceLanes = 4

// appliedLane queues the bucket entry points acked on any destination
// whose instances its goroutine checks; a bucket queued again before it
// is checked is checked once, with the newest batch's blobs. It never
// blocks the metadata worker that pushes.
type appliedLane struct {
	mu      sync.Mutex
	pending map[string]appliedWork // destination + bucket -> newest
	order   []string
	wake    chan struct{}
}

type appliedWork struct {
	d  *destination
	b  appliedBucket
	at time.Time // when its checkKey was stored: a later store of it is later work
}

func newAppliedLanes() []*appliedLane {
	out := make([]*appliedLane, instanceLanes)
	for i := range out {
		out[i] = &appliedLane{pending: map[string]appliedWork{}, wake: make(chan struct{}, 1)}
	}
	return out
}

func (l *appliedLane) push(w appliedWork) {
	l.mu.Lock()
	k := w.d.name + "\x00" + w.b.name
	if _, ok := l.pending[k]; !ok {
		l.order = append(l.order, k)
	}
	l.pending[k] = w
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *appliedLane) pop() (appliedWork, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return appliedWork{}, false
	}
	k := l.order[0]
	l.order = l.order[1:]
	w := l.pending[k]
	delete(l.pending, k)
	return w, true
}

// instanceRetry is how long a lane waits before it checks a bucket again
// whose check failed (the source, or the store).
var instanceRetry = 30 * time.Second

func (l *appliedLane) run(ctx context.Context, e *Exporter) {
	for {
		for w, ok := l.pop(); ok; w, ok = l.pop() {
			if ctx.Err() != nil {
				return
			}
			err := e.bucketInstanceApplied(ctx, w.d, w.b)
			if err == nil {
				// Not a check stored since this one was queued (a later
				// batch's, queued behind): that one is still to do.
				err = e.cfg.Store.DeleteIf(checkKey(w.d, w.b.name), func(b checkpoint.Bound) bool { return !b.UpdatedAt.After(w.at) })
			}
			if err != nil && ctx.Err() == nil {
				e.log.Warn("bucket entry point applied: checking its instance failed; will retry",
					"destination", w.d.name, "bucket", w.b.name, "err", err, "retry_in", instanceRetry)
				time.AfterFunc(instanceRetry, func() { l.push(w) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
	}
}

// bucketsApplied hands the bucket entry points of an acked metadata batch
// to their instance lanes (their checkKeys are stored with the batch's
// bound: instanceChecks).
func (e *Exporter) bucketsApplied(d *destination, bs []appliedBucket, at time.Time) {
	for _, b := range bs {
		if !e.checksInstances(b.name) {
			continue // nothing to check, nothing stored
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(b.name))
		e.applied[h.Sum32()%instanceLanes].push(appliedWork{d: d, b: b, at: at})
	}
}

// checksInstances says whether bucket's instances are checked when its
// entry point is applied: data sync on, and the bucket replicated.
func (e *Exporter) checksInstances(bucket string) bool {
	return e.cfg.Data != nil && e.cfg.Filter.Bucket(bucket)
}

// instanceChecks are the store entries that keep bs to be checked until
// they are (stored with the metadata bound that acks them).
func (e *Exporter) instanceChecks(d *destination, bs []appliedBucket, now time.Time) []checkpoint.Entry {
	var out []checkpoint.Entry
	for _, b := range bs {
		if e.checksInstances(b.name) {
			out = append(out, checkpoint.Entry{Key: checkKey(d, b.name), Bound: checkpoint.Bound{UpdatedAt: now}})
		}
	}
	return out
}

// resumeInstanceChecks queues again the checks an earlier run stored and
// did not finish.
func (e *Exporter) resumeInstanceChecks() error {
	e.mu.Lock()
	var dests []*destination
	for _, d := range e.dests {
		dests = append(dests, d)
	}
	e.mu.Unlock()
	n := 0
	for _, d := range dests {
		pending, err := e.cfg.Store.ListLog(d.name, checkpoint.LogInstanceCheck)
		if err != nil {
			return err
		}
		for _, en := range pending {
			e.bucketsApplied(d, []appliedBucket{{name: en.Key.Instance, numShards: -1}}, en.Bound.UpdatedAt)
		}
		n += len(pending)
	}
	if n > 0 {
		e.log.Info("resuming the checks of bucket instances zone-b took before the last stop", "buckets", n)
	}
	return nil
}

// instanceEmpty lists a bucket instance's index whole ("bucket:instance":
// the gateway merges every shard of that instance; FACTS.md section 11)
// and tells whether it holds no entry at all: no object, version or
// delete marker.
func (e *Exporter) instanceEmpty(ctx context.Context, instanceKey string) (bool, error) {
	page, err := e.cfg.Objects.ListShard(ctx, instanceKey, "", "", 1)
	if err != nil {
		return false, err
	}
	return len(page.Entries) == 0 && !page.Truncated, nil
}

// takeNews takes the bucket shards handed to this worker: bounds stored
// by others, and shards to list again.
func (dw *dataWorker) takeNews() error {
	for _, en := range dw.d.news.takeAdded(dw.shard) {
		if _, ok := dw.bounds[en.Key.Instance]; ok {
			continue
		}
		bd := en.Bound
		dw.bounds[en.Key.Instance] = &bd
		dw.readPos[en.Key.Instance] = bd.Marker
	}
	relist := dw.d.news.takeRelist(dw.shard)
	sort.Strings(relist)
	relist = slices.Compact(relist)
	for _, k := range relist {
		if _, ok := dw.bounds[k]; ok {
			if err := dw.listAgain(k, "its bucket instance reached the destination after it was first listed", true); err != nil {
				return err
			}
		} // else dropped meanwhile
		if err := dw.e.cfg.Store.Delete(relistKey(dw.boundKey(k))); err != nil {
			return err
		}
	}
	return nil
}

// checkBILogTrim tells whether a bilog read after pos found entries
// trimmed unread (then the shard is back in full sync: bilogTrimmed).
// index_ver numbers a shard's entries one by one (the number in the op
// id), and max_marker outlives a trim (FACTS.md section 8): a first entry
// past the read position's next one, or an empty listing while max_marker
// is past the position (listed again first, to rule out a write in
// between), means entries were trimmed (issue #11, hole 7). An empty
// position is the start of a log that had no entry when the shard was
// listed: any entry since is after it, but its first number is not known
// (a reshard's new shards start at 2: FACTS.md section 10). It returns the
// entries to go on with (listed again when the first listing was empty).
func (dw *dataWorker) checkBILogTrim(ctx context.Context, key, pos string, entries []rgwadmin.BILogEntry) ([]rgwadmin.BILogEntry, bool, error) {
	n, numbered := bilogIndexVer(pos)
	fromStart := pos == ""
	if len(entries) == 0 && (numbered || fromStart) {
		info, err := dw.e.cfg.Data.BILogInfo(ctx, key)
		if err != nil {
			return nil, false, fmt.Errorf("bilog info of %s: %w", key, err)
		}
		m, ok := bilogIndexVer(info.MaxMarker)
		if !ok || (!fromStart && m <= n) {
			return nil, false, nil
		}
		// Or written since the listing: list again to tell.
		entries, err = dw.e.cfg.Data.ListBILog(ctx, key, pos, dw.e.cfg.BatchEntries)
		if err != nil {
			return nil, false, fmt.Errorf("list bilog %s after %q: %w", key, pos, err)
		}
		if len(entries) == 0 {
			return nil, true, dw.bilogTrimmed(key, n, rgwadmin.BILogEntry{OpID: info.MaxMarker, IndexVer: m})
		}
	}
	if numbered && len(entries) > 0 && entries[0].IndexVer > n+1 {
		return nil, true, dw.bilogTrimmed(key, n, entries[0])
	}
	return entries, false, nil
}

// bilogIndexVer is the index_ver in a bilog marker ("[N#]00000000008.14057.6"
// → 8); ok is false for "" and the empty-log mark.
func bilogIndexVer(marker string) (uint64, bool) {
	if _, m, ok := strings.Cut(marker, "#"); ok {
		marker = m
	}
	num, _, ok := strings.Cut(marker, ".")
	if !ok || num == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil && n > 0
}

// bilogTrimmed puts a bucket shard whose bilog was trimmed past its read
// position back into full sync: its objects are listed and copied again
// (the retries it holds stay), then its bilog is followed from the marker
// recorded when the listing starts. Deletes logged only in the trimmed
// range are not replayed: an object removed there stays on zone-b until
// it is touched again (README, known problems).
func (dw *dataWorker) bilogTrimmed(key string, at uint64, first rgwadmin.BILogEntry) error {
	dw.log.Error("bucket index log trimmed past the bound: listing the bucket shard again (full sync)",
		"bucket_shard", key, "bound_index_ver", at, "first_entry_index_ver", first.IndexVer, "first_entry", first.OpID)
	dw.e.cfg.Metrics.resyncs.WithLabelValues(dw.d.name).Inc()
	return dw.listAgain(key, "", false)
}

// listAgain puts a bucket shard back into full sync (retries kept).
// keepLog: its bilog is then read on from where it was (nothing logged
// since is skipped: a delete logged after the old position is applied
// after the listing, which only copies what exists); otherwise from the
// head when the listing starts (the log was trimmed: nothing older is
// left to read).
func (dw *dataWorker) listAgain(key, why string, keepLog bool) error {
	if why != "" {
		dw.log.Info("listing the bucket shard again (full sync)", "bucket_shard", key, "why", why)
	}
	nb := *dw.bounds[key]
	fullStart := ""
	if keepLog {
		fullStart = nb.FullStart // still in its first listing: where that one goes on from
		if nb.Phase == checkpoint.PhaseIncremental {
			fullStart = nb.Marker
			if fullStart == "" {
				fullStart = emptyBILog
			}
		}
	}
	nb.Phase, nb.FullStart, nb.Marker, nb.TrimSafe, nb.UpdatedAt = checkpoint.PhaseBucketFull, fullStart, "", "", time.Now().UTC()
	nb.Resyncs++
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: dw.boundKey(key), Bound: nb}); err != nil {
		return err
	}
	dw.bounds[key] = &nb
	dw.readPos[key] = ""
	if dw.listGen == nil {
		dw.listGen = map[string]int{}
	}
	dw.listGen[key]++
	return nil
}
