package exporter

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// Resync (issue #14 item 2): what an operator asks for is stored before
// the answer, survives a restart of the exporter, and goes through the
// usual pipeline: object versions as retries of their bucket shard, a
// bucket as a new listing of its shards.
func TestResyncGoesThroughThePipelineAndSurvivesARestart(t *testing.T) {
	src, data := oneBucketSource()
	objs := &relisted{listedObjects: listedObjects{&fakeObjects{versions: map[string]rgwobj.ListEntry{
		"obj\x00null": {Key: "obj", VersionID: "null", Owner: "alice"}}}}}
	path := filepath.Join(t.TempDir(), "r.db")
	r := newRig(t, src, path, func(c *Config) { c.Data, c.Objects = data, objs })
	dataUnit := rgwlog.Unit{Log: rgwlog.LogData}
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(dataUnit)
	untilIncremental(r, a, b1Key)
	a.cancel()

	ctx := context.Background()
	_, err := r.exp.Resync(ctx, &v1.ResyncRequest{Buckets: []string{"nope"}})
	require.Equal(t, codes.NotFound, status.Code(err), "a bucket the source does not have")
	resp, err := r.exp.Resync(ctx, &v1.ResyncRequest{Objects: []*v1.ResyncObject{
		{Bucket: "b1", Key: "obj", VersionId: "null"}, {Bucket: "b1", Key: "obj"}}})
	require.NoError(t, err)
	require.Equal(t, uint32(2), resp.GetObjects())

	// Restarted before any worker took it: taken from the store.
	r.close()
	r = newRig(t, src, path, func(c *Config) { c.Data, c.Objects = data, objs })
	a = r.dial(t, "a2")
	a.subscribe(dataUnit)
	got := objectKeys(a, false)
	select {
	case k := <-got:
		require.Equal(t, "obj", k)
	case <-time.After(5 * time.Second):
		t.Fatal("the version asked for was never sent")
	}
	a.cancel()
	items, err := r.exp.ListErrors(ctx, &v1.ListErrorsRequest{})
	require.NoError(t, err)
	require.Len(t, items.GetItems(), 1, "one retry for both forms of the null version, shown until applied")
	require.Contains(t, items.GetItems()[0].GetError(), "resync")

	// A whole bucket: its shard listed again.
	resp, err = r.exp.Resync(ctx, &v1.ResyncRequest{Buckets: []string{"b1"}})
	require.NoError(t, err)
	require.Equal(t, uint32(1), resp.GetBucketShards())
	before := objs.n.Load()
	a = r.dial(t, "a3")
	a.subscribe(dataUnit)
	_ = objectKeys(a, true)
	deadline := time.Now().Add(5 * time.Second)
	for objs.n.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Greater(t, objs.n.Load(), before, "the bucket's shard was not listed again")

	// Status counts the versions asked for since the exporter started,
	// and those applied (the one asked for before the restart too).
	_, err = r.exp.Resync(ctx, &v1.ResyncRequest{Objects: []*v1.ResyncObject{{Bucket: "b1", Key: "obj"}}})
	require.NoError(t, err)
	var ds *v1.DestinationStatus
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err := r.exp.Status(ctx, &v1.StatusRequest{})
		require.NoError(t, err)
		require.Len(t, st.GetDestinations(), 1)
		if ds = st.GetDestinations()[0]; ds.GetResyncApplied() >= 2 {
			break
		}
	}
	require.EqualValues(t, 1, ds.GetResyncQueued())
	require.EqualValues(t, 2, ds.GetResyncApplied(), "%v", ds)
	require.Zero(t, ds.GetResyncFailed())
	a.cancel()
}

// relisted counts the shard listings.
type relisted struct {
	listedObjects
	n atomic.Int32
}

func (r *relisted) ListShard(ctx context.Context, k, km, vm string, max int) (rgwobj.ListPage, error) {
	r.n.Add(1)
	return r.listedObjects.ListShard(ctx, k, km, vm, max)
}

// Metadata keys asked to be resynced go into the retries of the mdlog
// shard the source logs them in (FACTS.md section 28), are fetched from
// the source again and sent (a put, or a delete when the source no longer
// has the key), and survive a restart of the exporter before they are
// taken. Before, resync sent objects only: the metadata differences of a
// verify stayed (issue #14's acceptance).
func TestMetadataResync(t *testing.T) {
	src := newFakeSource()
	path := filepath.Join(t.TempDir(), "m.db")
	r := newRig(t, src, path)
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	ctx := context.Background()
	src.mu.Lock()
	src.blobs["user:alice"] = `{"key":"user:alice","data":{"display_name":"Alice"}}` // unlogged: zone-b changed, say
	src.mu.Unlock()
	alice := uint32(rgwlog.MDLogShard("user", "alice", 4))
	gone := uint32(rgwlog.MDLogShard("user", "gone", 4))

	_, err := r.exp.Resync(ctx, &v1.ResyncRequest{Metadata: []*v1.ResyncMetadata{{Section: "otp", Key: "x"}}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a section not replicated")
	resp, err := r.exp.Resync(ctx, &v1.ResyncRequest{Metadata: []*v1.ResyncMetadata{{Section: "user", Key: "alice"}}})
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.GetMetadata())
	a.subscribe(mdUnit(alice))
	b := a.next()
	require.Equal(t, []string{"user:alice:put"}, names(b))
	a.ack(b)

	// Asked while nobody follows the shard, then the exporter restarts.
	a.cancel()
	_, err = r.exp.Resync(ctx, &v1.ResyncRequest{Metadata: []*v1.ResyncMetadata{{Section: "user", Key: "gone"}}})
	require.NoError(t, err)
	r.close()
	r = newRig(t, src, path)
	a = r.dial(t, "a2")
	a.subscribe(mdUnit(gone))
	b = a.next()
	require.Equal(t, []string{"user:gone:del"}, names(b), "the source has no such user: deleted on the destination")
	a.ack(b)
	waitBound(t, r.store, mdUnit(gone), func(bd checkpoint.Bound) bool { return len(bd.Retries) == 0 || onlyRechecks(bd.Retries) })
}

func onlyRechecks(rs []checkpoint.Retry) bool {
	for _, r := range rs {
		if r.Error != recheckMark {
			return false
		}
	}
	return true
}
