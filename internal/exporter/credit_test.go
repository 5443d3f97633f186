package exporter

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/semaphore"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// A worker that holds window bytes never waits for more; one that holds
// none waits, and is served once a holder gives bytes back.
func TestCreditHolderTriesWaiterWaits(t *testing.T) {
	win := semaphore.NewWeighted(100)
	a, b, c := newCredit(win, 100), newCredit(win, 100), newCredit(win, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	n, err := a.take(ctx, 60)
	require.NoError(t, err)
	require.Equal(t, int64(60), n)
	_, err = b.take(ctx, 40)
	require.NoError(t, err)
	_, err = a.take(ctx, 10)
	require.ErrorIs(t, err, errNoCredit, "a holder must not wait for more")

	waited := make(chan struct{})
	c.onWait = func() { close(waited) }
	got := make(chan error, 1)
	go func() { _, err := c.take(ctx, 50); got <- err }()
	<-waited
	select {
	case err := <-got:
		t.Fatalf("took 50 bytes of a full window: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	a.give(60)
	require.NoError(t, <-got)
	require.Equal(t, int64(50), c.held)

	n, err = c.take(ctx, 1000)
	require.ErrorIs(t, err, errNoCredit)
	require.Zero(t, n)
	zero, err := b.take(ctx, 0)
	require.NoError(t, err, "nothing to take never waits (nor queues behind waiters)")
	require.Zero(t, zero)
	b.giveAll()
	c.giveAll()
	require.True(t, win.TryAcquire(100), "every byte given back")
}

// Many shards share a stream's byte window that holds two batches: each
// shard sends a batch, then needs more bytes while the others hold the
// rest. Before the credit rule each blocked acquiring bytes while holding
// bytes only its own acks (which it no longer read) could free, and the
// stream stopped for good (issue #15, seen with 88 data shards). Every
// shard must reach its source head.
func TestShardsSharingTheWindowDoNotDeadlock(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) {
		c.MaxInflightBytes = 1000 // a batch of 3 users is ~400 bytes
	})
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	for shard := range 4 {
		for i := range 30 {
			src.put(shard, "user", fmt.Sprintf("user-%d-%02d", shard, i))
		}
		a.subscribe(mdUnit(uint32(shard)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := a.s.Recv()
			if err != nil {
				return
			}
			if b := m.GetBatch(); b != nil {
				_ = a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Ack{Ack: &v1.Ack{
					Shard: b.GetShard(), Seq: b.GetSeq(), ThroughMarker: b.GetThroughMarker()}}})
			}
		}
	}()
	for shard := range 4 {
		head := src.shards[shard][len(src.shards[shard])-1].ID
		u := mdUnit(uint32(shard))
		require.Eventually(t, func() bool {
			b, ok, err := r.store.Get(checkpoint.UnitKey("zone-b", u))
			return err == nil && ok && b.Marker == head
		}, 10*time.Second, 5*time.Millisecond, "shard %d did not reach its head: the stream's window deadlocked", shard)
	}
	a.cancel()
	<-done
}

// A subscription that ends with batches in flight (its lease moved) gives
// their bytes back to the stream: before, they stayed taken for the
// stream's life, and after enough lease moves no shard of the stream could
// send again.
func TestEndedSubscriptionGivesItsBytesBack(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.MaxInflightBytes = 1000 })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	for i := range 9 {
		src.put(1, "user", fmt.Sprintf("one-%d", i))
		src.put(2, "user", fmt.Sprintf("two-%d", i))
	}
	a.subscribe(mdUnit(1))
	b1, b2 := a.next(), a.next() // two batches, most of the window, not acked
	require.Equal(t, mdUnit(1), wire.Unit(b1.GetShard()))
	require.Equal(t, mdUnit(1), wire.Unit(b2.GetShard()))
	require.NoError(t, a.s.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Unsubscribe{Unsubscribe: &v1.Unsubscribe{
		Shard: wire.Ref(mdUnit(1)), Reason: "lease lost"}}}))
	a.subscribe(mdUnit(2))
	got := make(chan *v1.Batch, 1)
	go func() {
		for {
			m, err := a.s.Recv()
			if err != nil {
				close(got)
				return
			}
			if b := m.GetBatch(); b != nil && wire.Unit(b.GetShard()) == mdUnit(2) {
				got <- b
				return
			}
		}
	}()
	select {
	case b, ok := <-got:
		require.True(t, ok, "stream ended")
		require.NotEmpty(t, b.GetEntries())
	case <-time.After(5 * time.Second):
		t.Fatal("shard 2 got no batch: the ended subscription kept its bytes of the window")
	}
}

// A shard with work pending and no progress (a fake applier that never
// acks) is stalled after StallAfter: counted in the metric, shown in
// status with what it waits for; an ack clears it.
func TestStalledShardIsShown(t *testing.T) {
	src := newFakeSource()
	r := newRig(t, src, filepath.Join(t.TempDir(), "b.db"), func(c *Config) { c.StallAfter = time.Second })
	a := r.dial(t, "a1")
	a.fullSync(t, r)
	src.put(1, "user", "stuck")
	a.subscribe(mdUnit(1))
	b := a.next() // never acked, for now

	stalled := func() (*v1.ShardStatus, uint32) {
		st, err := r.exp.Status(context.Background(), &v1.StatusRequest{Destination: "zone-b"})
		require.NoError(t, err)
		ds := st.GetDestinations()[0]
		for _, ss := range ds.GetShards() {
			if wire.Unit(ss.GetShard()) == mdUnit(1) {
				return ss, ds.GetShardsStalled()
			}
		}
		t.Fatal("shard 1 not in status")
		return nil, 0
	}
	ss, n := stalled()
	require.Zero(t, n, "not stalled before StallAfter")
	require.Nil(t, ss.GetStalledSince())
	require.Contains(t, ss.GetWaitingFor(), "acks of 1 batches in flight")

	require.Eventually(t, func() bool {
		ss, n := stalled()
		return n == 1 && ss.GetStalledSince() != nil &&
			testutil.ToFloat64(r.exp.cfg.Metrics.shardsStalled.WithLabelValues("zone-b")) == 1
	}, 5*time.Second, 10*time.Millisecond, "a shard waiting for acks for longer than StallAfter is stalled")
	ss, _ = stalled()
	require.Contains(t, ss.GetWaitingFor(), "acks of 1 batches in flight")

	a.ack(b)
	waitBound(t, r.store, mdUnit(1), func(b checkpoint.Bound) bool { return b.Marker == src.shards[1][len(src.shards[1])-1].ID })
	require.Eventually(t, func() bool {
		ss, n := stalled()
		return n == 0 && ss.GetStalledSince() == nil && ss.GetWaitingFor() == "" &&
			testutil.ToFloat64(r.exp.cfg.Metrics.shardsStalled.WithLabelValues("zone-b")) == 0
	}, 5*time.Second, 10*time.Millisecond, "an ack ends the stall")
}
