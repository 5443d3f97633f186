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

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

func (e *Exporter) bucketShardKey(dest string, bs rgwlog.BucketShard) checkpoint.Key {
	return checkpoint.Key{Destination: dest, Log: checkpoint.LogBucketIndex,
		Shard: uint32(rgwobj.DataLogShard(bs.Bucket, bs.Shard, e.dataShards)), Instance: bs.Key}
}

// allBucketShards lists the index shards of every bucket's current instance.
func (e *Exporter) allBucketShards(ctx context.Context) ([]rgwlog.BucketShard, error) {
	var out []rgwlog.BucketShard
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
	if n <= 0 {
		return []rgwlog.BucketShard{{Key: inst, Bucket: bucket, Instance: id, Shard: -1}}, nil
	}
	out := make([]rgwlog.BucketShard, n)
	for i := range n {
		out[i] = rgwlog.BucketShard{Key: fmt.Sprintf("%s:%d", inst, i), Bucket: bucket, Instance: id, Shard: i}
	}
	return out, nil
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
