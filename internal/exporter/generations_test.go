package exporter

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// A reshard on Reef and later keeps the instance and starts a new index log
// generation (FACTS.md section 32). Tentacle's lab run of
// TestDataSyncReshard lost every object written after it: the bounds of
// generation 0, read without a generation, skipped the new logs' entries
// (numbered from 2 again). Now the old generation's logs are read to their
// end first (a write logged there is sent before the new generation's),
// then the new generation's shards are followed from the start of their
// logs, nothing listed again; the closed shard's bound is gone.
func TestReshardToANewGenerationKeepsTheOrder(t *testing.T) {
	r, a, data, objs := incrementalB1(t)
	listed := objs.listed.Load()

	// obj1 written in generation 0, then a reshard into 2 shards: obj2 is
	// logged in generation 0 (just before), obj3 in generation 1's shard 1,
	// and the datalog names generation 1's shard first.
	for _, k := range []string{"obj1", "obj2", "obj3"} {
		objs.versions[k+"\x00null"] = rgwobj.ListEntry{Key: k, VersionID: "null", Owner: "alice"}
	}
	data.write("b1:inst1", "obj1", 1)
	data.write("b1:inst1", "obj2", 2)
	data.mu.Lock()
	data.latestGen = 1
	data.gens = []rgwadmin.BILogGeneration{{Gen: 0, NumShards: 0}, {Gen: 1, NumShards: 2}}
	data.bilogs["b1:inst1:1@1"] = []rgwadmin.BILogEntry{{OpID: "00000000002.1.2", IndexVer: 2, Op: "write",
		Object: "obj3", Instance: "null", State: "complete", Timestamp: time.Unix(1795609540, 0)}}
	data.datalog = append(data.datalog,
		rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1:1", Gen: 1, LogID: "1_0002"},
		rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0003"})
	data.mu.Unlock()

	got := objectKeys(a, true)
	var order []string
	for len(order) < 3 {
		select {
		case k := <-got:
			order = append(order, k)
		case <-time.After(10 * time.Second):
			t.Fatalf("sent so far: %v", order)
		}
	}
	require.Equal(t, []string{"obj1", "obj2", "obj3"}, order, "generation 0's writes come before generation 1's")

	gen1 := checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: "b1:inst1:1@1"}
	require.Eventually(t, func() bool {
		_, open, _ := r.store.Get(b1Key)
		bd, ok, _ := r.store.Get(gen1)
		return !open && ok && bd.Marker == "00000000002.1.2"
	}, 10*time.Second, 20*time.Millisecond, "generation 0's bound closed, generation 1's acked")
	bd, ok, err := r.store.Get(checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: "b1:inst1:0@1"})
	require.NoError(t, err)
	require.True(t, ok, "every shard of the new generation is followed")
	require.Equal(t, checkpoint.PhaseIncremental, bd.Phase)
	require.Equal(t, listed, objs.listed.Load(), "nothing listed again")
	a.cancel()
}

// After a restart, a later generation's shard whose datalog entries the
// datalog bound has passed (gated before the restart) and an older shard
// still open are polled from the bounds alone: the older one closes, the
// later one is read. Before the restart the gate had stored the later
// generation's bounds and consumed its datalog entry; nothing names either
// shard again.
func TestGenerationHandOverSurvivesARestart(t *testing.T) {
	src, data := oneBucketSource()
	objs := &flakyListing{fakeObjects: &fakeObjects{versions: map[string]rgwobj.ListEntry{}}}
	path := filepath.Join(t.TempDir(), "g.db")
	r := newRig(t, src, path, func(c *Config) { c.Data, c.Objects = data, objs })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	untilIncremental(r, a, b1Key)
	a.cancel()
	r.close()

	// The state the gate leaves: generation 1's bounds at the start of
	// their logs, generation 0's bound open.
	objs.versions["obj3\x00null"] = rgwobj.ListEntry{Key: "obj3", VersionID: "null", Owner: "alice"}
	data.mu.Lock()
	data.latestGen = 1
	data.gens = []rgwadmin.BILogGeneration{{Gen: 0, NumShards: 0}, {Gen: 1, NumShards: 2}}
	data.bilogs["b1:inst1:1@1"] = []rgwadmin.BILogEntry{{OpID: "00000000002.1.2", IndexVer: 2, Op: "write",
		Object: "obj3", Instance: "null", State: "complete", Timestamp: time.Unix(1795609540, 0)}}
	data.mu.Unlock()
	store, err := checkpoint.Open(path)
	require.NoError(t, err)
	now := time.Now().UTC()
	for _, k := range []string{"b1:inst1:0@1", "b1:inst1:1@1"} {
		require.NoError(t, store.Put(checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Instance: k},
			Bound: checkpoint.Bound{Phase: checkpoint.PhaseIncremental, UpdatedAt: now}}))
	}
	require.NoError(t, store.Close())

	r = newRig(t, src, path, func(c *Config) { c.Data, c.Objects = data, objs })
	a = r.dial(t, "a2")
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})
	got := objectKeys(a, true)
	select {
	case k := <-got:
		require.Equal(t, "obj3", k)
	case <-time.After(10 * time.Second):
		t.Fatal("generation 1's write was never sent after the restart")
	}
	require.Eventually(t, func() bool {
		_, open, _ := r.store.Get(b1Key)
		return !open
	}, 10*time.Second, 20*time.Millisecond, "generation 0's shard closed")
	a.cancel()
}

// layoutListing lists each bucket shard key from its own keys (sorted),
// one a page, as the gateway lists a shard by its number in the current
// layout; after the first page of generation 0's shard it runs reshard,
// and from then on that shard's listing fails (its number names no shard
// of the new layout). It counts the pages listed by key.
type layoutListing struct {
	*fakeObjects
	mu      sync.Mutex
	keys    map[string][]string
	pages   map[string]int
	reshard func()
	gone    map[string]bool
}

func (f *layoutListing) ListShard(_ context.Context, shard, keyMarker, _ string, _ int) (rgwobj.ListPage, error) {
	f.mu.Lock()
	f.pages[shard]++
	if f.gone[shard] {
		f.mu.Unlock()
		return rgwobj.ListPage{}, errors.New("500 InternalError: no such shard in the current layout")
	}
	var p rgwobj.ListPage
	for _, k := range f.keys[shard] {
		if k <= keyMarker {
			continue
		}
		if len(p.Entries) == 1 {
			p.Truncated = true
			break
		}
		p.Entries = append(p.Entries, f.versions[k+"\x00null"])
		p.NextKeyMarker = k
	}
	hook := f.reshard
	if hook != nil && shard == "b1:inst1" {
		f.reshard = nil
		f.gone[shard] = true
	} else {
		hook = nil
	}
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return p, nil
}

// A reshard in place (Reef and later) while a bucket shard is in its first
// listing: the listing by shard number would go on in the new layout (other
// keys, or a shard that does not exist) and the keys of the shard never
// listed were lost — obj2 here, written before the start and never
// changed. Now the new generation's shards are listed in full once the old
// one has read its log from where its listing began (obj3's removal) and
// closed. Before, generation 0's listing failed for good and neither obj2
// nor obj4 (written after the reshard) was ever sent.
func TestReshardWhileListedListsTheNextGeneration(t *testing.T) {
	src, data := oneBucketSource()
	data.gens = []rgwadmin.BILogGeneration{{Gen: 0, NumShards: 0}} // a Reef or later source
	objs := &layoutListing{fakeObjects: &fakeObjects{versions: map[string]rgwobj.ListEntry{}},
		keys: map[string][]string{"b1:inst1": {"obj1", "obj2", "obj3"}}, pages: map[string]int{}, gone: map[string]bool{}}
	for _, k := range []string{"obj1", "obj2", "obj3"} {
		objs.versions[k+"\x00null"] = rgwobj.ListEntry{Key: k, VersionID: "null", Owner: "alice"}
	}
	objs.reshard = func() {
		// obj3 removed in generation 0, then the reshard into 2 shards,
		// then obj4 written in generation 1's shard 1.
		data.mu.Lock()
		defer data.mu.Unlock()
		objs.mu.Lock()
		defer objs.mu.Unlock()
		delete(objs.versions, "obj3\x00null")
		objs.versions["obj4\x00null"] = rgwobj.ListEntry{Key: "obj4", VersionID: "null", Owner: "alice"}
		data.bilogs["b1:inst1"] = []rgwadmin.BILogEntry{{OpID: "00000000001.1.1", IndexVer: 1, Op: "del",
			Object: "obj3", State: "complete", Timestamp: time.Unix(1795609530, 0)}}
		data.latestGen = 1
		data.gens = []rgwadmin.BILogGeneration{{Gen: 0, NumShards: 0}, {Gen: 1, NumShards: 2}}
		data.bilogs["b1:inst1:1@1"] = []rgwadmin.BILogEntry{{OpID: "00000000002.1.2", IndexVer: 2, Op: "write",
			Object: "obj4", Instance: "null", State: "complete", Timestamp: time.Unix(1795609540, 0)}}
		data.datalog = append(data.datalog,
			rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1", LogID: "1_0002"},
			rgwadmin.DataLogEntry{EntityType: "bucket", Key: "b1:inst1:1", Gen: 1, LogID: "1_0003"})
		objs.keys["b1:inst1:0@1"] = []string{"obj1"}
		objs.keys["b1:inst1:1@1"] = []string{"obj2", "obj4"}
	}
	r := newRig(t, src, filepath.Join(t.TempDir(), "g.db"), func(c *Config) {
		c.Data, c.Objects = data, objs
		c.RecheckDelay = 300 * time.Millisecond // obj3's removal is checked again before its generation closes
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(rgwlog.Unit{Log: rgwlog.LogData})

	got := objectKeys(a, true)
	sent := map[string]int{}
	deadline := time.After(15 * time.Second)
	for sent["obj2"] == 0 || sent["obj3"] == 0 || sent["obj4"] == 0 {
		select {
		case k := <-got:
			sent[k]++
		case <-deadline:
			all, _ := r.store.ListLogShard("zone-b", checkpoint.LogBucketIndex, 0)
			t.Fatalf("sent so far: %v; pages listed: %v; bounds %+v", sent, objs.pages, all)
		}
	}
	objs.mu.Lock()
	require.Positive(t, objs.pages["b1:inst1:0@1"], "the next generation's shards are listed")
	require.Positive(t, objs.pages["b1:inst1:1@1"])
	objs.mu.Unlock()
	require.Eventually(t, func() bool {
		_, open, _ := r.store.Get(b1Key)
		return !open
	}, 10*time.Second, 20*time.Millisecond, "generation 0's shard closed")
	a.cancel()
}
