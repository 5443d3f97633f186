package exporter

// The shard engine: the one loop of every kind of shard. It sends batches
// while the shard's window has room, commits acks in order, backs off when
// the source fails, and polls with a growing idle wait when there is
// nothing new. What a batch is, where it is read from and what its ack
// moves is the shard's own (shardLoop): a metadata shard (mdLoop: an mdlog
// shard or the full sync's listing) or a data shard (dataWorker: bucket
// shards in full sync, bilogs, retries, the datalog bound).

import (
	"context"
	"errors"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/backoff"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// shardLoop is what the engine drives.
type shardLoop interface {
	// inFlight is the number of batches sent and not acked yet.
	inFlight() int
	// sendOne reads and sends one batch; false when there is nothing to
	// send now. errNoCredit: the stream's byte window is full. A
	// *stopError ends the engine.
	sendOne(ctx context.Context) (bool, error)
	// commitAck makes the oldest batch in flight durable (acks come in
	// order); an error ends the subscription (nothing moves without a
	// durable bound).
	commitAck(ack *v1.Ack) error
	// idleState runs when nothing is sent and nothing is in flight (the
	// shard is caught up); it says what the shard still waits for.
	idleState(ctx context.Context) string
	// pollAfter is the wait before the next read when idle, shortened
	// when a retry comes due sooner.
	pollAfter(idle time.Duration) time.Duration
}

// stopError ends the engine with err: a shard that cannot go on as it is
// (a metadata shard trimmed past its bound, after its re-sync is stored).
type stopError struct{ err error }

func (s *stopError) Error() string {
	if s.err == nil {
		return "shard stopped"
	}
	return s.err.Error()
}

// runEngine drives s until ctx ends, the exporter has drained s's batches,
// or s fails.
func (w *worker) runEngine(ctx context.Context, s shardLoop) error {
	idle := w.e.cfg.PollMin
	var srcBackoff time.Duration
	for {
		n := s.inFlight()
		if w.e.isDraining() && n == 0 {
			return nil
		}
		var wait <-chan time.Time
		switch {
		case w.e.isDraining():
			// Take the acks of what is in flight; send nothing new.
			w.stats.wait(waitAcks(n, "draining"))
		case n >= w.sub.st.window:
			w.stats.wait(waitAcks(n, "the shard's window of batches is full"))
		default:
			sent, err := s.sendOne(ctx)
			var stop *stopError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &stop):
				return stop.err
			case errors.Is(err, errNoCredit):
				// Only this shard's acks free what it holds: wait for one
				// (no timer: one is in flight, see credit).
				w.stats.wait(waitAcks(s.inFlight(), "the stream's byte window is full"))
			case err != nil:
				srcBackoff = min(max(2*srcBackoff, w.e.cfg.PollMin), 30*time.Second)
				w.log.Warn("reading the source failed; will retry", "err", err, "backoff", srcBackoff)
				w.stats.update(func(st *shardStats) { st.lastErr = err.Error() })
				w.stats.wait("the source: " + err.Error())
				w.e.cfg.Metrics.errors.WithLabelValues("source").Inc()
				wait = time.After(backoff.Jitter(srcBackoff))
			case sent:
				srcBackoff, idle = 0, w.e.cfg.PollMin
				w.stats.update(func(st *shardStats) { st.lastErr = "" })
				// Look at acks without waiting, then read on.
				select {
				case ack := <-w.sub.acks:
					if err := s.commitAck(ack); err != nil {
						return err
					}
				default:
				}
				continue
			default:
				if n := s.inFlight(); n == 0 {
					w.stats.wait(s.idleState(ctx))
				} else {
					w.stats.wait(waitAcks(n, ""))
				}
				wait = time.After(s.pollAfter(idle))
				idle = min(2*idle, w.e.cfg.PollMax)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case ack := <-w.sub.acks:
			if err := s.commitAck(ack); err != nil {
				return err
			}
		case <-wait:
		}
	}
}

// mdLoop is a metadata shard in the engine: the worker, and its source of
// batches (an mdlog shard or the full sync's listing).
type mdLoop struct {
	w   *worker
	src batchSource
}

func (m mdLoop) inFlight() int { return len(m.w.inflight) }

func (m mdLoop) sendOne(ctx context.Context) (bool, error) {
	if m.w.sub.unit.Log == rgwlog.LogMetadata {
		if err := m.w.takeMDResyncs(); err != nil {
			return false, err
		}
	}
	sent, err := m.w.sendNext(ctx, m.src)
	var trimmed *rgwlog.TrimmedError
	if errors.As(err, &trimmed) {
		return false, &stopError{err: m.w.e.resync(ctx, m.w, trimmed)}
	}
	return sent, err
}

func (m mdLoop) commitAck(ack *v1.Ack) error { return m.w.handleAck(ack, m.src) }

func (m mdLoop) idleState(ctx context.Context) string {
	m.w.caughtUp(ctx, m.src)
	// Nothing in flight, nothing failed, and the log read empty: the
	// shard is applied up to that read (settled.go).
	if src, ok := m.src.(*mdlogSource); ok && !src.readEmpty.IsZero() && failures(m.w.bound.Retries) == 0 {
		m.w.d.settled.record(m.w.sub.unit.Shard, src.readEmpty)
	}
	return pendingRechecks(m.w.bound.Retries, time.Now())
}

func (m mdLoop) pollAfter(idle time.Duration) time.Duration { return m.w.untilNextWork(idle) }

// The data worker in the engine.

func (dw *dataWorker) inFlight() int { return len(dw.sent) }

func (dw *dataWorker) sendOne(ctx context.Context) (bool, error) { return dw.step(ctx) }

func (dw *dataWorker) idleState(ctx context.Context) string {
	dw.setPhase(ctx, v1.ShardPhase_SHARD_PHASE_CAUGHT_UP, "")
	return ""
}

// pollAfter is the idle wait, at most hotPoll while a bucket shard of the
// datalog shard had news lately (veryHotFor).
func (dw *dataWorker) pollAfter(idle time.Duration) time.Duration {
	if dw.anyVeryHot(time.Now()) {
		return min(idle, dw.hotPoll())
	}
	return idle
}
