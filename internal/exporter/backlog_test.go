package exporter

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Backlog lists, per index shard of a bucket, what is waiting: the
// source's bilog entries after the acked bound (the completed ones) and
// the items kept for retry (not the re-checks of applied deletes); a shard
// in full sync or not met yet lists nothing (its listing copies it whole);
// the limit caps the entries listed, and says so.
func TestBacklog(t *testing.T) {
	st, err := checkpoint.Open(filepath.Join(t.TempDir(), "bounds.db"))
	require.NoError(t, err)
	defer st.Close()
	src, data := oneBucketSource()
	src.blobs["bucket:b2"] = `{"data":{"bucket":{"bucket_id":"inst2"}}}`
	src.blobs["bucket.instance:b2:inst2"] = `{"data":{"bucket_info":{"num_shards":0,"owner":"alice","bucket":{"tenant":""}}}}`
	e := &Exporter{cfg: Config{Store: st, Source: src, Data: data, FetchConcurrency: 2}, dataShards: 128}
	for n := 1; n <= 5; n++ {
		data.write("b1:inst1", "k"+string(rune('0'+n)), n)
	}
	data.mu.Lock()
	data.bilogs["b1:inst1"][3].State = "pending" // k4: its op not finished yet
	data.mu.Unlock()
	data.write("b2:inst2", "x", 1)
	b1 := rgwlog.BucketShard{Key: "b1:inst1", Bucket: "b1", Instance: "inst1", Shard: -1}
	require.NoError(t, st.Put(checkpoint.Entry{Key: e.bucketShardKey("zone-b", b1), Bound: checkpoint.Bound{
		Phase: checkpoint.PhaseIncremental, Marker: data.bilogs["b1:inst1"][1].OpID, // k1, k2 applied
		Retries: []checkpoint.Retry{{Section: "object", Name: "old", VersionID: "V1", Error: "503 SlowDown"},
			{Section: "object", Name: "gone", Error: recheckMark}}}}))
	ctx := context.Background()

	resp, err := e.Backlog(ctx, &v1.BacklogRequest{Destination: "zone-b", Bucket: "b1"})
	require.NoError(t, err)
	require.Len(t, resp.GetShards(), 1)
	row := resp.GetShards()[0]
	require.Equal(t, "incremental", row.GetPhase())
	require.Equal(t, "1 items kept for retry", row.GetWaiting())
	require.EqualValues(t, 2, row.GetEntriesBehind(), "k3 and k5; k4 is not complete")
	require.EqualValues(t, 1, row.GetRetries())
	require.False(t, row.GetMore())
	var got []string
	for _, en := range resp.GetEntries() {
		got = append(got, en.GetOp()+" "+en.GetKey())
	}
	require.Equal(t, []string{"retry old", "write k3", "write k5"}, got)
	require.Equal(t, "503 SlowDown", resp.GetEntries()[0].GetError())
	require.EqualValues(t, 3, resp.GetTotal())
	require.False(t, resp.GetTruncated())

	// Every bucket: b2 is not met yet (nothing listed for it); a limit of
	// 2 lists two entries and says more are waiting.
	resp, err = e.Backlog(ctx, &v1.BacklogRequest{Destination: "zone-b", Limit: 2})
	require.NoError(t, err)
	require.Len(t, resp.GetShards(), 2)
	require.Equal(t, "not met yet", resp.GetShards()[1].GetPhase())
	require.Len(t, resp.GetEntries(), 2)
	require.True(t, resp.GetTruncated())

	// Done up to the head: nothing waiting, nothing read.
	require.NoError(t, st.Put(checkpoint.Entry{Key: e.bucketShardKey("zone-b", b1), Bound: checkpoint.Bound{
		Phase: checkpoint.PhaseIncremental, Marker: data.bilogs["b1:inst1"][4].OpID}}))
	resp, err = e.Backlog(ctx, &v1.BacklogRequest{Destination: "zone-b", Bucket: "b1"})
	require.NoError(t, err)
	require.Empty(t, resp.GetShards()[0].GetWaiting())
	require.Empty(t, resp.GetEntries())

	_, err = e.Backlog(ctx, &v1.BacklogRequest{Destination: "zone-b", Bucket: "nope"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}
