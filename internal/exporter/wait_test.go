package exporter

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Wait's comparison of the bounds with the heads read when it began: a
// shard is applied when its bound is at or past its head with nothing kept
// for retry (scheduled re-checks of applied deletes do not count); a shard
// with nothing logged and no bound is applied; one with a bound behind, in
// full sync, with failed or parked items, or with promised work (a listing
// again, an instance to check) is waited for, and says why.
func TestWaitResponse(t *testing.T) {
	st, err := checkpoint.Open(filepath.Join(t.TempDir(), "bounds.db"))
	require.NoError(t, err)
	defer st.Close()
	e := &Exporter{cfg: Config{Store: st}, dataShards: 128}
	shard := func(b string, n int) rgwlog.BucketShard {
		bs, err := rgwlog.ParseBucketShard(b + ":inst.1:" + string(rune('0'+n)))
		require.NoError(t, err)
		return bs
	}
	photos0, photos1, photos2, logs0 := shard("photos", 0), shard("photos", 1), shard("photos", 2), shard("acme/logs", 0)
	tgt := waitTarget{dest: "zone-b", started: time.Now(),
		md:     []string{"1_1795609532.671183_9.1", ""},
		shards: []rgwlog.BucketShard{photos0, photos1, photos2, logs0},
		bilog: map[string]string{photos0.Key: "00000000011.13.5", photos1.Key: "00000000004.5.5",
			photos2.Key: "", logs0.Key: "00000000002.3.5"}}
	md := func(s uint32, b checkpoint.Bound) checkpoint.Entry {
		return checkpoint.Entry{Key: checkpoint.UnitKey("zone-b", rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: s}), Bound: b}
	}
	bi := func(bs rgwlog.BucketShard, b checkpoint.Bound) checkpoint.Entry {
		return checkpoint.Entry{Key: e.bucketShardKey("zone-b", bs), Bound: b}
	}
	inc := checkpoint.PhaseIncremental
	fullDone := checkpoint.Entry{Key: checkpoint.UnitKey("zone-b", rgwlog.Unit{Log: rgwlog.LogMetadataFull}),
		Bound: checkpoint.Bound{Phase: checkpoint.PhaseDone}}
	require.NoError(t, st.Put(
		md(0, checkpoint.Bound{Phase: inc, Marker: "1_1795609532.671183_8.1"}),
		md(1, checkpoint.Bound{Phase: inc}),
		bi(photos0, checkpoint.Bound{Phase: inc, Marker: "00000000011.13.5",
			Retries: []checkpoint.Retry{{Section: "object", Name: "k", Error: rgwlog.ParkedPrefix + "FACTS.md section 22"}}}),
		bi(photos1, checkpoint.Bound{Phase: checkpoint.PhaseBucketFull}),
	))
	reasons := func() (map[string]string, *v1.WaitResponse) {
		p, err := e.waitProgress(tgt)
		require.NoError(t, err)
		out := map[string]string{}
		for _, w := range p.GetWaiting() {
			out[w.GetShard()] = w.GetReason()
		}
		return out, p
	}
	got, p := reasons()
	require.EqualValues(t, 6, p.GetShardsTotal())
	require.Equal(t, map[string]string{"metadata/0": "metadata full sync", "metadata/1": "metadata full sync",
		photos0.Key: "1 items parked (see errors)", photos1.Key: "full sync", logs0.Key: "not met yet"}, got)
	require.EqualValues(t, 1, p.GetShardsDone(), "photos:2: nothing logged, nothing met")
	require.EqualValues(t, 1, p.GetParked())
	require.False(t, p.GetDone())

	require.NoError(t, st.Put(fullDone,
		bi(photos0, checkpoint.Bound{Phase: inc, Marker: "00000000011.13.5",
			Retries: []checkpoint.Retry{{Section: "object", Name: "k", Error: recheckMark}}}),
		bi(photos1, checkpoint.Bound{Phase: inc, Marker: "00000000003.4.5"}),
		bi(logs0, checkpoint.Bound{Phase: inc, Marker: "00000000002.3.5",
			Retries: []checkpoint.Retry{{Section: "object", Name: "x", Error: "503"}}}),
		checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogRelist, Shard: 1, Instance: photos2.Key}},
	))
	got, p = reasons()
	require.Equal(t, map[string]string{"metadata/0": `bound "1_1795609532.671183_8.1" < head "1_1795609532.671183_9.1"`,
		photos1.Key: `bound "00000000003.4.5" < head "00000000004.5.5"`, logs0.Key: "1 items kept for retry",
		photos2.Key: "to be listed again"}, got)
	require.EqualValues(t, 2, p.GetShardsDone(), "metadata/1 (nothing logged) and photos:0 (a re-check does not wait)")
	require.Zero(t, p.GetParked())

	require.NoError(t, st.Put(
		md(0, checkpoint.Bound{Phase: inc, Marker: "1_1795609532.671183_10.1"}),
		bi(photos1, checkpoint.Bound{Phase: inc, Marker: "00000000004.5.5"}),
		bi(logs0, checkpoint.Bound{Phase: inc, Marker: "00000000002.3.5"}),
	))
	require.NoError(t, st.Delete(checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogRelist, Shard: 1, Instance: photos2.Key}))
	got, p = reasons()
	require.Empty(t, got)
	require.True(t, p.GetDone())
	require.EqualValues(t, 6, p.GetShardsDone())
}
