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

// A chunked body that zone-b stops reading (a PUT that hangs) must hold
// only its own shard. The session has one receive loop for every shard of
// the stream, and it handed each chunk to the shard's queue, waiting when
// the queue was full: the exporter streamed the hung body's chunks, the
// queue filled, the loop waited for good, and no other shard got a batch
// (found by reading, issue #15 item 4). With chunk credit the exporter
// sends only what the queue has room for. The fake exporter here streams
// as the real one does: every chunk at once to an applier that asks for
// no credit, only the granted ones to one that does.
func TestStuckBodyDoesNotHoldOtherShards(t *testing.T) {
	stuck := rgwlog.Unit{Log: rgwlog.LogData, Shard: 0}
	other := rgwlog.Unit{Log: rgwlog.LogData, Shard: 1}
	f := &fakeLeases{held: map[rgwlog.Unit]time.Time{}}
	dst := &fakeDest{hang: map[string]bool{"big": true}}
	fx := &fakeExporter{welcome: func(h *v1.Hello) *v1.Welcome {
		return &v1.Welcome{ExporterId: "x", DataShards: 2, MaxInflightBatches: 4,
			BodiesOnRequest: h.GetBodiesOnRequest(), ChunkCredit: h.GetChunkCredit() > 0}
	}}
	a, fx := startSessionWith(t, f, fx, func(c *Config) { c.Objects = dst })
	// The events first, then the leases held: held before the events, a
	// session's reconcile could subscribe a shard, and the event's new
	// acquisition then subscribe it again with a new generation, while the
	// test kept the first one and its batch was dropped (1 run in ~30).
	a.LeaseChanged(lease.Event{Unit: stuck, Held: true})
	a.LeaseChanged(lease.Event{Unit: other, Held: true})
	f.set(stuck, time.Now().Add(time.Hour))
	f.set(other, time.Now().Add(time.Hour))

	gens := map[rgwlog.Unit]uint64{}
	for len(gens) < 2 {
		m := nextSub(t, fx, 5*time.Second)
		require.NotNil(t, m, "both shards are subscribed")
		if s := m.GetSubscribe(); s != nil {
			gens[wire.Unit(s.GetShard())] = s.GetGeneration()
		}
	}
	const chunk, chunks = 1 << 10, 64
	deadline := time.After(5 * time.Second)
	send := func(m *v1.ReplicateResponse) {
		select {
		case fx.out <- m:
		case <-deadline:
			t.Fatal("the fake exporter could not send: the applier stopped reading its stream")
		}
	}
	send(&v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Batch{Batch: &v1.Batch{
		Shard: wire.Ref(stuck), Generation: gens[stuck], Seq: 1, ThroughMarker: "1", Objects: []*v1.ObjectOp{{
			Index: 0, Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: "big", Owner: "u", Chunked: true,
			Attrs: &v1.ObjectAttrs{Size: chunk * chunks, Etag: "e"}}}}}})

	sent, credit := 0, 0
	sendChunks := func() {
		for ; sent < chunks && (credit > 0 || fx.hello.Load().GetChunkCredit() == 0); sent++ {
			credit--
			send(&v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Chunk{Chunk: &v1.ObjectChunk{
				Shard: wire.Ref(stuck), Generation: gens[stuck], Seq: 1, Index: 0, Offset: int64(sent * chunk),
				Data: make([]byte, chunk), Last: sent == chunks-1}}})
		}
	}
	otherSent := false
	for {
		select {
		case m := <-fx.msgs:
			if r := m.GetBodyRequest(); r != nil {
				require.Equal(t, wire.Ref(stuck).String(), r.GetShard().String())
				require.False(t, r.GetSkip())
				credit += int(r.GetChunks())
				sendChunks()
				if !otherSent {
					otherSent = true
					send(&v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Batch{Batch: &v1.Batch{
						Shard: wire.Ref(other), Generation: gens[other], Seq: 1, ThroughMarker: "1", Objects: []*v1.ObjectOp{{
							Index: 0, Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: "small", Owner: "u",
							Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")}}}}})
				}
			}
			if ack := m.GetAck(); ack != nil {
				require.Equal(t, wire.Ref(other).String(), ack.GetShard().String(), "the stuck shard cannot be acked")
				require.Empty(t, ack.GetFailed())
				require.Equal(t, []string{"hung big", "put small "}, dst.callsOf(""))
				require.Less(t, sent, chunks, "the hung body was not sent whole")
				return
			}
		case <-deadline:
			t.Fatalf("the other shard's batch was not applied while one body hangs (%d chunks of the hung body sent)", sent)
		}
	}
}
