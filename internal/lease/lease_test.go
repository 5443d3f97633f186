package lease

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// hangingLocker is a destination that never answers an unlock.
type hangingLocker struct{ unlocks atomic.Int32 }

func (h *hangingLocker) LockMDLogShard(context.Context, string, int, time.Duration, string, string) error {
	return nil
}

func (h *hangingLocker) UnlockMDLogShard(ctx context.Context, _ string, _ int, _, _ string) error {
	h.unlocks.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// Shutting down with 65 leases and a destination that does not answer:
// every lease is reported lost at once, every unlock is tried, and the
// whole release is bounded (it took 5 s per lease, one after the other).
func TestReleaseAllIsBounded(t *testing.T) {
	lk := &hangingLocker{}
	var lostEvents atomic.Int32
	m, err := New(Config{Locker: lk, Holder: "a1", ZoneID: "z", Length: 6 * time.Second,
		Logger: slog.New(slog.DiscardHandler), OnChange: func(ev Event) {
			if !ev.Held {
				lostEvents.Add(1)
			}
		}})
	require.NoError(t, err)
	for i := range 65 {
		m.held[rgwlog.Unit{Log: v1.LogType_LOG_TYPE_DATA, Shard: uint32(i)}] = time.Now().Add(time.Minute)
	}
	start := time.Now()
	m.releaseAll()
	require.Less(t, time.Since(start), releaseTimeout+2*time.Second)
	require.EqualValues(t, 65, lostEvents.Load())
	require.EqualValues(t, 65, lk.unlocks.Load())
	require.Empty(t, m.held)
}

// slowLocker answers every lock after a delay, as a loaded gateway does.
type slowLocker struct {
	delay  time.Duration
	locks  atomic.Int64
	active atomic.Int32
	most   atomic.Int32
}

func (s *slowLocker) LockMDLogShard(ctx context.Context, _ string, _ int, _ time.Duration, _, _ string) error {
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	s.locks.Add(1)
	select {
	case <-time.After(s.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowLocker) UnlockMDLogShard(context.Context, string, int, string, string) error { return nil }

// 193 leases (65 metadata + 128 data shards, the lab's) with each lock
// answered in 30 ms: renewed one after the other a tick took ~6 s, longer
// than the lease, and every lease expired before its renewal, again and
// again (CI, under load). Renewed side by side they all stay held.
func TestManyLeasesStayHeldWithASlowGateway(t *testing.T) {
	lk := &slowLocker{delay: 30 * time.Millisecond}
	var lost atomic.Int32
	m, err := New(Config{Locker: lk, Holder: "a1", ZoneID: "z", Length: 3 * time.Second, MaxMembers: 1,
		Units:  append(rgwlog.MetadataUnits(64), rgwlog.DataUnits(128)...),
		Logger: slog.New(slog.DiscardHandler), OnChange: func(ev Event) {
			if !ev.Held && ev.Reason != "shutting down" {
				lost.Add(1)
			}
		}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	time.Sleep(7 * time.Second) // several lease lengths
	held := len(m.Held())
	cancel()
	<-done
	require.Zero(t, lost.Load(), "leases expired before renewal")
	require.Equal(t, 193, held)
	require.LessOrEqual(t, lk.most.Load(), int32(renewConcurrency+1), "lock requests in flight at once")
}
