package exporter

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// ListErrors reads the retries kept with the bounds: every kind of item,
// oldest first, filtered by destination and bucket (a tenant's written
// either way), bounded, rechecks only on request; after a restart too
// (it reads the store, not the running workers).
func TestListErrors(t *testing.T) {
	st, err := checkpoint.Open(filepath.Join(t.TempDir(), "bounds.db"))
	require.NoError(t, err)
	defer st.Close()
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	require.NoError(t, st.Put(
		checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogMetadata, Shard: 7},
			Bound: checkpoint.Bound{Marker: "m", Retries: []checkpoint.Retry{
				{Section: "bucket.instance", Name: "acme/logs:inst.1", Error: "500", Attempts: 3, Timestamp: at(2), LastAttempt: at(9)},
				{Section: "user", Name: "bob", Error: "recheck", Timestamp: at(1)}}}},
		checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogBucketIndex, Shard: 3, Instance: "photos:inst.2:0"},
			Bound: checkpoint.Bound{Marker: "b", Retries: []checkpoint.Retry{
				{Section: "object", Name: "k1", VersionID: "v1", Error: "source: 503", Attempts: 1, Timestamp: at(4)},
				{Section: "object", Name: "k2", Error: rgwlog.HeldPrefix + "k1 failed", Timestamp: at(5)},
				{Section: "object", Name: "k3", Error: rgwlog.ParkedPrefix + "FACTS.md section 22", Attempts: 9, Timestamp: at(3)}}}},
		checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-c", Log: checkpoint.LogBucketIndex, Shard: 1, Instance: "acme/logs:inst.1:4"},
			Bound: checkpoint.Bound{Retries: []checkpoint.Retry{{Section: "object", Name: "x", Error: "403", Attempts: 2, Timestamp: at(0)}}}},
		checkpoint.Entry{Key: checkpoint.Key{Destination: "zone-b", Log: checkpoint.LogInstanceCheck, Instance: "photos"}, Bound: checkpoint.Bound{}},
	))
	e := &Exporter{cfg: Config{Store: st}}
	ctx := context.Background()

	resp, err := e.ListErrors(ctx, &v1.ListErrorsRequest{})
	require.NoError(t, err)
	var got []string
	for _, it := range resp.GetItems() {
		got = append(got, it.GetDestination()+" "+it.GetName()+" "+it.GetState().String())
	}
	require.Equal(t, []string{
		"zone-c x ERROR_STATE_FAILED",
		"zone-b acme/logs:inst.1 ERROR_STATE_FAILED",
		"zone-b k3 ERROR_STATE_PARKED",
		"zone-b k1 ERROR_STATE_FAILED",
		"zone-b k2 ERROR_STATE_HELD",
	}, got, "oldest first; the re-check left out")
	require.EqualValues(t, 5, resp.GetTotal())
	k1 := resp.GetItems()[3]
	require.Equal(t, "photos:inst.2:0", k1.GetBucketShard())
	require.Equal(t, v1.LogType_LOG_TYPE_DATA, k1.GetShard().GetLogType())
	require.EqualValues(t, 3, k1.GetShard().GetShard())
	require.Equal(t, "v1", k1.GetVersionId())
	md := resp.GetItems()[1]
	require.Equal(t, v1.LogType_LOG_TYPE_METADATA, md.GetShard().GetLogType())
	require.Equal(t, at(9), md.GetLastAttempt().AsTime())
	require.EqualValues(t, 3, md.GetAttempts())

	for _, b := range []string{"acme/logs", "acme:logs"} {
		resp, err = e.ListErrors(ctx, &v1.ListErrorsRequest{Bucket: b})
		require.NoError(t, err)
		require.EqualValues(t, 2, resp.GetTotal(), "the tenant's bucket written as %q: its instance and its object", b)
	}
	resp, err = e.ListErrors(ctx, &v1.ListErrorsRequest{Destination: "zone-b", Bucket: "acme/logs"})
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.GetTotal())

	resp, err = e.ListErrors(ctx, &v1.ListErrorsRequest{Limit: 2, IncludeRechecks: true})
	require.NoError(t, err)
	require.EqualValues(t, 6, resp.GetTotal(), "the re-check included")
	require.Len(t, resp.GetItems(), 2)
	require.Equal(t, v1.ErrorState_ERROR_STATE_RECHECK, resp.GetItems()[1].GetState())
}
