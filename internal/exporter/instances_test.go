package exporter

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// slowListing answers every listing empty, after delay.
type slowListing struct {
	*fakeObjects
	delay  time.Duration
	listed atomic.Int32
}

func (f *slowListing) ListShard(ctx context.Context, _ string, _, _ string, _ int) (rgwobj.ListPage, error) {
	f.listed.Add(1)
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return rgwobj.ListPage{}, ctx.Err()
	}
	return rgwobj.ListPage{}, nil
}

// The new buckets a metadata batch wrote are checked (their instance
// listed, their index shards queued for the data sync) off the metadata
// shard's path: the shard's next batch does not wait for the source's
// answers about the last one's buckets. Before, each bucket of an acked
// batch was checked in turn by the shard's own worker (three source
// requests each), and at 10,000 buckets — which the gateway logs in a few
// of its 64 mdlog shards — the metadata sync ran at 0.55 of its rate at
// 1,000 (issue #15). The instance blob the batch carried is not read from
// the source again.
func TestBucketChecksDoNotHoldTheMetadataShard(t *testing.T) {
	src, data := oneBucketSource()
	objs := &slowListing{fakeObjects: &fakeObjects{}, delay: 400 * time.Millisecond}
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
		c.BatchEntries = 4 // two buckets (instance, entry point) a batch
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: v1.LogType_LOG_TYPE_DATA})
	untilIncremental(r, a, b1Key)

	const buckets = 8
	src.mu.Lock()
	for i := range buckets {
		name, id := fmt.Sprintf("n%d", i), fmt.Sprintf("i%d", i)
		src.blobs["bucket.instance:"+name+":"+id] = `{"data":{"bucket_info":{"num_shards":2,"owner":"alice","bucket":{"tenant":""}}}}`
		src.blobs["bucket:"+name] = fmt.Sprintf(`{"data":{"bucket":{"bucket_id":%q}}}`, id)
		src.n++
		src.log(0, rgwlog.SectionBucketInstance, name+":"+id)
		src.n++
		src.log(0, rgwlog.SectionBucket, name)
	}
	src.mu.Unlock()
	objs.listed.Store(0)
	a.subscribe(mdUnit(0))

	// Every batch of the shard is acked as it comes.
	start := time.Now()
	seen := 0
	for seen < 2*buckets {
		b := a.next()
		if b.GetShard().GetLogType() != v1.LogType_LOG_TYPE_METADATA {
			a.ack(b)
			continue
		}
		seen += len(b.GetEntries())
		a.ack(b)
	}
	took := time.Since(start)
	require.Less(t, took, objs.delay,
		"the shard's batches waited for the checks of the buckets acked before them (%s; each check lists for %s)", took, objs.delay)

	// The checks still happen: every shard of every new bucket is queued.
	require.Eventually(t, func() bool {
		for i := range buckets {
			for s := range 2 {
				k := checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex,
					Instance: fmt.Sprintf("n%d:i%d:%d", i, i, s)}
				if _, ok, err := r.store.Get(k); err != nil || !ok {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the index shards of the new buckets are queued")
	require.Equal(t, int32(buckets), objs.listed.Load(), "each new instance is listed whole once")
	src.mu.Lock()
	defer src.mu.Unlock()
	for i := range buckets {
		require.Equal(t, 1, src.gets[fmt.Sprintf("bucket.instance:n%d:i%d", i, i)],
			"the instance blob the batch carried is read from the source only for the batch")
	}
}
