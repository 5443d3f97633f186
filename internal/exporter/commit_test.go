package exporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
)

func commitWorker(bounds map[string]*checkpoint.Bound) *dataWorker {
	e := &Exporter{cfg: Config{RetryMin: time.Second, RetryMax: time.Minute, RecheckDelay: time.Minute}}
	return &dataWorker{worker: &worker{e: e, d: &destination{name: "zone-b"}}, shard: 3,
		bounds: bounds, readPos: map[string]string{}, listGen: map[string]int{}}
}

// Ack → bound, one case each: what an acked data batch stores.
func TestCommitOf(t *testing.T) {
	const key = "b:inst:0"
	failed := []*v1.RetryItem{{Section: "object", Name: "k2", Key: "k2", Error: "503"}}

	// A bilog page moves an incremental bound to its last entry, the old
	// marker becoming the trim-safe one, and keeps the failed item.
	dw := commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseIncremental, Marker: "00000000004.4.6"}})
	got := dw.commitOf(batchCommit{kind: commitBILog, key: key, marker: "00000000009.9.6"}, failed)
	require.Len(t, got, 1)
	require.Equal(t, checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Shard: 3, Instance: key}, got[0].Key)
	require.Equal(t, "00000000009.9.6", got[0].Bound.Marker)
	require.Equal(t, "00000000004.4.6", got[0].Bound.TrimSafe)
	require.Len(t, got[0].Bound.Retries, 1)
	require.Equal(t, "k2", got[0].Bound.Retries[0].Name)
	require.Equal(t, got[0].Bound, *dw.bounds[key], "the worker's bound is the stored one")

	// Back in full sync since it was read: the bilog page moves no marker.
	dw = commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseBucketFull, Marker: "a\x00"}})
	got = dw.commitOf(batchCommit{kind: commitBILog, key: key, marker: "00000000009.9.6"}, nil)
	require.Equal(t, "a\x00", got[0].Bound.Marker)

	// The last page of a listing turns the bound incremental at FullStart;
	// a page of a listing started again since moves nothing but retries.
	dw = commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseBucketFull, FullStart: "00000000002.2.6"}})
	got = dw.commitOf(batchCommit{kind: commitListing, key: key, marker: fullDoneMark}, nil)
	require.Equal(t, checkpoint.PhaseIncremental, got[0].Bound.Phase)
	require.Equal(t, "00000000002.2.6", got[0].Bound.Marker)
	require.Equal(t, "00000000002.2.6", dw.readPos[key], "its bilog is read from there")
	dw = commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseBucketFull}})
	dw.listGen[key] = 2
	got = dw.commitOf(batchCommit{kind: commitListing, key: key, marker: fullDoneMark, listGen: 1}, failed)
	require.Equal(t, checkpoint.PhaseBucketFull, got[0].Bound.Phase, "a stale listing page")
	require.Len(t, got[0].Bound.Retries, 1)

	// Retries sent again: the applied ones go, the failed one stays.
	dw = commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseIncremental,
		Retries: []checkpoint.Retry{{Name: "k1", Attempts: 1}, {Name: "k2", Attempts: 1}, {Name: "k3", Attempts: 1}}}})
	got = dw.commitOf(batchCommit{kind: commitRetries, key: key, resent: []checkpoint.Retry{{Name: "k1"}, {Name: "k2"}}}, failed)
	var names []string
	for _, r := range got[0].Bound.Retries {
		names = append(names, r.Name)
	}
	require.ElementsMatch(t, []string{"k2", "k3"}, names)

	// A removed bucket's shard, dropped meanwhile: nothing to store.
	dw = commitWorker(map[string]*checkpoint.Bound{})
	require.Nil(t, dw.commitOf(batchCommit{kind: commitBILog, key: key, marker: "x"}, nil))
}

// A caught-up data shard that polls its hot bucket shards (queued, nothing
// to read) is not behind; a datalog page not all read, or a listing left,
// is (issue #14, item 7: the Tentacle demo ended with two data shards
// "behind 0+ entries" while caught up: behindMore was "the queue is not
// empty", and hot polls fill the queue).
func TestDataShardBehindOnlyWithWorkLeft(t *testing.T) {
	const key = "b:inst:0"
	dw := commitWorker(map[string]*checkpoint.Bound{key: {Phase: checkpoint.PhaseIncremental, Marker: "00000000004.4.6"}})
	dw.stats = &shardStats{}
	dw.queue = []string{key} // requeued because it is hot
	dw.publishData()
	require.False(t, dw.stats.snapshot().behindMore, "polling a hot bucket shard is not work left")

	dw.dlNext = "1_0007"
	dw.publishData()
	require.True(t, dw.stats.snapshot().behindMore, "a datalog page's bucket shards left to read")

	dw.dlNext = ""
	dw.bounds[key].Phase = checkpoint.PhaseBucketFull
	dw.publishData()
	require.True(t, dw.stats.snapshot().behindMore, "a listing left")
	dw.readPos[key] = fullDoneMark
	dw.publishData()
	require.False(t, dw.stats.snapshot().behindMore, "listed: its last page in flight counts as a batch")
}
