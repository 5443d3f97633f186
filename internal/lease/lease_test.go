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
