package exporter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/filter"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// fakeData is a source with one datalog shard and unsharded buckets.
type fakeData struct {
	mu      sync.Mutex
	datalog []rgwadmin.DataLogEntry
	bilogs  map[string][]rgwadmin.BILogEntry // bucket instance -> entries
	trims   []string                         // "instance@end-marker" of each TrimBILog
	// The index log generations (Reef and later; none: Pacific's one).
	latestGen uint64
	gens      []rgwadmin.BILogGeneration
}

func (f *fakeData) DataLogInfo(context.Context) (rgwadmin.LogInfo, error) {
	return rgwadmin.LogInfo{NumShards: 1}, nil
}

func (f *fakeData) DataLogShardInfo(context.Context, int) (rgwadmin.ShardInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.datalog) == 0 {
		return rgwadmin.ShardInfo{}, nil
	}
	return rgwadmin.ShardInfo{Marker: f.datalog[len(f.datalog)-1].LogID}, nil
}

func (f *fakeData) ListDataLog(_ context.Context, _ int, marker string, max int) (rgwadmin.DataLogPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p rgwadmin.DataLogPage
	for _, e := range f.datalog {
		if e.LogID > marker && len(p.Entries) < max {
			p.Entries = append(p.Entries, e)
			p.Marker = e.LogID
		}
	}
	return p, nil
}

func (f *fakeData) TrimDataLog(_ context.Context, _ int, marker string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var kept []rgwadmin.DataLogEntry
	for _, e := range f.datalog {
		if e.LogID > marker {
			kept = append(kept, e)
		}
	}
	f.datalog = kept
	return nil
}

func (f *fakeData) TrimBILog(_ context.Context, inst, endMarker string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The gateway's rule: entries whose marker sorts after endMarker stay
	// (FACTS.md section 21; markers without the "<shard>#" prefix here).
	var kept []rgwadmin.BILogEntry
	for _, e := range f.bilogs[inst] {
		if e.OpID > endMarker {
			kept = append(kept, e)
		}
	}
	f.bilogs[inst] = kept
	f.trims = append(f.trims, inst+"@"+endMarker)
	return nil
}

func (f *fakeData) BILogInfo(_ context.Context, inst string) (rgwadmin.BILogInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := rgwadmin.BILogInfo{LatestGen: f.latestGen, Generations: f.gens, HasGenerations: len(f.gens) > 0}
	if bs, err := rgwlog.ParseBucketShard(inst); err == nil {
		// As Reef and later answer: the current generation's shard,
		// whatever generation is asked (FACTS.md section 32).
		inst = rgwlog.BucketShardKey(bs.LogKey(), f.latestGen)
	}
	if es := f.bilogs[inst]; len(es) > 0 {
		info.MaxMarker = es[len(es)-1].OpID
	}
	return info, nil
}

func (f *fakeData) ListBILog(_ context.Context, inst, marker string, max int) ([]rgwadmin.BILogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []rgwadmin.BILogEntry
	for _, e := range f.bilogs[inst] {
		if e.OpID > marker && len(out) < max {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeData) write(inst, key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bilogs[inst] = append(f.bilogs[inst], rgwadmin.BILogEntry{OpID: fmt.Sprintf("%011d.1.%d", n, n), IndexVer: uint64(n), Op: "write",
		Object: key, Instance: "null", State: "complete", Timestamp: time.Unix(1795609530+int64(n), 0)})
}

// listedObjects: fakeObjects whose shard listings are empty.
type listedObjects struct{ *fakeObjects }

func (listedObjects) ListShard(context.Context, string, string, string, int) (rgwobj.ListPage, error) {
	return rgwobj.ListPage{}, nil
}

// A datalog shard trimmed past its bound re-checks every bucket shard it
// logs. That queue must survive a restart (issue #11, hole 5): before, the
// datalog bound was stored at the head, as incremental, before the queued
// bucket shards were read, so a subscription ended meanwhile lost them,
// and a change logged only in the trimmed range never reached zone-b.
func TestDataResyncSurvivesARestart(t *testing.T) {
	src, data := oneBucketSource()
	objs := listedObjects{&fakeObjects{versions: map[string]rgwobj.ListEntry{
		"obj\x00null": {Key: "obj", VersionID: "null", Owner: "alice"}}}}
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
	})
	dataUnit := rgwlog.Unit{Log: rgwlog.LogData}
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(dataUnit)
	// b1's full sync: empty, then incremental from its (empty) bilog.
	untilIncremental(r, a, b1Key)

	// obj is written; its datalog entry is trimmed by someone else before
	// rgwsync read it, and another one follows.
	data.write("b1:inst1", "obj", 1)
	data.mu.Lock()
	data.datalog = []rgwadmin.DataLogEntry{{EntityType: "bucket", Key: "other:inst9", LogID: "1_0003"}}
	data.mu.Unlock()

	// The re-check reads b1's bilog and sends obj; the applier dies before
	// its ack.
	for b := a.next(); ; b = a.next() {
		if len(b.GetObjects()) > 0 {
			require.Equal(t, "obj", b.GetObjects()[0].GetKey())
			break
		}
		a.ack(b)
	}
	a.cancel()

	a2 := r.dial(t, "a2")
	a2.subscribe(dataUnit)
	got := objectKeys(a2, false)
	select {
	case k := <-got:
		require.Equal(t, "obj", k)
	case <-time.After(5 * time.Second):
		bd, _, _ := r.store.Get(checkpoint.UnitKey("zone-b", dataUnit))
		t.Fatalf("after the restart obj was never sent again: the re-check was lost (datalog bound %+v)", bd)
	}
	a2.cancel()
}

// flakyListing answers the full-sync listing 404 while notFound is set
// (as the gateway did for a tenant's bucket addressed the wrong way), then
// lists the objects it has.
type flakyListing struct {
	*fakeObjects
	notFound atomic.Bool
	listed   atomic.Int32
}

func (f *flakyListing) ListShard(context.Context, string, string, string, int) (rgwobj.ListPage, error) {
	f.listed.Add(1)
	if f.notFound.Load() {
		return rgwobj.ListPage{}, fmt.Errorf("list: %w", rgwobj.ErrNotFound)
	}
	var p rgwobj.ListPage
	for _, le := range f.versions {
		p.Entries = append(p.Entries, le)
	}
	return p, nil
}

// A full-sync listing that answers 404 while the source's metadata still
// has the bucket instance is an error, retried: the shard is not marked
// listed and empty (issue #11, hole 1: every object of tenants' buckets
// written before the full sync was lost that way).
func TestFullListingNotFoundIsNotGone(t *testing.T) {
	src, data := oneBucketSource()
	objs := &flakyListing{fakeObjects: &fakeObjects{versions: map[string]rgwobj.ListEntry{
		"obj\x00null": {Key: "obj", VersionID: "null", Owner: "alice"}}}}
	objs.notFound.Store(true)
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	got := objectKeys(a, false)
	require.Eventually(t, func() bool { return objs.listed.Load() >= 2 }, 10*time.Second, 10*time.Millisecond,
		"the listing that failed was not tried again")
	objs.notFound.Store(false)
	select {
	case k := <-got:
		require.Equal(t, "obj", k)
	case <-time.After(10 * time.Second):
		bd, _, _ := r.store.Get(checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: "b1:inst1"})
		t.Fatalf("obj never sent: the 404 listing was taken as an empty bucket (bucket shard bound %+v)", bd)
	}
	a.cancel()
}

// A bucket-index log trimmed past the bound (issue #11, hole 7): entries
// after the bound were removed before rgwsync read them. index_ver, one
// by one per shard, shows the gap; the shard is listed again (full sync)
// and the object written in the trimmed range arrives. Before, the gap went
// unnoticed and that object never reached zone-b.
func TestBILogTrimmedPastTheBoundIsListedAgain(t *testing.T) {
	r, a, data, objs := obj1Acked(t)
	seen := map[string]bool{"obj1": true}

	// obj2 and obj3 are written; someone trims the bilog through obj2.
	objs.versions["obj2\x00null"] = rgwobj.ListEntry{Key: "obj2", VersionID: "null", Owner: "alice"}
	objs.versions["obj3\x00null"] = rgwobj.ListEntry{Key: "obj3", VersionID: "null", Owner: "alice"}
	data.write("b1:inst1", "obj2", 2)
	data.write("b1:inst1", "obj3", 3)
	data.mu.Lock()
	data.bilogs["b1:inst1"] = data.bilogs["b1:inst1"][2:]
	data.datalog = append(data.datalog, rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0003"})
	data.mu.Unlock()

	got := objectKeys(a, true)
	timeout := time.After(10 * time.Second)
	for !seen["obj2"] {
		select {
		case k := <-got:
			seen[k] = true
		case <-timeout:
			t.Fatalf("obj2, logged only in the trimmed range, was never sent (sent: %v)", seen)
		}
	}
	bd, _, err := r.store.Get(b1Key)
	require.NoError(t, err)
	require.Equal(t, 1, int(bd.Resyncs), "the re-listing is counted in the bound")
	a.cancel()
}

// A gap in a bucket-index log's numbering is not a trim: the gateway writes
// the index header (index_ver + 1) for ops it does not log, e.g. racing null
// writes and deletes of a key in a suspended bucket (FACTS.md section 31).
// make chaos seed 2 (v/k00158): entry 4 was never logged, the shard was
// taken as trimmed and listed again, and the removal logged after the gap
// was never sent (a listing copies what exists, it replays no delete). The
// bound's own entry is still there, so nothing after it was trimmed: the
// entries after the gap are sent as they are.
func TestBILogNumberingGapIsNotATrim(t *testing.T) {
	r, a, data, objs := obj1Acked(t)

	// obj1 is deleted; index_ver 2 was used by an op the gateway did not log.
	delete(objs.versions, "obj1\x00null")
	data.mu.Lock()
	data.bilogs["b1:inst1"] = append(data.bilogs["b1:inst1"], rgwadmin.BILogEntry{OpID: "00000000003.1.3", IndexVer: 3,
		Op: "del", Object: "obj1", Instance: "null", State: "complete", Timestamp: time.Unix(1795609533, 0)})
	data.datalog = append(data.datalog, rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0003"})
	data.mu.Unlock()

	ops := make(chan *v1.ObjectOp, 16)
	go eachBatch(a, func(b *v1.Batch) bool {
		for _, op := range b.GetObjects() {
			ops <- op
		}
		return true
	})
	timeout := time.After(10 * time.Second)
	for deleted := false; !deleted; {
		select {
		case op := <-ops:
			k := op.GetKind()
			deleted = op.GetKey() == "obj1" &&
				(k == v1.ObjectOpKind_OBJECT_OP_KIND_DELETE || k == v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION)
		case <-timeout:
			bd, _, _ := r.store.Get(b1Key)
			t.Fatalf("the delete of obj1, logged after a gap in the numbering, was never sent (bound %+v)", bd)
		}
	}
	bd, _, err := r.store.Get(b1Key)
	require.NoError(t, err)
	require.Zero(t, bd.Resyncs, "a gap in the numbering is not a trim: the shard is not listed again")
	a.cancel()
}

// incrementalB1 is a rig whose bucket b1 (oneBucketSource) is listed and
// in incremental sync, with applier a1 subscribed to the data log.
func incrementalB1(t *testing.T) (*rig, *applierStream, *fakeData, *flakyListing) {
	src, data := oneBucketSource()
	objs := &flakyListing{fakeObjects: &fakeObjects{versions: map[string]rgwobj.ListEntry{}}}
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	untilIncremental(r, a, b1Key)
	return r, a, data, objs
}

// obj1Acked is incrementalB1 after obj1 was written (bilog entry 1), sent
// by the bilog and acked: b1's bound is at its entry.
func obj1Acked(t *testing.T) (*rig, *applierStream, *fakeData, *flakyListing) {
	r, a, data, objs := incrementalB1(t)
	objs.versions["obj1\x00null"] = rgwobj.ListEntry{Key: "obj1", VersionID: "null", Owner: "alice"}
	data.write("b1:inst1", "obj1", 1)
	data.mu.Lock()
	data.datalog = append(data.datalog, rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0002"})
	data.mu.Unlock()
	for sent := false; !sent; {
		b := a.next()
		for _, op := range b.GetObjects() {
			sent = sent || op.GetKey() == "obj1"
		}
		a.ack(b)
	}
	require.Eventually(t, func() bool {
		bd, _, _ := r.store.Get(b1Key)
		return bd.Marker == "00000000001.1.1"
	}, 5*time.Second, 10*time.Millisecond)
	return r, a, data, objs
}

// oneBucketSource is a source with bucket b1 (instance inst1, one
// unsharded index owned by alice) and a datalog entry naming it.
func oneBucketSource() (*fakeSource, *fakeData) {
	src := newFakeSource()
	src.blobs["bucket:b1"] = `{"data":{"bucket":{"bucket_id":"inst1"}}}`
	src.blobs["bucket.instance:b1:inst1"] = `{"data":{"bucket_info":{"num_shards":0,"owner":"alice","bucket":{"tenant":""}}}}`
	return src, &fakeData{bilogs: map[string][]rgwadmin.BILogEntry{},
		datalog: []rgwadmin.DataLogEntry{{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0001"}}}
}

// objectKeys acks every batch a receives and reports the keys of its
// object ops (unacked, and then no more, the batch with the first one
// unless all).
func objectKeys(a *applierStream, all bool) <-chan string {
	got := make(chan string, 64)
	go eachBatch(a, func(b *v1.Batch) bool {
		for _, op := range b.GetObjects() {
			got <- op.GetKey()
		}
		return all || len(b.GetObjects()) == 0
	})
	return got
}

// eachBatch hands every batch a receives to f, and acks it while f says
// so; it stops at the first batch f does not ack, or when the stream ends.
func eachBatch(a *applierStream, f func(b *v1.Batch) (ack bool)) {
	for {
		m, err := a.s.Recv()
		if err != nil {
			return
		}
		b := m.GetBatch()
		if b == nil {
			continue
		}
		if !f(b) {
			return
		}
		_ = a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Ack{Ack: &v1.Ack{
			Shard: b.GetShard(), Seq: b.GetSeq(), ThroughMarker: b.GetThroughMarker(), Generation: b.GetGeneration()}}})
	}
}

// b1Key is the store key of b1's bucket shard bound.
var b1Key = checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Shard: 0, Instance: "b1:inst1"}

// untilIncremental acks a's batches until the bucket shard bound k is
// incremental (its full sync acked and stored).
func untilIncremental(r *rig, a *applierStream, k checkpoint.Key) {
	inc := func() bool {
		bd, ok, err := r.store.Get(k)
		return err == nil && ok && bd.Phase == checkpoint.PhaseIncremental
	}
	for !inc() {
		a.ack(a.next())
		// The ack is committed after it is received: give it a moment.
		for i := 0; i < 50 && !inc(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// countedListing lists the instance whole for bucketInstanceApplied: empty,
// or with one object, and counts the listings by key.
type countedListing struct {
	*fakeObjects
	mu     sync.Mutex
	listed map[string]int
	full   bool
}

func (f *countedListing) ListShard(_ context.Context, key string, _, _ string, _ int) (rgwobj.ListPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed[key]++
	if f.full {
		return rgwobj.ListPage{Entries: []rgwobj.ListEntry{{Key: "obj", VersionID: "null", Owner: "alice"}}}, nil
	}
	return rgwobj.ListPage{}, nil
}

// A new bucket whose entry point reached zone-b: its index is listed whole
// once, and when it is empty its shards follow their bilogs from the first
// entry, with no listing and no bilog info per shard. Before, each of its
// shards was listed (11 by default, two requests each): the metadata sync
// of 1,000 new buckets ran 5 times slower (BENCHMARKS.md). An instance
// with objects (a reshard's new instance) is still listed shard by shard.
func TestEmptyNewBucketFollowsItsBILogsFromTheStart(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(map[bool]string{false: "empty", true: "with objects"}[full], func(t *testing.T) {
			src, data := oneBucketSource()
			objs := &countedListing{fakeObjects: &fakeObjects{}, listed: map[string]int{}}
			r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
				c.Data, c.Objects = data, objs
			})
			a := r.dial(t, "a1")
			a.fullSync(t, r)
			a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
			untilIncremental(r, a, b1Key)

			src.mu.Lock()
			src.blobs["bucket:b2"] = `{"data":{"bucket":{"bucket_id":"inst2"}}}`
			src.blobs["bucket.instance:b2:inst2"] = `{"data":{"bucket_info":{"num_shards":3,"owner":"alice","bucket":{"tenant":""}}}}`
			src.mu.Unlock()
			objs.mu.Lock()
			objs.full = full
			clear(objs.listed)
			objs.mu.Unlock()
			r.exp.bucketInstanceApplied(context.Background(), r.exp.destination("zone-b"), appliedBucket{name: "b2", numShards: -1})

			for i := range 3 {
				k := checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: fmt.Sprintf("b2:inst2:%d", i)}
				bd, ok, err := r.store.Get(k)
				require.NoError(t, err)
				require.True(t, ok, "shard %d of the new bucket not queued", i)
				if !full {
					require.Equal(t, checkpoint.PhaseIncremental, bd.Phase, "shard %d of an empty instance: followed from its bilog's start", i)
					require.Empty(t, bd.Marker)
				} else {
					require.Equal(t, checkpoint.PhaseBucketFull, bd.Phase, "shard %d of an instance with objects: listed", i)
				}
			}
			objs.mu.Lock()
			require.Equal(t, 1, objs.listed["b2:inst2"], "the instance is listed whole once")
			objs.mu.Unlock()
			if !full {
				// No shard is listed afterwards: their bilogs are read only
				// when the datalog names them.
				time.Sleep(200 * time.Millisecond)
				objs.mu.Lock()
				defer objs.mu.Unlock()
				for i := range 3 {
					require.Zero(t, objs.listed[fmt.Sprintf("b2:inst2:%d", i)], "shard %d listed", i)
				}
			}
			a.cancel()
		})
	}
}

// A trim that hits every datalog shard at once re-syncs them all: the
// buckets are read once for all of them, not once per shard (a lab that
// held 1,946 buckets made 128 shards read ~3,900 metadata entries each,
// and TestDataLogTrimmedIsResynced timed out), and only the replicated
// buckets are read at all.
func TestBucketListingIsShared(t *testing.T) {
	src := &countingSource{buckets: 50}
	f, err := filter.New([]string{"keep-*"}, nil)
	require.NoError(t, err)
	e := &Exporter{cfg: Config{Source: src, Filter: f, FetchConcurrency: 4}}
	before := time.Now()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			shards, err := e.bucketShardsSince(context.Background(), before.Add(-listingReuse))
			require.NoError(t, err)
			require.Len(t, shards, 25*11, "the kept buckets' eleven shards each (the recorded instance)")
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, src.lists.Load(), "one listing for all")
	require.EqualValues(t, 25*2, src.gets.Load(), "entry point and instance of the kept buckets only")
	_, err = e.bucketShardsSince(context.Background(), time.Now().Add(time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 2, src.lists.Load(), "a listing older than asked for is not reused")
}

// countingSource answers bucket listings and metadata reads from blobs
// recorded on the lab (one bucket's entry point and instance, served for
// every name), counting the requests. Half its buckets are named keep-*.
type countingSource struct {
	buckets   int
	lists     atomic.Int32
	gets      atomic.Int32
	ep, inst  []byte
	loadBlobs sync.Once
	loadErr   error
}

func (c *countingSource) blobs() error {
	c.loadBlobs.Do(func() {
		if c.ep, c.loadErr = os.ReadFile("../rgwlog/testdata/bucket-entrypoint-versioned.json"); c.loadErr != nil {
			return
		}
		c.inst, c.loadErr = os.ReadFile("../rgwlog/testdata/bucket-instance-enabled.json")
	})
	return c.loadErr
}

func (c *countingSource) ListMetadataKeys(_ context.Context, section, _ string, _ int) (rgwadmin.KeyPage, error) {
	c.lists.Add(1)
	time.Sleep(50 * time.Millisecond) // long enough for the others to join
	var keys []string
	for i := range c.buckets {
		if i%2 == 0 {
			keys = append(keys, fmt.Sprintf("keep-%02d", i))
		} else {
			keys = append(keys, fmt.Sprintf("other-%02d", i))
		}
	}
	return rgwadmin.KeyPage{Keys: keys}, nil
}

func (c *countingSource) GetMetadata(_ context.Context, section, _ string) ([]byte, error) {
	c.gets.Add(1)
	if err := c.blobs(); err != nil {
		return nil, err
	}
	if section == rgwlog.SectionBucket {
		return c.ep, nil
	}
	return c.inst, nil
}

func (c *countingSource) MDLogInfo(context.Context) (rgwadmin.LogInfo, error) {
	return rgwadmin.LogInfo{}, nil
}
func (c *countingSource) MDLogShardInfo(context.Context, string, int) (rgwadmin.ShardInfo, error) {
	return rgwadmin.ShardInfo{}, nil
}
func (c *countingSource) ListMDLog(context.Context, string, int, string, int) (rgwadmin.MDLogPage, error) {
	return rgwadmin.MDLogPage{}, nil
}
func (c *countingSource) TrimMDLog(context.Context, string, int, string) error { return nil }
