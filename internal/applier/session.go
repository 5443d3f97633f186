package applier

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// session is one Replicate stream.
type session struct {
	a       *Applier
	out     chan *v1.ReplicateRequest
	workers map[rgwlog.Unit]*shardWorker
	// revoked: units the exporter revoked, with the acquisition then; not
	// subscribed again until the lease is released or taken anew.
	revoked map[rgwlog.Unit]uint64
	gen     uint64 // last Subscribe.generation used on this stream
	ctx     context.Context
	wg      sync.WaitGroup
	// draining is closed at shutdown: workers take no new batch.
	draining chan struct{}
	// pull: the exporter sends a chunked body only when asked (BodyRequest).
	pull bool
	// chunkCredit: and only as many of its chunks as a worker's queue has
	// room for (BodyRequest.chunks), so that handing a chunk to a worker
	// never blocks the receive loop every shard of the stream shares.
	chunkCredit bool
	// window: a worker's batch queue holds at least the batches per shard
	// the exporter may have in flight, so handing one over never waits.
	window int
}

// chunkQueue is the chunks a shard worker holds queued; with chunk credit
// it is also all the exporter may send of a body before the worker takes
// some (TestStuckBodyDoesNotHoldOtherShards).
const chunkQueue = 8

type shardWorker struct {
	unit   rgwlog.Unit
	gen    uint64
	acq    uint64 // the lease's acquisition it runs under (Applier.acquired)
	in     chan *v1.Batch
	chunks chan *v1.ObjectChunk
	cancel context.CancelFunc
	done   chan struct{}
}

func (a *Applier) runSession(ctx context.Context) error {
	// The session outlives ctx by the drain (see drain), so that acks of
	// batches finished at shutdown still reach the exporter.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-sctx.Done():
		case <-ctx.Done():
			// Bounded: a session that does not drain in time is cut.
			select {
			case <-sctx.Done():
			case <-time.After(a.cfg.DrainTimeout + time.Second):
				cancel()
			}
		}
	}()
	stream, w, err := a.handshake(sctx)
	if err != nil {
		return err
	}

	s := &session{a: a, out: make(chan *v1.ReplicateRequest, 256), workers: map[rgwlog.Unit]*shardWorker{}, revoked: map[rgwlog.Unit]uint64{}, ctx: sctx,
		draining: make(chan struct{}), pull: w.GetBodiesOnRequest(), chunkCredit: w.GetBodiesOnRequest() && w.GetChunkCredit(),
		window: max(int(w.GetMaxInflightBatches()), 64)}
	defer s.stopAll()

	sendErr := wire.Send(sctx, s.out, stream.Send, nil, cancel)
	recv, recvErr := wire.Receive(sctx, stream.Recv)

	// Subscribe to what is held now, and keep up with the leases.
	s.reconcile()
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.drain(stream, sendErr)
			return nil
		case err := <-sendErr:
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			return nil
		case err := <-recvErr:
			if sctx.Err() != nil {
				return sctx.Err()
			}
			return fmt.Errorf("receive: %w", err)
		case <-a.leaseNote:
			s.reconcile()
		case <-tick.C:
			s.reconcile()
		case m := <-recv:
			if !s.handle(sctx, m) {
				return nil
			}
		}
	}
}

// handle acts on one exporter message: a batch or chunk goes to its
// shard's worker, a revoke stops the worker and gives the lease back, a
// shard state is shown in status. false when the session ended meanwhile.
func (s *session) handle(ctx context.Context, m *v1.ReplicateResponse) bool {
	a := s.a
	switch m := m.GetMsg().(type) {
	case *v1.ReplicateResponse_Batch:
		if wk := s.worker(m.Batch.GetShard(), m.Batch.GetGeneration()); wk != nil && !handOff(ctx, wk, wk.in, m.Batch) {
			return false
		}
	case *v1.ReplicateResponse_Chunk:
		if wk := s.worker(m.Chunk.GetShard(), m.Chunk.GetGeneration()); wk != nil && !handOff(ctx, wk, wk.chunks, m.Chunk) {
			return false
		}
	case *v1.ReplicateResponse_Revoke:
		u := wire.Unit(m.Revoke.GetShard())
		a.log.Warn("exporter revoked shard", "shard", u.String(), "reason", m.Revoke.GetReason())
		s.stopWorker(u)
		a.mu.Lock()
		s.revoked[u] = a.acquired[u]
		a.mu.Unlock()
		a.leases.Release(u)
	case *v1.ReplicateResponse_ShardState:
		u := wire.Unit(m.ShardState.GetShard())
		a.shardUpdate(u, func(st *shardState) { st.phase = m.ShardState.GetPhase() })
	}
	return true
}

// handshake opens the stream, says Hello, takes the exporter's Welcome and
// starts the leases of the units it names. The applier shows as connected.
func (a *Applier) handshake(ctx context.Context) (v1.ReplicationService_ReplicateClient, *v1.Welcome, error) {
	client := v1.NewReplicationServiceClient(a.cfg.Conn)
	stream, err := client.Replicate(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open Replicate stream: %w", err)
	}
	if err := stream.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Hello{Hello: &v1.Hello{
		Destination: a.cfg.Destination, ApplierId: a.cfg.ID, MaxInflightBatches: a.cfg.MaxInflightBatches,
		BodiesOnRequest: true, ChunkCredit: chunkQueue,
	}}}); err != nil {
		return nil, nil, fmt.Errorf("send Hello: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, fmt.Errorf("wait for Welcome: %w", err)
	}
	w := first.GetWelcome()
	if w == nil {
		return nil, nil, errors.New("exporter did not answer Hello with Welcome")
	}
	a.log.Info("connected to exporter", "exporter", w.GetExporterId(), "period", w.GetPeriod(),
		"metadata_shards", w.GetMetadataShards(), "window", w.GetMaxInflightBatches(), "chunk_credit", w.GetChunkCredit())
	dataShards := int(w.GetDataShards())
	if a.cfg.Objects == nil {
		dataShards = 0
	}
	if err := a.startLeases(a.leaseCtx, int(w.GetMetadataShards()), dataShards); err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	a.connected = true
	a.lastErr = ""
	a.mu.Unlock()

	return stream, w, nil
}

// worker is the live worker of shard for subscription generation gen, or
// nil: a message for a shard unsubscribed meanwhile, or of an earlier
// subscription, is dropped (the exporter sends it again to the holder).
func (s *session) worker(shard *v1.ShardRef, gen uint64) *shardWorker {
	wk := s.workers[wire.Unit(shard)]
	if wk == nil || gen != wk.gen {
		return nil
	}
	return wk
}

// handOff gives v to wk on ch (dropped if wk stops first); false when the
// session ends.
func handOff[T any](ctx context.Context, wk *shardWorker, ch chan<- T, v T) bool {
	select {
	case ch <- v:
	case <-wk.done:
	case <-ctx.Done():
		return false
	}
	return true
}

func (s *session) send(ctx context.Context, m *v1.ReplicateRequest) {
	select {
	case s.out <- m:
	case <-ctx.Done():
	}
}

// reconcile makes the subscriptions match the leases: a unit held and
// valid has a live worker started under its current acquisition; any other
// worker is stopped and unsubscribed. A worker that stopped by itself (its
// lease turned invalid mid-batch, or a batch was abandoned) is restarted
// when the lease is held again: the exporter then sends from the bound.
func (s *session) reconcile() {
	select {
	case <-s.draining:
		return
	default:
	}
	held := s.a.leases.Held()
	s.a.mu.Lock()
	acq := make(map[rgwlog.Unit]uint64, len(held))
	for u := range held {
		acq[u] = s.a.acquired[u]
	}
	why := make(map[rgwlog.Unit]string, len(s.workers))
	for u := range s.workers {
		why[u] = s.a.lostWhy[u]
	}
	s.a.mu.Unlock()

	for _, u := range sortedUnits(s.workers) {
		wk := s.workers[u]
		_, ok := held[u]
		switch {
		case !ok:
			reason := why[u]
			if reason == "" {
				reason = "not valid"
			}
			s.unsubscribe(u, "lease lost: "+reason)
		case wk.acq != acq[u]:
			s.unsubscribe(u, "lease lapsed and was taken again")
		case wk.stopped():
			s.unsubscribe(u, "shard worker stopped")
		}
	}
	for u, n := range s.revoked {
		if _, ok := held[u]; !ok || acq[u] != n {
			delete(s.revoked, u) // released, or taken again since
		}
	}
	for _, u := range sortedUnits(held) {
		if _, ok := s.revoked[u]; ok || s.workers[u] != nil {
			continue
		}
		s.subscribe(u, held[u], acq[u])
	}
}

func sortedUnits[V any](m map[rgwlog.Unit]V) []rgwlog.Unit {
	return slices.SortedFunc(maps.Keys(m), rgwlog.Unit.Compare)
}

func (wk *shardWorker) stopped() bool {
	select {
	case <-wk.done:
		return true
	default:
		return false
	}
}

func (s *session) subscribe(u rgwlog.Unit, expires time.Time, acq uint64) {
	if s.workers[u] != nil {
		return
	}
	wctx, cancel := context.WithCancel(s.ctx)
	s.gen++
	wk := &shardWorker{unit: u, gen: s.gen, acq: acq, in: make(chan *v1.Batch, s.window), chunks: make(chan *v1.ObjectChunk, chunkQueue), cancel: cancel, done: make(chan struct{})}
	s.workers[u] = wk
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(wk.done)
		s.a.work(wctx, s, wk)
	}()
	s.send(s.ctx, &v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Subscribe{Subscribe: &v1.Subscribe{
		Shard: wire.Ref(u), LeaseExpires: timestamppb.New(expires), Generation: wk.gen}}})
}

func (s *session) unsubscribe(u rgwlog.Unit, reason string) {
	if s.workers[u] == nil {
		return
	}
	s.stopWorker(u)
	s.send(s.ctx, &v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Unsubscribe{Unsubscribe: &v1.Unsubscribe{
		Shard: wire.Ref(u), Reason: reason}}})
}

func (s *session) stopWorker(u rgwlog.Unit) {
	wk := s.workers[u]
	if wk == nil {
		return
	}
	delete(s.workers, u)
	wk.cancel()
	<-wk.done
}

// drain is the graceful end of a session: workers finish the batch they
// are applying and ack it (taking no new one), the acks are flushed, the
// stream is closed; batches not started are sent again to the next holder.
func (s *session) drain(stream v1.ReplicationService_ReplicateClient, sendErr <-chan error) {
	close(s.draining)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.a.cfg.DrainTimeout):
		s.a.log.Warn("drain timed out; abandoning unfinished batches", "timeout", s.a.cfg.DrainTimeout)
	}
	// Flush queued acks: the sender goroutine owns the stream until out is
	// empty.
	deadline := time.After(time.Second)
	for len(s.out) > 0 {
		select {
		case <-deadline:
			s.a.log.Warn("acks not flushed before shutdown", "left", len(s.out))
			return
		case err := <-sendErr:
			s.a.log.Warn("stream failed while draining", "err", err)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(50 * time.Millisecond) // the last Send may still be on its way
	s.a.log.Info("drained: in-flight batches applied and acked")
}

func (s *session) stopAll() {
	for u := range s.workers {
		s.stopWorker(u)
	}
	s.wg.Wait()
}
