package exporter

// Bucket index shards: their names in the logs, which exist (the current
// instance of every bucket, or one instance), and what the source's
// metadata says of a bucket that a log names (gone, its current instance,
// its owner).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"golang.org/x/sync/errgroup"
)

func (e *Exporter) bucketShardKey(dest string, bs rgwlog.BucketShard) checkpoint.Key {
	return checkpoint.Key{Destination: dest, Log: checkpoint.LogBucketIndex,
		Shard: uint32(rgwobj.DataLogShard(bs.Bucket, bs.Shard, e.dataShards)), Instance: bs.Key}
}

// allBucketShards lists the index shards of every replicated bucket's
// current instance (the bucket filter applied before anything is read of
// a bucket; the buckets read a few at a time).
func (e *Exporter) allBucketShards(ctx context.Context) ([]rgwlog.BucketShard, error) {
	var names []string
	marker := ""
	for {
		page, err := e.cfg.Source.ListMetadataKeys(ctx, rgwlog.SectionBucket, marker, 1000)
		if err != nil {
			return nil, fmt.Errorf("list buckets: %w", err)
		}
		for _, name := range page.Keys {
			if e.cfg.Filter.Bucket(name) {
				names = append(names, name)
			}
		}
		if !page.Truncated || page.Marker == "" {
			break
		}
		marker = page.Marker
	}
	per := make([][]rgwlog.BucketShard, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, e.cfg.FetchConcurrency))
	for i, name := range names {
		g.Go(func() error {
			shards, err := e.shardsOf(gctx, name)
			if errors.Is(err, rgwadmin.ErrNotFound) {
				return nil // removed meanwhile
			}
			per[i] = shards
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []rgwlog.BucketShard
	for _, s := range per {
		out = append(out, s...)
	}
	return out, nil
}

// bucketListing is one run of allBucketShards shared by the datalog
// shards that need it (resyncData): when a trim hits every datalog shard
// at once, the buckets are read once, not once per shard.
type bucketListing struct {
	started time.Time
	done    chan struct{}
	shards  []rgwlog.BucketShard
	err     error
}

// bucketShardsSince is allBucketShards from a listing that began at or
// after notBefore: one under way is joined, a newer one started otherwise.
func (e *Exporter) bucketShardsSince(ctx context.Context, notBefore time.Time) ([]rgwlog.BucketShard, error) {
	e.listingMu.Lock()
	l := e.listing
	if l == nil || l.started.Before(notBefore) || (isClosed(l.done) && l.err != nil) {
		l = &bucketListing{started: time.Now(), done: make(chan struct{})}
		e.listing = l
		e.listingMu.Unlock()
		l.shards, l.err = e.allBucketShards(ctx)
		close(l.done)
		return l.shards, l.err
	}
	e.listingMu.Unlock()
	select {
	case <-l.done:
		return l.shards, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// shardsOf reads a bucket's current instance and its number of index shards.
func (e *Exporter) shardsOf(ctx context.Context, bucket string) ([]rgwlog.BucketShard, error) {
	id, err := e.currentInstance(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return e.instanceShards(ctx, bucket, id, -1)
}

// instanceShards are the index shards of bucket's instance id, numShards
// of them (read from the source's instance when negative).
func (e *Exporter) instanceShards(ctx context.Context, bucket, id string, numShards int) ([]rgwlog.BucketShard, error) {
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
	// The current index log generation (Reef and later reshard in place:
	// FACTS.md section 32; always 0 on Pacific).
	bs := rgwlog.BucketShard{Key: inst, Bucket: bucket, Instance: id, Shard: -1}
	latest, _, err := e.generations(ctx, bs, false)
	if err != nil {
		return nil, err
	}
	return genShards(bs, latest, n), nil
}

// bucketGone says whether the bucket of a bucket shard no longer exists at
// the source (its entry point is gone, or points at another instance: the
// bucket was removed, maybe created again).
func (e *Exporter) bucketGone(ctx context.Context, key string) (bool, error) {
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return false, err
	}
	id, err := e.currentInstance(ctx, bs.Bucket)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return id != bs.Instance, nil
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

// bucketOwner is the owner of a bucket (for rgwx-uid of deletes). It is
// read from the shard's instance; when the source no longer has that
// instance (a reshard removes the old one: FACTS.md section 10) from the
// bucket's current one — the owner is the bucket's. Before, every op of
// the old instance's bilog tail failed its source read for good (a chaos
// run: 1,401 failed reads of one bucket, "bucket.instance … 404").
func (e *Exporter) bucketOwner(ctx context.Context, bs rgwlog.BucketShard) (string, error) {
	b, err := e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucketInstance, bs.InstanceKey())
	if errors.Is(err, rgwadmin.ErrNotFound) {
		if id, cerr := e.currentInstance(ctx, bs.Bucket); cerr == nil && id != "" && id != bs.Instance {
			b, err = e.cfg.Source.GetMetadata(ctx, rgwlog.SectionBucketInstance, bs.Bucket+":"+id)
		}
	}
	if err != nil {
		return "", fmt.Errorf("owner of bucket %s: %w", bs.Bucket, err)
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
		return "", fmt.Errorf("owner of bucket %s: %w", bs.Bucket, err)
	}
	owner := v.Data.BucketInfo.Owner
	if t := v.Data.BucketInfo.Bucket.Tenant; t != "" && !strings.Contains(owner, "$") {
		owner = t + "$" + owner
	}
	return owner, nil
}
