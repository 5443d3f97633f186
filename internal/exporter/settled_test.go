package exporter

import (
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMetadataSettled(t *testing.T) {
	var m mdSettled
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	require.False(t, m.settled(2, t0), "nothing read yet")
	m.record(0, t0.Add(time.Minute))
	require.False(t, m.settled(2, t0), "shard 1 not read empty yet")
	m.record(1, t0.Add(3*time.Second))
	require.False(t, m.settled(2, t0), "within the margin")
	m.record(1, t0.Add(time.Minute))
	require.True(t, m.settled(2, t0))
	m.record(1, t0) // an older reading does not move it back
	require.True(t, m.settled(2, t0))
	require.False(t, m.settled(2, t0.Add(time.Minute)), "a later op: not settled yet")
	require.False(t, m.settled(0, t0))
	require.False(t, m.settled(2, time.Time{}), "an op without a time is never settled")
}

// The metadata shards record how far they are applied: a shard read empty
// with nothing in flight and nothing failed is applied up to that read; a
// failed change keeps its shard (and so the destination) unsettled.
func TestMetadataShardsRecordSettled(t *testing.T) {
	src := newFakeSource()
	src.put(1, "user", "alice")
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"))
	a := r.dial(t, "a1")
	a.subscribe(fullUnit)
	for {
		b := a.next()
		a.ack(b)
		if !b.GetMore() {
			break
		}
	}
	d := r.exp.destination("zone-b")
	before := time.Now().Add(-settledMargin - time.Second)
	require.False(t, d.settled.settled(4, before), "no mdlog shard read yet")
	for i := range uint32(4) {
		a.subscribe(mdUnit(i))
	}
	require.Eventually(t, func() bool { return d.settled.settled(4, before) }, 5*time.Second, 5*time.Millisecond,
		"every shard read empty with nothing in flight")

	// A change that fails on the destination: its shard stays behind it.
	src.put(2, "user", "bob")
	b := a.next()
	require.Equal(t, []string{"user:bob:put"}, names(b))
	a.ack(b, &v1.RetryItem{Section: "user", Name: "bob", Error: "503", Timestamp: timestamppb.Now()})
	after := time.Now()
	time.Sleep(100 * time.Millisecond)
	require.False(t, d.settled.settled(4, after.Add(-settledMargin)), "shard 2 holds a failed change")
	b = a.next() // the retry
	a.ack(b)
	require.Eventually(t, func() bool { return d.settled.settled(4, after.Add(-settledMargin)) }, 5*time.Second, 5*time.Millisecond)
}
