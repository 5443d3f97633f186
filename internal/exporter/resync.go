package exporter

// Resync: work an operator asks to be sent again from the source (after a
// verify found differences): a bucket's index shards listed again, or
// single object versions read again, through the usual pipeline. Stored
// before the answer; the data shards' workers take it (takeResyncs).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// ResyncError is the error of the retry item of a version an operator
// asked to be sent again (until it is applied).
const ResyncError = "resync: asked for by an operator"

// resyncKey is where the store keeps the versions asked for in bucket
// shard k until its worker has them in its bound.
func resyncKey(k checkpoint.Key) checkpoint.Key {
	return checkpoint.Key{Destination: k.Destination, Log: checkpoint.LogResync, Shard: k.Shard, Instance: k.Instance}
}

// Resync implements StatusService.Resync.
func (e *Exporter) Resync(ctx context.Context, req *v1.ResyncRequest) (*v1.ResyncResponse, error) {
	if e.cfg.Data == nil && (len(req.GetBuckets()) > 0 || len(req.GetObjects()) > 0) {
		return nil, status.Error(codes.FailedPrecondition, "this exporter does not sync data")
	}
	dest, err := e.waitDestination(req.GetDestination())
	if err != nil {
		return nil, err
	}
	shardsCache := map[string][]rgwlog.BucketShard{}
	followed := func(bucket string) ([]rgwlog.BucketShard, error) {
		if s, ok := shardsCache[bucket]; ok {
			return s, nil
		}
		if !e.cfg.Filter.Bucket(bucket) {
			return nil, status.Errorf(codes.InvalidArgument, "bucket %s is not replicated by this exporter (bucket filter)", bucket)
		}
		shards, err := e.shardsOf(ctx, bucket)
		if errors.Is(err, rgwadmin.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "bucket %s: no such bucket on the source", bucket)
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "bucket %s: read its instance on the source: %v", bucket, err)
		}
		for _, bs := range shards {
			_, ok, err := e.cfg.Store.Get(e.bucketShardKey(dest, bs))
			if err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			if !ok {
				return nil, status.Errorf(codes.FailedPrecondition, "bucket %s: index shard %s is not followed for %s yet "+
					"(its instance has not reached the destination): it will be copied whole when it does", bucket, bs.Key, dest)
			}
		}
		shardsCache[bucket] = shards
		return shards, nil
	}

	resp := &v1.ResyncResponse{}
	var entries []checkpoint.Entry
	var relist []checkpoint.Key
	for _, b := range req.GetBuckets() {
		shards, err := followed(strings.Replace(b, ":", "/", 1))
		if err != nil {
			return nil, err
		}
		for _, bs := range shards {
			k := e.bucketShardKey(dest, bs)
			entries = append(entries, checkpoint.Entry{Key: relistKey(k)})
			relist = append(relist, k)
		}
		resp.BucketShards += uint32(len(shards))
	}
	now := time.Now().UTC()
	asked := map[checkpoint.Key][]checkpoint.Retry{}
	for _, o := range req.GetObjects() {
		if o.GetKey() == "" {
			return nil, status.Error(codes.InvalidArgument, "an object without a key")
		}
		shards, err := followed(strings.Replace(o.GetBucket(), ":", "/", 1))
		if err != nil {
			return nil, err
		}
		bs := shards[0]
		if bs.Shard >= 0 {
			bs = shards[rgwobj.IndexShard(o.GetKey(), len(shards))]
		}
		version := o.GetVersionId()
		if version == "" {
			version = "null"
		}
		k := resyncKey(e.bucketShardKey(dest, bs))
		asked[k] = mergeAsked(asked[k], checkpoint.Retry{Section: "object", Name: o.GetKey(), VersionID: version,
			Error: ResyncError, Timestamp: now, NextAttempt: now})
		resp.Objects++
	}
	for _, m := range req.GetMetadata() {
		k, err := e.mdResyncKey(dest, m.GetSection(), m.GetKey())
		if err != nil {
			return nil, err
		}
		entries = append(entries, checkpoint.Entry{Key: k, Bound: checkpoint.Bound{UpdatedAt: now}})
		resp.Metadata++
	}
	for k, rs := range asked {
		prev, _, err := e.cfg.Store.Get(k)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		for _, r := range rs {
			prev.Retries = mergeAsked(prev.Retries, r)
		}
		prev.UpdatedAt = now
		entries = append(entries, checkpoint.Entry{Key: k, Bound: prev})
	}
	if len(entries) == 0 {
		return resp, nil
	}
	if err := e.cfg.Store.Put(entries...); err != nil {
		return nil, status.Errorf(codes.Internal, "store the resync: %v", err)
	}
	e.mu.Lock()
	d := e.dests[dest]
	e.mu.Unlock()
	if d != nil {
		d.news.listAgain(relist)
		d.shardsAdded.Add(1)
	} // else: taken from the store when its workers start
	dd := e.destination(dest)
	dd.resyncQueued.Add(uint64(resp.Objects) + uint64(resp.Metadata))
	dd.mdResyncAdded.Add(1)
	e.log.Info("resync queued", "destination", dest, "bucket_shards", resp.BucketShards, "objects", resp.Objects,
		"metadata", resp.Metadata)
	return resp, nil
}

// mergeAsked adds r to rs unless the same version is there (then due now).
func mergeAsked(rs []checkpoint.Retry, r checkpoint.Retry) []checkpoint.Retry {
	for i := range rs {
		if rs[i].Name == r.Name && rs[i].VersionID == r.VersionID {
			rs[i].NextAttempt = r.NextAttempt
			return rs
		}
	}
	return append(rs, r)
}

// takeResyncs moves the versions asked for in this worker's bucket shards
// into their bounds' retries (due now), then forgets the request.
func (dw *dataWorker) takeResyncs() error {
	asked, err := dw.e.cfg.Store.ListLogShard(dw.d.name, checkpoint.LogResync, uint32(dw.shard))
	if err != nil {
		return err
	}
	for _, en := range asked {
		bd, ok := dw.bounds[en.Key.Instance]
		if !ok {
			dw.log.Warn("resync of a bucket shard this worker does not follow (its bucket removed since?): dropped",
				"bucket_shard", en.Key.Instance, "objects", len(en.Bound.Retries))
		} else {
			nb := *bd
			nb.Retries = append([]checkpoint.Retry(nil), nb.Retries...)
			for _, r := range en.Bound.Retries {
				nb.Retries = mergeAsked(nb.Retries, r)
			}
			if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: dw.boundKey(en.Key.Instance), Bound: nb}); err != nil {
				return fmt.Errorf("store the resync of %s: %w", en.Key.Instance, err)
			}
			dw.bounds[en.Key.Instance] = &nb
			dw.log.Info("resync: object versions queued", "bucket_shard", en.Key.Instance, "objects", len(en.Bound.Retries))
		}
		if err := dw.e.cfg.Store.Delete(en.Key); err != nil {
			return err
		}
	}
	return nil
}

// mdResyncKey is where the store keeps a metadata key asked to be resynced
// until the worker of its mdlog shard takes it: the shard the source logs
// the key's changes in (FACTS.md section 28), so the key's retry never
// races that shard's own entries for it.
func (e *Exporter) mdResyncKey(dest, section, key string) (checkpoint.Key, error) {
	if key == "" {
		return checkpoint.Key{}, status.Errorf(codes.InvalidArgument, "metadata %q without a key", section)
	}
	if !slices.Contains(e.cfg.Sections, section) {
		return checkpoint.Key{}, status.Errorf(codes.InvalidArgument, "metadata section %q is not replicated by this exporter (sync.sections)", section)
	}
	if !e.cfg.Filter.Metadata(section, key) {
		return checkpoint.Key{}, status.Errorf(codes.InvalidArgument, "%s %s is not replicated by this exporter (bucket filter)", section, key)
	}
	return checkpoint.Key{Destination: dest, Log: checkpoint.LogMDResync,
		Shard: uint32(rgwlog.MDLogShard(section, key, e.mdShards)), Instance: section + ":" + key}, nil
}

// takeMDResyncs moves the metadata keys asked to be resynced for this
// mdlog shard into its bound's retries (due now), durably, then forgets
// them (a crash in between only asks again).
func (w *worker) takeMDResyncs() error {
	n := w.d.mdResyncAdded.Load()
	if n == w.mdResyncSeen {
		return nil
	}
	asked, err := w.e.cfg.Store.ListLogShard(w.d.name, checkpoint.LogMDResync, w.sub.unit.Shard)
	if err != nil {
		return err
	}
	w.mdResyncSeen = n
	if len(asked) == 0 {
		return nil
	}
	now := time.Now().UTC()
	nb := w.bound
	nb.Retries = append([]checkpoint.Retry(nil), nb.Retries...)
	del := make([]checkpoint.Key, 0, len(asked))
	for _, en := range asked {
		section, key, _ := strings.Cut(en.Key.Instance, ":")
		r := checkpoint.Retry{Section: section, Name: key, Error: ResyncError, Timestamp: now, NextAttempt: now}
		found := false
		for i := range nb.Retries {
			if nb.Retries[i].Section == section && nb.Retries[i].Name == key {
				nb.Retries[i].NextAttempt, found = now, true
			}
		}
		if !found {
			nb.Retries = append(nb.Retries, r)
		}
		del = append(del, en.Key)
	}
	if err := w.e.cfg.Store.Put(checkpoint.Entry{Key: w.key, Bound: nb}); err != nil {
		return fmt.Errorf("store the resync of %d metadata key(s): %w", len(asked), err)
	}
	if err := w.e.cfg.Store.Delete(del...); err != nil {
		return err
	}
	w.bound = nb
	w.publish()
	w.log.Info("resync: metadata keys queued", "keys", len(asked))
	return nil
}
