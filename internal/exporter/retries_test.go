package exporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// A removal of the null version that fails on zone-b stays that removal in
// its retry, beside the retry of the key's later null version, and goes
// before it: the source emptied the key with it and numbered the later
// ops from 2 again (FACTS.md section 30). Before, the two became one retry
// of "null" (epoch 2), resent as the source's null version of now: zone-b
// kept its old null version and epoch, and the source's next versions were
// not current there.
func TestNullRemovalRetryStaysARemoval(t *testing.T) {
	e := &Exporter{cfg: Config{RetryMin: time.Second, RetryMax: time.Minute}}
	bs, err := rgwlog.ParseBucketShard("b:inst.1:0")
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	const (
		del = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		put = v1.ObjectOpKind_OBJECT_OP_KIND_PUT
	)
	item := func(kind v1.ObjectOpKind, epoch uint64, ts time.Time, msg string) *v1.RetryItem {
		return &v1.RetryItem{Section: "object", Name: "k", Key: "k", VersionId: "null", Kind: kind, VersionedEpoch: epoch,
			Timestamp: timestamppb.New(ts), Error: msg}
	}
	// One batch: the removal (epoch 6) fails on zone-b, the applier holds
	// the null version written after it (epoch 2, the key emptied).
	removal := item(del, 6, t0.Add(time.Second), "destination: 503")
	later := item(put, 2, t0.Add(2*time.Second), rgwlog.HeldPrefix+"an earlier op of this key failed")
	rs := addRetries(nil, []*v1.RetryItem{removal, later}, e, map[string]uint64{"k\x00null": 2})
	require.Len(t, rs, 2, "the removal and the later null version are two retries")

	var o keyOrder
	ready := o.ready(bs.Key, rs, time.Now().Add(time.Hour)) // NextAttempt is from the clock
	require.Len(t, ready, 2)
	assert.True(t, ready[0].Removal, "the removal goes first, though its epoch is the higher")
	assert.Equal(t, uint64(6), ready[0].Epoch)
	assert.False(t, ready[1].Removal)
	refs := retryObjRefs(bs, ready)
	assert.Equal(t, del, refs[0].kind, "sent as the removal it was, not reconciled with the source's null version of now")
	assert.Equal(t, uint64(6), refs[0].epoch)
	assert.Equal(t, v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED, refs[1].kind, "the later null version is the source's of now")

	// Resent: the removal fails again and stays one retry (the same op);
	// its failed item is told apart from the null version's.
	rs = addRetries(rs, []*v1.RetryItem{item(del, 6, t0.Add(time.Second), "destination: 503")}, e, nil)
	require.Len(t, rs, 2)
	assert.Equal(t, retryID(bs.Key, ready[0]), failedID(bs.Key, removal))
	assert.NotEqual(t, retryID(bs.Key, ready[1]), failedID(bs.Key, removal))
	assert.Equal(t, retryID(bs.Key, ready[1]), failedID(bs.Key, later))

	// A second removal of the key's null version (of the one written
	// after the first, epoch 2, the key emptied again) is a retry of its
	// own, after both.
	second := item(del, 3, t0.Add(3*time.Second), rgwlog.HeldPrefix+"an earlier op of this key failed")
	rs = addRetries(rs, []*v1.RetryItem{second}, e, nil)
	require.Len(t, rs, 3)
	ready = o.ready(bs.Key, rs, time.Now().Add(time.Hour))
	require.Len(t, ready, 3)
	assert.Equal(t, []uint64{6, 2, 3}, []uint64{ready[0].Epoch, ready[1].Epoch, ready[2].Epoch})
	assert.Equal(t, []bool{true, false, true}, []bool{ready[0].Removal, ready[1].Removal, ready[2].Removal})
}

// A retry of the null version kept from before a removal of it (an older
// write that failed), joined by a null version written after the removal,
// stands for the later one: it goes after the removal, not before it by
// its first time.
func TestNullRetryJoinedAfterARemovalGoesAfterIt(t *testing.T) {
	e := &Exporter{cfg: Config{RetryMin: time.Second, RetryMax: time.Minute}}
	t0 := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	rs := []checkpoint.Retry{
		{Section: "object", Name: "k", VersionID: "null", Epoch: 4, Error: "destination: 503", Timestamp: t0},
		{Section: "object", Name: "k", VersionID: "null", Epoch: 6, Removal: true, Error: "held: x", Timestamp: t0.Add(time.Second)},
	}
	rs = addRetries(rs, []*v1.RetryItem{{Section: "object", Name: "k", Key: "k", VersionId: "null",
		Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, VersionedEpoch: 2, Timestamp: timestamppb.New(t0.Add(2 * time.Second)),
		Error: "held: y"}}, e, nil)
	require.Len(t, rs, 2)
	var o keyOrder
	ready := o.ready("b:inst.1:0", rs, time.Now().Add(time.Hour))
	require.Len(t, ready, 2)
	assert.True(t, ready[0].Removal)
	assert.Equal(t, uint64(2), ready[1].Epoch)
}
