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
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
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

// nextMetadata returns a's next metadata batch, acking the others.
func nextMetadata(a *applierStream) *v1.Batch {
	for {
		b := a.next()
		if b.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA {
			return b
		}
		a.ack(b)
	}
}

// The check of a bucket whose entry point zone-b took survives a restart
// of the exporter: it is stored with the metadata bound that acks the
// entry point, and done by the next run. Before, it was done (or lost)
// in memory right after the ack: a reshard's new instance with no write
// after it would then never have its shards listed (issue #11, hole 6).
func TestInstanceChecksSurviveARestart(t *testing.T) {
	src, data := oneBucketSource()
	path := filepath.Join(t.TempDir(), "b.db")
	opts := func(c *Config) { c.Data, c.Objects = data, listedObjects{&fakeObjects{}} }
	r := newRig(t, src, path, opts)
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	untilIncremental(r, a, b1Key)

	src.mu.Lock()
	src.blobs["bucket.instance:n0:i0"] = `{"data":{"bucket_info":{"num_shards":2,"owner":"alice","bucket":{"tenant":""}}}}`
	src.blobs["bucket:n0"] = `{"data":{"bucket":{"bucket_id":"i0"}}}`
	src.n++
	src.log(0, rgwlog.SectionBucketInstance, "n0:i0")
	src.n++
	src.log(0, rgwlog.SectionBucket, "n0")
	src.mu.Unlock()
	a.subscribe(mdUnit(0))
	b := nextMetadata(a)
	require.Contains(t, names(b), "bucket:n0:put")
	// zone-a fails for the bucket from now on: its check fails.
	src.mu.Lock()
	src.failGets["bucket:n0"] = true
	src.mu.Unlock()
	a.ack(b)
	check := checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogInstanceCheck, Instance: "n0"}
	require.Eventually(t, func() bool {
		_, ok, err := r.store.Get(check)
		return err == nil && ok
	}, 5*time.Second, 10*time.Millisecond, "the check is kept in the store")
	time.Sleep(100 * time.Millisecond) // the lane tried, and failed
	a.cancel()
	r.close()

	shard := func(st *checkpoint.Store, i int) bool {
		_, ok, err := st.Get(checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: fmt.Sprintf("n0:i0:%d", i)})
		require.NoError(t, err)
		return ok
	}
	st, err := checkpoint.Open(path)
	require.NoError(t, err)
	require.False(t, shard(st, 0), "no shard queued by the failed check")
	require.NoError(t, st.Close())

	src.mu.Lock()
	delete(src.failGets, "bucket:n0")
	src.mu.Unlock()
	r2 := newRig(t, src, path, opts)
	require.Eventually(t, func() bool {
		_, pending, err := r2.store.Get(check)
		return err == nil && !pending && shard(r2.store, 0) && shard(r2.store, 1)
	}, 5*time.Second, 10*time.Millisecond, "the next run checks the bucket: its shards are queued")
}

// A bucket instance the data sync met before zone-b had its entry point
// is listed again once the entry point is applied — also when the exporter
// restarted in between, and when it restarts before the data worker took
// the re-listing: the meeting and the re-listing are kept in the store
// (issue #11: the re-listing after a reshard was in memory only).
func TestRelistingSurvivesARestart(t *testing.T) {
	src, data := oneBucketSource()
	path := filepath.Join(t.TempDir(), "b.db")
	opts := func(c *Config) { c.Data, c.Objects = data, listedObjects{&fakeObjects{}} }
	r := newRig(t, src, path, opts)
	dataUnit := rgwlog.Unit{Log: rgwlog.LogData}
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(dataUnit)
	untilIncremental(r, a, b1Key)
	a.cancel()

	// An earlier run met b1's instance before zone-b had its entry point.
	d := r.exp.destination("zone-b")
	met := metKey(d, "b1:inst1")
	require.NoError(t, r.store.Put(checkpoint.Entry{Key: met, Bound: checkpoint.Bound{UpdatedAt: time.Now()}}))
	require.NoError(t, r.exp.bucketInstanceApplied(context.Background(), d, appliedBucket{name: "b1", numShards: -1}))
	relist := relistKey(b1Key)
	_, ok, err := r.store.Get(relist)
	require.NoError(t, err)
	require.True(t, ok, "the re-listing is kept in the store")
	_, ok, err = r.store.Get(met)
	require.NoError(t, err)
	require.False(t, ok, "the meeting is forgotten once the re-listing is kept")
	r.close() // before any data worker took it

	r2 := newRig(t, src, path, opts)
	a2 := r2.dial(t, "a2")
	a2.subscribe(dataUnit)
	relisted := func() bool {
		bd, ok, err := r2.store.Get(b1Key)
		_, pending, err2 := r2.store.Get(relist)
		return err == nil && err2 == nil && ok && bd.Resyncs == 1 && !pending
	}
	require.Eventually(t, relisted, 5*time.Second, 10*time.Millisecond, "b1's shard is listed again after the restart")
	a2.cancel()
}

// A check stored again by a later batch, while the lane worked the
// earlier one, is kept for the lane's next turn: the earlier check's end
// must not delete it (a restart in between would lose the later one).
func TestLaterCheckIsKept(t *testing.T) {
	src, data := oneBucketSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.Data, c.Objects = data, listedObjects{&fakeObjects{}}
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	untilIncremental(r, a, b1Key)
	d := r.exp.destination("zone-b")
	t1 := time.Now().UTC()
	t2 := t1.Add(time.Millisecond)
	require.NoError(t, r.store.Put(checkpoint.Entry{Key: checkKey(d, "b1"), Bound: checkpoint.Bound{UpdatedAt: t2}}))
	r.exp.bucketsApplied(d, []appliedBucket{{name: "b1", numShards: -1}}, t1)
	pending := func() bool {
		_, ok, err := r.store.Get(checkKey(d, "b1"))
		require.NoError(t, err)
		return ok
	}
	time.Sleep(200 * time.Millisecond)
	require.True(t, pending(), "the later check is kept")
	r.exp.bucketsApplied(d, []appliedBucket{{name: "b1", numShards: -1}}, t2)
	require.Eventually(t, func() bool { return !pending() }, 5*time.Second, 10*time.Millisecond, "done, it is removed")
	a.cancel()
}

// The owner of a bucket whose shard's instance the source removed (a
// reshard's old instance) is read from its current instance: before,
// every op of the old instance's bilog tail failed its source read for
// good (chaos seed 4, CHAOS_EXTENDED: 1,401 failed reads of one bucket).
func TestOwnerOfAReshardedBucket(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket:b1"] = `{"data":{"bucket":{"bucket_id":"inst2"}}}`
	src.blobs["bucket.instance:b1:inst2"] = `{"data":{"bucket_info":{"num_shards":3,"owner":"alice","bucket":{"tenant":"acme"}}}}`
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	owner, err := r.exp.bucketOwner(context.Background(), rgwlog.BucketShard{Key: "b1:inst1:0", Bucket: "b1", Instance: "inst1", Shard: 0})
	require.NoError(t, err)
	require.Equal(t, "acme$alice", owner)
	delete(src.blobs, "bucket:b1") // the bucket itself gone: still an error, not a guess
	_, err = r.exp.bucketOwner(context.Background(), rgwlog.BucketShard{Key: "b1:inst1:0", Bucket: "b1", Instance: "inst1", Shard: 0})
	require.Error(t, err)
}
