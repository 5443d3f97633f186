package applier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/lease"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// dataSession runs an applier holding data shard 0 with zone-b dst against
// a fake exporter, and returns the shard's subscription generation.
func dataSession(t *testing.T, f *fakeLeases, fx *fakeExporter, dst *fakeDest) (rgwlog.Unit, uint64) {
	t.Helper()
	u := rgwlog.Unit{Log: rgwlog.LogData, Shard: 0}
	fx.welcome = func(h *v1.Hello) *v1.Welcome {
		return &v1.Welcome{ExporterId: "x", DataShards: 1, MaxInflightBatches: 4,
			BodiesOnRequest: h.GetBodiesOnRequest(), ChunkCredit: h.GetChunkCredit() > 0}
	}
	a, _ := startSessionWith(t, f, fx, func(c *Config) { c.Objects = dst })
	a.LeaseChanged(lease.Event{Unit: u, Held: true})
	m := nextSub(t, fx, 5*time.Second)
	require.NotNil(t, m)
	require.NotNil(t, m.GetSubscribe(), "the held shard is subscribed")
	return u, m.GetSubscribe().GetGeneration()
}

func objectBatch(u rgwlog.Unit, gen, seq uint64, key string) *v1.ReplicateResponse {
	return &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Batch{Batch: &v1.Batch{
		Shard: wire.Ref(u), Generation: gen, Seq: seq, ThroughMarker: "1", Objects: []*v1.ObjectOp{{
			Index: 0, Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: key, Owner: "u",
			Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")}}}}}
}

// nextAck waits for the next Ack (nil: none within).
func nextAck(fx *fakeExporter, within time.Duration) *v1.Ack {
	deadline := time.After(within)
	for {
		select {
		case m := <-fx.msgs:
			if a := m.GetAck(); a != nil {
				return a
			}
		case <-deadline:
			return nil
		}
	}
}

// A batch is acked only once zone-b has its writes: the exporter moves the
// bound on the ack, so an ack before the write would skip it after a crash.
func TestAckOnlyAfterApply(t *testing.T) {
	f := &fakeLeases{held: map[rgwlog.Unit]time.Time{}}
	f.set(rgwlog.Unit{Log: rgwlog.LogData, Shard: 0}, time.Now().Add(time.Hour))
	dst := &fakeDest{delay: 400 * time.Millisecond}
	fx := &fakeExporter{}
	u, gen := dataSession(t, f, fx, dst)
	sent := time.Now()
	fx.out <- objectBatch(u, gen, 1, "k")
	ack := nextAck(fx, 5*time.Second)
	require.NotNil(t, ack, "the batch was never acked")
	require.GreaterOrEqual(t, time.Since(sent), dst.delay, "acked before zone-b's write returned")
	require.Equal(t, []string{"put k "}, dst.callsOf("put"))
	require.Empty(t, ack.GetFailed())
	require.Equal(t, uint64(1), ack.GetSeq())
}

// A batch whose lease lapses while zone-b's write hangs is cut and never
// acked: the shard's next holder applies it again (the write is
// idempotent); an ack from a holder that lost the lease could move the
// bound past a write the new holder is making.
func TestLeaseLostMidBatchIsNotAcked(t *testing.T) {
	f := &fakeLeases{held: map[rgwlog.Unit]time.Time{}}
	u := rgwlog.Unit{Log: rgwlog.LogData, Shard: 0}
	f.set(u, time.Now().Add(time.Hour))
	dst := &fakeDest{hang: map[string]bool{"k": true}}
	fx := &fakeExporter{}
	u, gen := dataSession(t, f, fx, dst)
	fx.out <- objectBatch(u, gen, 1, "k")
	require.Eventually(t, func() bool { return len(dst.callsOf("hung k")) == 1 }, 5*time.Second, 10*time.Millisecond)
	f.set(u, time.Now().Add(-time.Second)) // the lease lapses mid-write
	require.Nil(t, nextAck(fx, 2*time.Second), "a batch cut by the lease's end was acked")
}

// A stream that breaks is opened again, with the same applier id, and the
// shards still held are subscribed again on the new stream (the exporter
// sends again from the bound; the generation is the lease's acquisition,
// unchanged while the lease is held).
func TestReconnectSubscribesAgain(t *testing.T) {
	f := &fakeLeases{held: map[rgwlog.Unit]time.Time{}}
	u := rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: 1}
	f.set(u, time.Now().Add(time.Hour))
	fx := &fakeExporter{cut: make(chan struct{})}
	a, fx := startSessionWith(t, f, fx, func(c *Config) { c.ReconnectMin, c.ReconnectMax = 50*time.Millisecond, time.Second })
	a.LeaseChanged(lease.Event{Unit: u, Held: true})
	first := nextSub(t, fx, 5*time.Second)
	require.NotNil(t, first)
	require.NotNil(t, first.GetSubscribe())

	close(fx.cut)
	again := nextSub(t, fx, 10*time.Second)
	require.NotNil(t, again, "not subscribed again after the stream broke")
	require.NotNil(t, again.GetSubscribe())
	require.Equal(t, wire.Ref(u).String(), again.GetSubscribe().GetShard().String())
	require.EqualValues(t, 2, fx.hellos.Load(), "one new session")
	require.Equal(t, "a1", fx.hello.Load().GetApplierId())
	require.Equal(t, first.GetSubscribe().GetGeneration(), again.GetSubscribe().GetGeneration())
}
