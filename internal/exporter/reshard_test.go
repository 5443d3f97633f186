package exporter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// make chaos seed 5 (extended, at f480f18): zone-a's admin API answered
// 200 for a reshard's old instance for the 13 minutes the run had left,
// while its metadata listing no longer named it (FACTS.md section 26): the
// re-check put it on zone-b every 30 s and it stayed there
// ("bucket.instance:…4177.1: only on the destination"). A re-check of a
// resharded instance the source's listing does not name deletes it. Fails
// on the code before: the re-check sends it as a put again.
func TestStaleReshardedInstanceIsDeletedWhenNotListed(t *testing.T) {
	blob, err := os.ReadFile("../rgwlog/testdata/bucket-instance-resharded.json")
	require.NoError(t, err)
	const key = "rsp1:e5a1c870-2a31-43c0-85d2-993838821318.4177.2"
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.RecheckDelay = 200 * time.Millisecond })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	a.subscribe(mdUnit(1))
	src.putBlob(1, "bucket.instance", key, blob)
	b := a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":put"}, names(b))
	src.unlist("bucket.instance", key) // removed; the gateway's GET still answers it
	a.ack(b)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + key + ":del"}, names(b),
		"no longer listed by the source: gone, whatever its GET answers")
	a.ack(b)

	// An instance the listing still names is not deleted: it is put, and
	// looked at again.
	const other = "rsp2:e5a1c870-2a31-43c0-85d2-993838821318.4177.3"
	src.putBlob(1, "bucket.instance", other, blob)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + other + ":put"}, names(b))
	a.ack(b)
	b = a.next()
	require.Equal(t, []string{"bucket.instance:" + other + ":put"}, names(b), "listed: still there")
	a.ack(b)
}

// reshardedObjects is a source whose bucket "rb" was resharded from
// instance "old" to "new": the old instance's index answers 404 (its
// objects are in the new one, read by the bucket's name).
type reshardedObjects struct {
	*fakeObjects
	byName atomic.Int32
}

func (f *reshardedObjects) FindVersion(ctx context.Context, bucketShard, key, versionID string) (rgwobj.ListEntry, bool, error) {
	if strings.Contains(bucketShard, ":old") {
		return rgwobj.ListEntry{}, false, fmt.Errorf("find version %q of %q in %s: GET /rb: status 404 NoSuchKey: %w",
			versionID, key, bucketShard, rgwobj.ErrNotFound)
	}
	return f.fakeObjects.FindVersion(ctx, bucketShard, key, versionID)
}

func (f *reshardedObjects) FindVersionInBucket(ctx context.Context, bucket, key, versionID string) (rgwobj.ListEntry, bool, error) {
	f.byName.Add(1)
	return f.fakeObjects.FindVersion(ctx, bucket, key, versionID)
}

// make chaos seed 5 too: the retries of a reshard's old instance (a null
// version the source had deleted since) failed for good — the old index's
// listing answers 404 NoSuchKey, and a 404 is no proof — and were shown as
// failures until the end. Once the source's entry point names another
// instance, the key is looked for in the bucket (its current instance):
// what that says decides. Fails on the code before (an error for ever).
func TestRetryOfAReshardedInstanceReadsTheBucket(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket:rb"] = `{"data":{"bucket":{"name":"rb","bucket_id":"new"}}}`
	src.blobs["bucket.instance:rb:new"] = `{"data":{"bucket_info":{"owner":"alice","bucket":{"tenant":""}}}}`
	objs := &reshardedObjects{fakeObjects: &fakeObjects{versions: map[string]rgwobj.ListEntry{
		"v\x00V1": {Key: "v", VersionID: "V1", VersionedEpoch: 4, Owner: "alice"},
	}}}
	e := &Exporter{cfg: Config{Source: src, Objects: objs, InlineMax: 1 << 20}}
	bs := rgwlog.BucketShard{Key: "rb:old:3", Bucket: "rb", Instance: "old", Shard: 3}
	var budget atomic.Int64
	budget.Store(1 << 20)

	// A null version gone from the source since: removed (as from any
	// bucket whose index lists no such version).
	op, err := e.buildOp(context.Background(), objRef{bs: bs, key: "gone"}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, op.GetKind())
	require.Equal(t, "null", op.GetVersionId())
	// A retried version: what the bucket's listing says it is.
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "v", version: "V1"}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_PUT, op.GetKind())
	require.EqualValues(t, 4, op.GetVersionedEpoch())
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "v", version: "V0"}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, op.GetKind())
	require.Positive(t, objs.byName.Load())

	// While the entry point still names the instance, its index's 404 is
	// an error: nothing is decided from it.
	src.blobs["bucket:rb"] = `{"data":{"bucket":{"name":"rb","bucket_id":"old"}}}`
	_, err = e.buildOp(context.Background(), objRef{bs: bs, key: "gone"}, &budget)
	require.Error(t, err)
	// Nor when the entry point cannot be read.
	src.failGets["bucket:rb"] = true
	_, err = e.buildOp(context.Background(), objRef{bs: bs, key: "v", version: "V0"}, &budget)
	require.Error(t, err)
}

// make chaos seed 2 (extended, at 10ea65a; the same key as at 213f79a):
// a null version's PUT (epoch 1) was kept for retry while zone-b's bucket
// was not suspended yet, the key's later ops held behind it: a named
// delete marker (epoch 2), then a null delete marker (epoch 3) that
// replaced the null version on the source. The retry, resolved to what
// the source's index says of "null" now, wrote that epoch-3 marker first;
// the epoch-2 marker released after it was declined for good (FACTS.md
// section 25). A retry whose null id a later op of the key has reused
// since is superseded: that later op comes in its own order. Fails on the
// code before (a delete marker op).
func TestRetryOfAReusedNullIsSuperseded(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket.instance:vb:inst"] = `{"data":{"bucket_info":{"owner":"alice","bucket":{"tenant":""}}}}`
	objs := &fakeObjects{versions: map[string]rgwobj.ListEntry{
		"k\x00null": {Key: "k", VersionID: "null", VersionedEpoch: 3, DeleteMarker: true, IsLatest: true},
		"k\x00M":    {Key: "k", VersionID: "M", VersionedEpoch: 2, DeleteMarker: true},
	}}
	e := &Exporter{cfg: Config{Source: src, Objects: objs, InlineMax: 1 << 20}}
	bs := rgwlog.BucketShard{Key: "vb:inst:3", Bucket: "vb", Instance: "inst", Shard: 3}
	var budget atomic.Int64
	budget.Store(1 << 20)
	op, err := e.buildOp(context.Background(), objRef{bs: bs, key: "k", version: "null", epoch: 1}, &budget)
	require.NoError(t, err)
	require.Nil(t, op, "superseded by the null delete marker (epoch 3), which comes after the named one (epoch 2)")
	// The marker's own op (or its retry) is sent.
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "k", version: "null", epoch: 3}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, op.GetKind())
	// The null PUT's own op (not a retry): the source answers 404 for the
	// null version (a delete marker now), its index lists a later one.
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "k", version: "null", epoch: 1,
		kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT}, &budget)
	require.NoError(t, err)
	require.Nil(t, op)
	// The retry of a plain write of the null version (no OLH op, no
	// epoch: a suspended bucket's first write of the key) whose null is a
	// delete marker now (seed 2 at 4397e3b, v/k00811): superseded too.
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "k"}, &budget)
	require.NoError(t, err)
	require.Nil(t, op, "a plain write never made a delete marker")
	// A retry that knows no epoch: as the index says (as before).
	// (a resync of "null", say).
	op, err = e.buildOp(context.Background(), objRef{bs: bs, key: "k", version: "null"}, &budget)
	require.NoError(t, err)
	require.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, op.GetKind())
}
