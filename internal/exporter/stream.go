package exporter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// stream is one applier's Replicate stream.
type stream struct {
	applier string
	dest    *destination
	out     chan *v1.ReplicateResponse
	window  int // batches in flight per shard
	bytes   *semaphore.Weighted
	maxB    int64
	queued  *semaphore.Weighted // chunk bytes queued for the writer (chunkQueueBytes)
	limiter *rate.Limiter       // nil: unlimited
	done    <-chan struct{}     // closed when the stream ends
	// pull: chunked bodies go out only when the applier asks (BodyRequest).
	pull bool
	// chunkCredit: a body's chunks go out only as the applier grants room
	// for them (BodyRequest.chunks; see bodies.go).
	chunkCredit bool

	log *slog.Logger

	mu   sync.Mutex
	subs map[rgwlog.Unit]*subscription
}

// chunkQueueBytes bounds the object bytes queued for a stream's writer
// (chunks read from the source, not yet handed to gRPC): without it 64
// queued 1 MiB chunks made most of the exporter's 198 MiB peak RSS in the
// large-object benchmark. At least one chunk (chunk_size <= 4 MiB).
const chunkQueueBytes = 4 << 20

// chunkCost is what a chunk message holds of chunkQueueBytes.
func chunkCost(m *v1.ReplicateResponse) int64 {
	if c := m.GetChunk(); c != nil {
		return min(int64(len(c.GetData())), chunkQueueBytes)
	}
	return 0
}

// sent gives back what a chunk held of chunkQueueBytes once the writer
// sent it.
func (s *stream) sent(m *v1.ReplicateResponse) {
	if n := chunkCost(m); n > 0 {
		s.queued.Release(n)
	}
}

// send queues a message for the stream's single writer.
func (s *stream) send(ctx context.Context, m *v1.ReplicateResponse) error {
	if n := chunkCost(m); n > 0 {
		if err := s.queued.Acquire(ctx, n); err != nil {
			return err
		}
	}
	select {
	case s.out <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errStreamClosed
	}
}

var errStreamClosed = errors.New("stream closed")

// sub is the subscription of u on this stream, or nil.
func (s *stream) sub(u rgwlog.Unit) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[u]
}

func newLimiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bps), int(min(bps, 1<<30)))
}

// throttle waits until n payload bytes may go out on this stream (token
// bucket of sync.bandwidth_bytes_per_second, burst one second's worth).
func (s *stream) throttle(ctx context.Context, n int64) error {
	if s.limiter == nil {
		return nil
	}
	for n > 0 {
		chunk := min(n, int64(s.limiter.Burst()))
		if err := s.limiter.WaitN(ctx, int(chunk)); err != nil {
			return err
		}
		n -= chunk
	}
	return nil
}

// subscription is one shard served on one stream.
type subscription struct {
	unit   rgwlog.Unit
	gen    uint64 // Subscribe.generation
	st     *stream
	acks   chan *v1.Ack
	bodies chan *v1.BodyRequest // pull streams: the applier's answers to chunked ops
	credit *bodyCredit          // chunk-credit streams: room for the body being sent
	cancel context.CancelFunc
	done   chan struct{}
}

// Replicate implements the stream: the handshake (Hello, Welcome), then two
// pumps (the stream's single writer, and its reader) around one dispatch
// loop for subscriptions, acks and body requests.
func (e *Exporter) Replicate(ss v1.ReplicationService_ReplicateServer) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()

	st, err := e.handshake(ctx, ss)
	if err != nil {
		return err
	}
	defer e.closeStream(st)
	if err := ss.Send(&v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Welcome{Welcome: &v1.Welcome{
		ExporterId:         e.cfg.ID,
		Period:             e.period,
		MetadataShards:     uint32(e.mdShards),
		DataShards:         uint32(e.dataShards),
		MaxInflightBatches: uint32(st.window),
		MaxInflightBytes:   uint64(st.maxB),
		BodiesOnRequest:    st.pull,
		ChunkCredit:        st.chunkCredit,
	}}}); err != nil {
		return err
	}

	sendErr := wire.Send(ctx, st.out, ss.Send, st.sent, cancel)
	recv, recvErr := wire.Receive(ctx, ss.Recv)
	draining := e.draining
	for {
		var msg *v1.ReplicateRequest
		select {
		case err := <-recvErr:
			cancel()
			serr := <-sendErr
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return serr
			}
			return err
		case <-draining:
			draining = nil // once
			go e.endWhenDrained(st, cancel)
			continue
		case <-ctx.Done():
			if e.isDraining() {
				<-sendErr
				return status.Error(codes.Unavailable, "exporter shutting down: stream drained")
			}
			return ctx.Err()
		case msg = <-recv:
		}
		if err := e.dispatch(ctx, st, msg); err != nil {
			return err
		}
	}
}

// handshake reads the applier's Hello, makes sure the destination has its
// bounds, and opens the stream with the window both sides allow (the
// smaller of each). The caller sends Welcome and closes the stream.
func (e *Exporter) handshake(ctx context.Context, ss v1.ReplicationService_ReplicateServer) (*stream, error) {
	first, err := ss.Recv()
	if err != nil {
		return nil, err
	}
	hello := first.GetHello()
	if hello == nil {
		return nil, status.Error(codes.InvalidArgument, "the first message on Replicate must be Hello")
	}
	if hello.GetDestination() == "" || hello.GetApplierId() == "" {
		return nil, status.Error(codes.InvalidArgument, "Hello needs destination and applier_id")
	}
	d := e.destination(hello.GetDestination())
	if err := e.ensureInitialised(ctx, d); err != nil {
		e.log.Error("initialise destination", "destination", d.name, "err", err)
		return nil, status.Errorf(codes.Unavailable, "initialise destination %s: %v", d.name, err)
	}

	window := e.cfg.MaxInflightBatches
	if w := int(hello.GetMaxInflightBatches()); w > 0 && w < window {
		window = w
	}
	maxB := e.cfg.MaxInflightBytes
	if b := int64(hello.GetMaxInflightBytes()); b > 0 && b < maxB {
		maxB = b
	}
	st := &stream{
		applier:     hello.GetApplierId(),
		dest:        d,
		out:         make(chan *v1.ReplicateResponse, 64),
		window:      window,
		bytes:       semaphore.NewWeighted(maxB),
		maxB:        maxB,
		queued:      semaphore.NewWeighted(chunkQueueBytes),
		limiter:     newLimiter(e.cfg.BandwidthBytesPerSecond),
		done:        ctx.Done(),
		pull:        hello.GetBodiesOnRequest(),
		chunkCredit: hello.GetBodiesOnRequest() && hello.GetChunkCredit() > 0,
		subs:        map[rgwlog.Unit]*subscription{},
		log:         e.log.With("destination", d.name, "applier", hello.GetApplierId()),
	}
	d.mu.Lock()
	d.appliers[st.applier]++
	d.mu.Unlock()
	e.cfg.Metrics.streams.Inc()
	st.log.Info("applier connected", "window", window, "max_inflight_bytes", maxB)
	return st, nil
}

// closeStream ends the stream's subscriptions and forgets its applier.
func (e *Exporter) closeStream(st *stream) {
	e.dropStream(st)
	d := st.dest
	d.mu.Lock()
	if d.appliers[st.applier]--; d.appliers[st.applier] <= 0 {
		delete(d.appliers, st.applier)
	}
	d.mu.Unlock()
	e.cfg.Metrics.streams.Dec()
	st.log.Info("applier disconnected")
}

// dispatch hands one applier message to the shard it names. An ack or a
// body request of an earlier subscription of the shard, or of a shard not
// (or no longer) subscribed on this stream, is dropped: the shard's next
// holder gets the batch again.
func (e *Exporter) dispatch(ctx context.Context, st *stream, msg *v1.ReplicateRequest) error {
	switch m := msg.GetMsg().(type) {
	case *v1.ReplicateRequest_Subscribe:
		e.subscribe(ctx, st, m.Subscribe)
	case *v1.ReplicateRequest_Unsubscribe:
		e.unsubscribe(st, wire.Unit(m.Unsubscribe.GetShard()), m.Unsubscribe.GetReason())
	case *v1.ReplicateRequest_Ack:
		u := wire.Unit(m.Ack.GetShard())
		sub := st.sub(u)
		if sub == nil || m.Ack.GetGeneration() != sub.gen {
			st.log.Debug("ack of a shard not subscribed on this stream (or of an earlier subscription), ignored",
				"shard", u.String(), "seq", m.Ack.GetSeq())
			return nil
		}
		select {
		case sub.acks <- m.Ack:
		case <-sub.done:
		case <-ctx.Done():
		}
	case *v1.ReplicateRequest_BodyRequest:
		sub := st.sub(wire.Unit(m.BodyRequest.GetShard()))
		if sub == nil || m.BodyRequest.GetGeneration() != sub.gen {
			return nil
		}
		if st.chunkCredit && !sub.credit.grant(m.BodyRequest) {
			return nil // more room for the body being sent: never waits
		}
		select {
		case sub.bodies <- m.BodyRequest:
		case <-sub.done:
		case <-ctx.Done():
		}
	default:
		return status.Error(codes.InvalidArgument, "unexpected message on Replicate")
	}
	return nil
}

// endWhenDrained ends a draining stream once every subscription on it has
// nothing in flight (its worker returned), or after DrainTimeout.
func (e *Exporter) endWhenDrained(st *stream, cancel context.CancelFunc) {
	st.mu.Lock()
	subs := make([]*subscription, 0, len(st.subs))
	for _, s := range st.subs {
		subs = append(subs, s)
	}
	st.mu.Unlock()
	timeout := time.After(e.cfg.DrainTimeout)
	for _, s := range subs {
		select {
		case <-s.done:
		case <-timeout:
			e.log.Warn("drain timed out; unacked batches will be sent again", "applier", st.applier)
			cancel()
			return
		}
	}
	e.log.Info("stream drained", "applier", st.applier, "destination", st.dest.name)
	cancel()
}

func (e *Exporter) validUnit(u rgwlog.Unit) bool {
	switch u.Log {
	case rgwlog.LogMetadata:
		return int(u.Shard) < e.mdShards
	case rgwlog.LogMetadataFull:
		return u.Shard == 0
	case rgwlog.LogData:
		return int(u.Shard) < e.dataShards
	}
	return false
}

// subscribe starts serving a shard on st. A shard is served on one stream
// at a time: a newer subscription (the lease moved) revokes the older one,
// whose acks are refused from then on.
func (e *Exporter) subscribe(ctx context.Context, st *stream, req *v1.Subscribe) {
	u := wire.Unit(req.GetShard())
	if !e.validUnit(u) {
		_ = st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Revoke{Revoke: &v1.Revoke{
			Shard: wire.Ref(u), Reason: "no such shard on this exporter"}}})
		return
	}
	d := st.dest
	d.mu.Lock()
	old := d.subs[u]
	d.mu.Unlock()
	if old != nil {
		if old.st == st && old.gen == req.GetGeneration() {
			return // already served here; a renewal
		}
		e.log.Warn("shard subscribed by another applier: revoking the old subscription",
			"destination", d.name, "shard", u.String(), "old", old.st.applier, "new", st.applier)
		e.stopSub(old, "subscribed by "+st.applier)
	}
	sctx, cancel := context.WithCancel(ctx)
	sub := &subscription{unit: u, gen: req.GetGeneration(), st: st, acks: make(chan *v1.Ack, st.window+1), bodies: make(chan *v1.BodyRequest, 16), credit: newBodyCredit(), cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	d.subs[u] = sub
	d.mu.Unlock()
	st.mu.Lock()
	st.subs[u] = sub
	st.mu.Unlock()
	stats := d.stat(u)
	stats.update(func(s *shardStats) {
		s.holder = st.applier
		s.leaseExpires = req.GetLeaseExpires().AsTime()
		s.lastErr = ""
	})
	go func() {
		defer close(sub.done)
		w := &worker{e: e, d: d, sub: sub, stats: stats, log: e.log.With("destination", d.name, "shard", u.String(), "applier", st.applier)}
		if err := w.run(sctx); err != nil && sctx.Err() == nil {
			w.log.Error("shard worker stopped", "err", err)
			stats.update(func(s *shardStats) { s.lastErr = err.Error() })
			_ = st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Revoke{Revoke: &v1.Revoke{
				Shard: wire.Ref(u), Reason: err.Error()}}})
			e.detach(sub)
		}
	}()
}

// stopSub ends a subscription and tells its stream.
func (e *Exporter) stopSub(sub *subscription, reason string) {
	e.detach(sub)
	sub.cancel()
	<-sub.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = sub.st.send(ctx, &v1.ReplicateResponse{Msg: &v1.ReplicateResponse_Revoke{Revoke: &v1.Revoke{
		Shard: wire.Ref(sub.unit), Reason: reason}}})
}

// detach removes a subscription from its stream and destination.
func (e *Exporter) detach(sub *subscription) {
	d := sub.st.dest
	d.mu.Lock()
	if d.subs[sub.unit] == sub {
		delete(d.subs, sub.unit)
		if s := d.stats[sub.unit]; s != nil {
			s.update(func(s *shardStats) { s.holder = ""; s.inflight = 0; s.leaseExpires = time.Time{} })
		}
	}
	d.mu.Unlock()
	sub.st.mu.Lock()
	if sub.st.subs[sub.unit] == sub {
		delete(sub.st.subs, sub.unit)
	}
	sub.st.mu.Unlock()
}

func (e *Exporter) unsubscribe(st *stream, u rgwlog.Unit, reason string) {
	sub := st.sub(u)
	if sub == nil {
		return
	}
	e.log.Info("applier unsubscribed", "destination", st.dest.name, "shard", u.String(), "applier", st.applier, "reason", reason)
	e.detach(sub)
	sub.cancel()
	<-sub.done
}

func (e *Exporter) dropStream(st *stream) {
	st.mu.Lock()
	subs := make([]*subscription, 0, len(st.subs))
	for _, s := range st.subs {
		subs = append(subs, s)
	}
	st.mu.Unlock()
	for _, s := range subs {
		e.detach(s)
		s.cancel()
		<-s.done
	}
}
