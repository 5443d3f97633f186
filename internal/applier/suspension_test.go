package applier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// adminDest is zone-b's admin API for one bucket, from blobs recorded on
// the lab: the instance puts change the versioning objects serves, and are
// recorded among objects' calls ("instance Suspended").
type adminDest struct {
	objects *fakeDest
	putErr  error // of every instance put after the first
	// failFirst: the first instance put is applied and answers this
	failFirst error

	mu    sync.Mutex
	blobs map[string][]byte // section + "\x00" + key
	puts  int
}

func newAdminDest(t *testing.T, objects *fakeDest) (*adminDest, string) {
	t.Helper()
	read := func(f string) []byte {
		raw, err := os.ReadFile("../rgwlog/testdata/" + f)
		require.NoError(t, err)
		return raw
	}
	ep, inst := read("bucket-entrypoint-versioned.json"), read("bucket-instance-enabled.json")
	id, err := rgwlog.BucketID(ep)
	require.NoError(t, err)
	d := &adminDest{objects: objects, blobs: map[string][]byte{
		rgwlog.SectionBucket + "\x00" + recordedBucket:                    ep,
		rgwlog.SectionBucketInstance + "\x00" + recordedBucket + ":" + id: inst,
	}}
	st, err := rgwlog.Versioning(inst)
	require.NoError(t, err)
	objects.versioning = st
	return d, recordedBucket + ":" + id
}

// recordedBucket is the bucket of the recorded blobs.
const recordedBucket = "vh1"

func (d *adminDest) GetMetadata(_ context.Context, section, key string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.blobs[section+"\x00"+key]
	if !ok {
		return nil, fmt.Errorf("get %s:%s: %w", section, key, rgwadmin.ErrNotFound)
	}
	return b, nil
}

func (d *adminDest) PutMetadata(_ context.Context, section, key string, blob []byte, _ string) (rgwadmin.UpdateStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.puts++; d.puts > 1 && d.putErr != nil {
		return rgwadmin.UpdateStatus{}, d.putErr
	}
	st, err := rgwlog.Versioning(blob)
	if err != nil {
		return rgwadmin.UpdateStatus{}, err
	}
	d.blobs[section+"\x00"+key] = blob
	d.objects.mu.Lock()
	d.objects.versioning = st
	d.objects.mu.Unlock()
	d.objects.record("instance " + st)
	if d.puts == 1 && d.failFirst != nil {
		return rgwadmin.UpdateStatus{}, d.failFirst // applied, its answer lost
	}
	return rgwadmin.UpdateStatus{Applied: true}, nil
}

func (d *adminDest) DeleteMetadata(context.Context, string, string) error {
	return errors.New("adminDest deletes nothing")
}

// make chaos seed 1 (CHAOS_EXTENDED=1), and every full sync of a bucket
// that was once suspended: the source wrote a null version while its bucket
// was suspended for a moment the metadata sync never showed zone-b (it
// copies current blobs), and zone-b cannot store it while its bucket is
// enabled (FACTS.md sections 9, 20): it was parked for good (~30
// differences). Now zone-b's bucket is suspended for that write and put
// back as it was (FACTS.md section 24); on the code before, the op was
// parked and nothing written.
func TestNullVersionIsWrittenInASuspension(t *testing.T) {
	for _, c := range []struct {
		name string
		op   *v1.ObjectOp
	}{
		{"metadata settled", &v1.ObjectOp{Timestamp: timestamppb.Now(), MetadataSettled: true}},
		{"waited long", &v1.ObjectOp{Timestamp: timestamppb.New(time.Now().Add(-nullVersionWait - time.Minute))}},
	} {
		op := c.op
		op.Kind, op.Bucket, op.Key, op.VersionId, op.VersionedEpoch = v1.ObjectOpKind_OBJECT_OP_KIND_PUT, recordedBucket, "k", "null", 3
		dst := &fakeDest{}
		admin, key := newAdminDest(t, dst)
		require.Equal(t, "Enabled", dst.versioning, "the recorded instance is a versioning-enabled bucket's")
		before, err := admin.GetMetadata(context.Background(), rgwlog.SectionBucketInstance, key)
		require.NoError(t, err)

		require.Empty(t, applyWithAdmin(t, dst, admin, op), c.name)
		require.Equal(t, []string{"instance Suspended", "put k null", "instance Enabled"}, dst.calls, c.name)
		after, err := admin.GetMetadata(context.Background(), rgwlog.SectionBucketInstance, key)
		require.NoError(t, err)
		require.Equal(t, before, after, "%s: zone-b's instance put back byte for byte", c.name)
	}
}

// An applier killed between its two instance puts left zone-b's bucket
// suspended (its version tag marked). The op comes again (its batch was
// not acked) and zone-b says Suspended: written as it is, the bucket would
// stay suspended until its next metadata change. The instance is put back
// first, then the op written in a suspension of its own.
func TestLeftSuspensionIsUndone(t *testing.T) {
	dst := &fakeDest{}
	admin, key := newAdminDest(t, dst)
	orig := admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key]
	left, err := rgwlog.WithVersioningSuspended(orig)
	require.NoError(t, err)
	admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key] = left
	dst.versioning = "Suspended"
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: recordedBucket, Key: "k", VersionId: "null",
		VersionedEpoch: 3, Timestamp: timestamppb.Now(), MetadataSettled: true}
	require.Empty(t, applyWithAdmin(t, dst, admin, op))
	require.Equal(t, []string{"instance Enabled", "instance Suspended", "put k null", "instance Enabled"}, dst.calls)
	require.JSONEq(t, string(orig), string(admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key]))
}

// The instance is put back also when the write fails (the op is then
// retried, not parked); a restore that fails is an error of the op, named.
func TestSuspensionIsUndoneWhenTheWriteFails(t *testing.T) {
	op := func() *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: recordedBucket, Key: "k", VersionId: "null",
			VersionedEpoch: 3, Timestamp: timestamppb.Now(), MetadataSettled: true}
	}
	dst := &fakeDest{failPut: map[string]bool{"k\x00null": true}}
	admin, _ := newAdminDest(t, dst)
	failed := applyWithAdmin(t, dst, admin, op())
	require.Len(t, failed, 1)
	require.False(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Equal(t, []string{"instance Suspended", "put k null", "instance Enabled"}, dst.calls)

	dst = &fakeDest{}
	admin, _ = newAdminDest(t, dst)
	admin.putErr = errors.New("503 from the fake")
	failed = applyWithAdmin(t, dst, admin, op())
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].GetError(), "back after a null version's write")

	// The suspending put answered an error that may hide its success: the
	// instance is put back all the same, and nothing written.
	dst = &fakeDest{}
	admin, _ = newAdminDest(t, dst)
	admin.failFirst = errors.New("200 with an HTML page, from the fake")
	failed = applyWithAdmin(t, dst, admin, op())
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].GetError(), "suspend zone-b's bucket instance")
	require.Equal(t, []string{"instance Suspended", "instance Enabled"}, dst.calls)
}

// A suspension write waits for the bucket's writes under way and holds off
// the ones that come meanwhile; it gives up (retried) rather than block a
// write that may need body chunks queued behind its own.
func TestBucketGates(t *testing.T) {
	var g bucketGates
	ctx := context.Background()
	release := g.shared("b")
	_, ok := g.alone(ctx, "b", 50*time.Millisecond)
	require.False(t, ok, "a write of the bucket under way")
	other, ok := g.alone(ctx, "c", 50*time.Millisecond)
	require.True(t, ok, "another bucket's gate")
	other()
	release()

	alone, ok := g.alone(ctx, "b", time.Second)
	require.True(t, ok)
	got := make(chan struct{})
	go func() {
		r := g.shared("b")
		r()
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a write went on during the suspension write")
	case <-time.After(50 * time.Millisecond):
	}
	alone()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the write did not go on after the suspension write")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	require.Empty(t, g.m, "gates of buckets nobody writes are dropped")
}

func TestInstanceBucket(t *testing.T) {
	require.Equal(t, "b", rgwlog.InstanceS3Bucket("b:e5a1.4177.2"))
	require.Equal(t, "acme:b", rgwlog.InstanceS3Bucket("acme/b:e5a1.4177.2"))
}

// lockedLeases: another applier holds every exclusive lock.
type lockedLeases struct{ allLeases }

func (lockedLeases) Exclusive(context.Context, string) (func(), error) {
	return nil, rgwadmin.ErrLocked
}

// Several appliers (make chaos runs three): one suspends zone-b's bucket
// for a null version while another has a null version of the same bucket
// to write. The chaos run showed the second taking the first's marked
// suspension for one left by a kill and putting the instance back under
// it. Now one applier at a time suspends a bucket (a lock of the
// destination's gateway), a null version with settled metadata is not
// written into another applier's suspension (it may end before the write
// lands), and a marked suspension is put back only by the lock's holder.
func TestSuspensionWritesOfSeveralAppliers(t *testing.T) {
	op := func() *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: recordedBucket, Key: "k", VersionId: "null",
			VersionedEpoch: 3, Timestamp: timestamppb.Now(), MetadataSettled: true}
	}
	// Another applier's suspension under way: not written, not put back,
	// retried (not parked).
	dst := &fakeDest{}
	admin, key := newAdminDest(t, dst)
	marked, err := rgwlog.WithVersioningSuspended(admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key])
	require.NoError(t, err)
	admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key] = marked
	dst.versioning = "Suspended"
	failed := applyWithLeases(t, dst, admin, lockedLeases{}, op())
	require.Len(t, failed, 1)
	require.False(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Contains(t, failed[0].GetError(), "another applier")
	require.Empty(t, dst.calls, "nothing written, nothing put back")

	// Not settled (the source's bucket may be suspended, or not): not
	// written into another applier's suspension either (make chaos seed 5
	// extended: written just as the other put the instance back, "null"
	// listed twice), retried.
	dst = &fakeDest{}
	admin, key = newAdminDest(t, dst)
	admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key] = marked
	dst.versioning = "Suspended"
	notSettled := op()
	notSettled.MetadataSettled = false
	failed = applyWithLeases(t, dst, admin, lockedLeases{}, notSettled)
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].GetError(), "another applier")
	require.Empty(t, dst.calls)

	// The same bucket enabled, the lock another's: waits (retried).
	dst = &fakeDest{}
	admin, _ = newAdminDest(t, dst)
	failed = applyWithLeases(t, dst, admin, lockedLeases{}, op())
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].GetError(), "another applier")
	require.Empty(t, dst.calls)

	// The source's own suspension on zone-b (not marked): written as it is.
	dst = &fakeDest{}
	admin, key = newAdminDest(t, dst)
	genuine, err := os.ReadFile("../rgwlog/testdata/bucket-instance-suspended.json") // recorded, flags 6
	require.NoError(t, err)
	admin.blobs[rgwlog.SectionBucketInstance+"\x00"+key] = genuine
	dst.versioning = "Suspended"
	require.Empty(t, applyWithLeases(t, dst, admin, lockedLeases{}, op()))
	require.Equal(t, []string{"put k null"}, dst.calls)
}

// A null version whose body comes in chunks (make chaos seed 1 extended,
// v/k01839: parked, then refused for good): its chunks come only after
// those of the batch's earlier ops, which may wait for the bucket's gate,
// so it is read to a file first, then written in a suspension like an
// inline one (parked before this change).
func TestChunkedNullVersionIsWrittenInASuspension(t *testing.T) {
	dst := &fakeDest{}
	admin, _ := newAdminDest(t, dst)
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: recordedBucket, Key: "k", VersionId: "null",
		VersionedEpoch: 3, Timestamp: timestamppb.Now(), MetadataSettled: true, Chunked: true, Owner: "u",
		Attrs: &v1.ObjectAttrs{Size: 6, Etag: "e"}}
	chunks := make(chan *v1.ObjectChunk, 2)
	chunks <- &v1.ObjectChunk{Index: 0, Offset: 0, Data: []byte("abc")}
	chunks <- &v1.ObjectChunk{Index: 0, Offset: 3, Data: []byte("def"), Last: true}
	a := &Applier{cfg: Config{Objects: dst, Dest: admin, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: allLeases{},
		log: slog.New(slog.DiscardHandler)}
	failed, err := a.applyObjects(context.Background(), rgwlog.Unit{}, &v1.Batch{Objects: []*v1.ObjectOp{op}}, chunks, nil)
	require.NoError(t, err)
	require.Empty(t, failed)
	require.Equal(t, []string{"instance Suspended", "put k null", "instance Enabled"}, dst.calls)
	require.Equal(t, "abcdef", string(dst.lastBody))
}

// A bucket instance's metadata is not applied between an object write's
// read of zone-b's versioning and the write itself (FACTS.md section 15:
// a toggle applied in between stored a null version as another kind):
// it waits for the bucket's writes under way, and gives up (retried)
// rather than wait on a write that does not end.
func TestInstanceMetadataWaitsForTheBucketsWrites(t *testing.T) {
	a := &Applier{cfg: Config{Dest: &recordingDest{}, Metrics: NewMetrics(nil)}, log: slog.New(slog.DiscardHandler)}
	release := a.gates.shared("b")
	done := make(chan error, 1)
	go func() {
		done <- a.applyEntry(context.Background(), &v1.MetadataEntry{Section: rgwlog.SectionBucketInstance, Name: "b:inst.1",
			Op: v1.MetadataOp_METADATA_OP_PUT, Blob: []byte(`{}`)})
	}()
	select {
	case err := <-done:
		t.Fatalf("the instance was put during a write of its bucket (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	other := a.applyEntry(context.Background(), &v1.MetadataEntry{Section: rgwlog.SectionBucketInstance, Name: "c:inst.1",
		Op: v1.MetadataOp_METADATA_OP_PUT, Blob: []byte(`{}`)})
	require.NoError(t, other, "another bucket's instance goes on")
	release()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the instance was not put after the write")
	}
	require.Equal(t, []string{"put bucket.instance:c:inst.1", "put bucket.instance:b:inst.1"}, a.cfg.Dest.(*recordingDest).calls)
}

// zone-b's ?versioning said Suspended while another applier held the
// bucket suspended for its own null write; by the time the instance was
// read, that applier had put it back (Enabled, the mark gone). Taken for
// the source's own suspension, the write went into the enabled bucket: a
// second "null" entry for good (make chaos seed 2 extended at 213f79a,
// v/k01410: written 84 ms after the other applier's put-back). The
// instance read is the one that decides: not suspended there, the op is
// retried. On the code before it was written.
func TestSuspensionEndedBetweenTheTwoReads(t *testing.T) {
	dst := &fakeDest{}
	admin, _ := newAdminDest(t, dst) // the instance: Enabled, not marked
	dst.versioning = "Suspended"     // what ?versioning said a moment before
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: recordedBucket, Key: "k", VersionId: "null",
		VersionedEpoch: 3, Timestamp: timestamppb.Now()}
	failed := applyWithLeases(t, dst, admin, lockedLeases{}, op)
	require.Len(t, failed, 1)
	require.False(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Contains(t, failed[0].GetError(), "changed while it was read")
	require.Empty(t, dst.calls, "nothing written into the enabled bucket")
}
