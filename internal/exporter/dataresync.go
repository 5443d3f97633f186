package exporter

// The datalog bounds of a destination: recorded at the source's heads on
// first contact (with every bucket index shard queued for a full sync), and
// a re-sync of every bucket shard when a datalog shard was trimmed past a
// bound.

import (
	"context"
	"fmt"
	"time"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// initData records, for a destination without data bounds, every datalog
// shard's head, then (for the full sync) every bucket index shard of every
// bucket, under the datalog shard that logs it, with the bilog marker to
// go on from — read before the shard is listed, so nothing written during
// the listing is missed.
func (e *Exporter) initData(ctx context.Context, d *destination) error {
	k0 := checkpoint.UnitKey(d.name, rgwlog.Unit{Log: rgwlog.LogData})
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
		u := rgwlog.Unit{Log: rgwlog.LogData, Shard: uint32(i)}
		entries = append(entries, checkpoint.Entry{Key: checkpoint.UnitKey(d.name, u), Bound: checkpoint.Bound{Marker: head, Phase: checkpoint.PhaseIncremental, UpdatedAt: now}})
	}
	shards, err := e.allBucketShards(ctx)
	if err != nil {
		return fmt.Errorf("initialise data sync of %s: %w", d.name, err)
	}
	for _, bs := range shards {
		if !e.cfg.Filter.Bucket(bs.Bucket) {
			continue
		}
		entries = append(entries, checkpoint.Entry{Key: e.bucketShardKey(d.name, bs), Bound: checkpoint.Bound{Phase: checkpoint.PhaseBucketFull, UpdatedAt: now}})
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

// listingReuse: how old a bucket listing a re-sync may reuse is.
const listingReuse = time.Minute

// resyncData handles a datalog shard trimmed past its bound: the changes
// it would have named are unknown, so every bucket index shard this datalog
// shard logs is looked at again — the known ones have their bilogs read
// from their own bounds (bilogs were not trimmed by this), the unknown ones
// (buckets created in the lost range) get a full sync — and the datalog
// bound moves to the shard's head. Logged and counted.
func (dw *dataWorker) resyncData(ctx context.Context) error {
	dw.e.cfg.Metrics.resyncs.WithLabelValues(dw.d.name).Inc()
	dw.log.Warn("re-checking every bucket shard this datalog shard logs (datalog trimmed past a bound)")
	// A listing of the buckets begun up to listingReuse before the head
	// is read is shared with the other datalog shards re-syncing now: a
	// bucket created (or resharded) since gets its full sync from the
	// metadata path once zone-b has its entry point (bucketInstanceApplied).
	before := time.Now().Add(-listingReuse)
	head, err := dw.e.dataStartPosition(ctx, dw.shard)
	if err != nil {
		return err
	}
	shards, err := dw.e.bucketShardsSince(ctx, before)
	if err != nil {
		return err
	}
	var keys []string
	now := time.Now().UTC()
	var entries []checkpoint.Entry
	for _, bs := range shards {
		if !dw.e.cfg.Filter.Bucket(bs.Bucket) || rgwobj.DataLogShard(bs.Bucket, bs.Shard, dw.e.dataShards) != dw.shard {
			continue
		}
		if _, ok := dw.bounds[bs.Key]; !ok {
			bd := &checkpoint.Bound{Phase: checkpoint.PhaseBucketFull, UpdatedAt: now}
			dw.bounds[bs.Key] = bd
			dw.readPos[bs.Key] = ""
			entries = append(entries, checkpoint.Entry{Key: dw.e.bucketShardKey(dw.d.name, bs), Bound: *bd})
		}
		keys = append(keys, bs.Key)
	}
	// The bound moves to the head but stays phaseResync until every bucket
	// shard queued here is read and acked (resyncDone): a restart or a
	// lease move before that queues them all again. (Stored as
	// incremental here, the queue, only in memory, was lost.)
	nb := dw.bound
	nb.Marker, nb.TrimSafe, nb.UpdatedAt, nb.Phase = head, "", now, checkpoint.PhaseResync
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
	return dw.sendBatch(ctx, nil, nil, time.Time{}, 0, batchCommit{kind: commitResyncDone})
}

// markDataResync makes every data shard of d re-check its bucket shards:
// durably (each datalog bound's phase), and at once for running workers.
func (e *Exporter) markDataResync(d *destination) error {
	all, err := e.cfg.Store.ListLog(d.name, checkpoint.LogData)
	if err != nil {
		return err
	}
	var entries []checkpoint.Entry
	for _, en := range all {
		en.Bound.Phase = checkpoint.PhaseResync
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
