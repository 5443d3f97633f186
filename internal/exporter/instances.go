package exporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

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
	polled byShard[string] // bucket shard keys to poll until their generation closes
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

// relistShards has the bucket shards keys listed again: stored durably
// (relistKey, until their workers have stored the new listings' bounds),
// then handed to their workers.
func (e *Exporter) relistShards(d *destination, keys []checkpoint.Key) error {
	if len(keys) == 0 {
		return nil
	}
	relist := make([]checkpoint.Entry, len(keys))
	for i, k := range keys {
		relist[i] = checkpoint.Entry{Key: relistKey(k), Bound: checkpoint.Bound{UpdatedAt: time.Now().UTC()}}
	}
	if err := e.cfg.Store.Put(relist...); err != nil {
		return err
	}
	d.news.listAgain(keys)
	d.shardsAdded.Add(1)
	return nil
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

// poll hands bucket shards of an older index log generation to their
// workers, to be polled until they close (generations.go).
func (n *shardNews) poll(keys []checkpoint.Key) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		n.polled.push(int(k.Shard), k.Instance)
	}
}

func (n *shardNews) takePolled(shard int) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.polled.take(shard)
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

// takeNews takes the bucket shards handed to this worker: bounds stored
// by others, and shards to list again.
func (dw *dataWorker) takeNews() error {
	if err := dw.takeResyncs(); err != nil {
		return err
	}
	for _, en := range dw.d.news.takeAdded(dw.shard) {
		if _, ok := dw.bounds[en.Key.Instance]; ok {
			continue
		}
		bd := en.Bound
		dw.bounds[en.Key.Instance] = &bd
		dw.readPos[en.Key.Instance] = bd.Marker
	}
	for _, k := range dw.d.news.takePolled(dw.shard) {
		if _, ok := dw.bounds[k]; ok {
			dw.genWait[k] = true
		}
	}
	relist := dw.d.news.takeRelist(dw.shard)
	sort.Strings(relist)
	relist = slices.Compact(relist)
	for _, k := range relist {
		if _, ok := dw.bounds[k]; ok {
			if err := dw.listAgain(k, "asked for again (its bucket instance reached the destination after it was first listed, or a resync)", true); err != nil {
				return err
			}
		} // else dropped meanwhile
		if err := dw.e.cfg.Store.Delete(relistKey(dw.boundKey(k))); err != nil {
			return err
		}
	}
	return nil
}
