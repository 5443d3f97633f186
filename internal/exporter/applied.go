package exporter

// Bucket entry points applied on zone-b: their instances are checked, and
// the index shards of a new instance (a new bucket, a reshard) are queued
// for full sync, in per-bucket lanes off the ack path.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

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
		if err := e.relistShards(d, existing); err != nil {
			return fmt.Errorf("store its shards' re-listing: %w", err)
		}
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
