package exporter

// How far the metadata is applied on a destination, in time: what a data
// op that depends on its bucket's state asks before it stops waiting for a
// state the metadata sync will never write.

import (
	"sync"
	"time"
)

// settledMargin: a change the source logged up to this long before an
// mdlog shard was read empty may still be missing from that read (the
// gateway's clock against this host's, the log write's own latency).
const settledMargin = 5 * time.Second

// mdSettled records, per mdlog shard of a destination, the moment up to
// which everything the shard logged is applied on the destination: the
// start of a read that found nothing after the bound, made while nothing of
// the shard was in flight and no change of it had failed. It only grows.
type mdSettled struct {
	mu sync.Mutex
	at map[uint32]time.Time
}

func (m *mdSettled) record(shard uint32, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at == nil {
		m.at = map[uint32]time.Time{}
	}
	if t.After(m.at[shard]) {
		m.at[shard] = t
	}
}

// settled: every one of shards mdlog shards is applied up to t (and the
// margin); false while one of them has not been read empty since.
func (m *mdSettled) settled(shards int, t time.Time) bool {
	upTo, ok := m.upTo(shards)
	return ok && !t.IsZero() && !t.After(upTo)
}

// upTo is the latest time every one of shards mdlog shards is applied up
// to, less the margin (ok false while one of them was never read empty):
// an op logged at or before it is settled. Read once for a whole batch.
func (m *mdSettled) upTo(shards int) (time.Time, bool) {
	if shards <= 0 {
		return time.Time{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var oldest time.Time
	for i := range shards {
		at, ok := m.at[uint32(i)]
		if !ok {
			return time.Time{}, false
		}
		if i == 0 || at.Before(oldest) {
			oldest = at
		}
	}
	// settled when at > t + margin for every shard: t < oldest - margin.
	return oldest.Add(-settledMargin).Add(-time.Nanosecond), true
}
