package exporter

import (
	"sort"
	"time"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
)

// Hot bucket shards: the ones the datalog named or whose bilog had entries
// lately are read again whenever the datalog has nothing new (see
// dataWorker.hot).

// hotFor is how long a bucket shard stays hot after the datalog named it
// or its bilog had news: past the gateway's 30 s datalog window.
const hotFor = 40 * time.Second

// maxHot bounds the bucket shards one datalog shard polls (the ones most
// lately active stay).
const maxHot = 32

// A bucket shard whose bilog had entries within veryHotFor is polled every
// hotPoll (2 × PollMin) instead of at the idle backoff: a change follows
// the last one soon (the benchmark's lag run writes every 200 ms, and its
// p50 was 361 ms with the backoff's 50 → 1,000 ms steps). The other hot
// shards of the datalog shard are read at most every slowHotEvery while
// the fast cadence runs.
const (
	veryHotFor   = 5 * time.Second
	slowHotEvery = 500 * time.Millisecond
)

func (dw *dataWorker) hotPoll() time.Duration { return 2 * dw.e.cfg.PollMin }

// hadNews records that key's bilog had entries.
func (dw *dataWorker) hadNews(key string) {
	if dw.news == nil {
		dw.news = map[string]time.Time{}
	}
	dw.news[key] = time.Now()
	dw.markHot(key)
}

// veryHot says whether key had news within veryHotFor; forgets it after.
func (dw *dataWorker) veryHot(key string, now time.Time) bool {
	t, ok := dw.news[key]
	if ok && now.Sub(t) >= veryHotFor {
		delete(dw.news, key)
		return false
	}
	return ok
}

// anyVeryHot says whether a bucket shard of this datalog shard is polled
// at the fast cadence.
func (dw *dataWorker) anyVeryHot(now time.Time) bool {
	for k := range dw.news {
		if _, hot := dw.hot[k]; !hot {
			delete(dw.news, k) // cooled, or pushed out by maxHot
			continue
		}
		if dw.veryHot(k, now) {
			return true
		}
	}
	return false
}

func (dw *dataWorker) markHot(key string) {
	if dw.hot == nil {
		dw.hot = map[string]time.Time{}
	}
	dw.hot[key] = time.Now().Add(hotFor)
	if len(dw.hot) > maxHot {
		oldest, first := "", time.Time{}
		for k, t := range dw.hot {
			if first.IsZero() || t.Before(first) {
				oldest, first = k, t
			}
		}
		delete(dw.hot, oldest)
	}
}

// requeueHot queues the hot bucket shards (not queued already) for a bilog
// read; expired ones are dropped. It says whether it queued any.
func (dw *dataWorker) requeueHot() bool {
	now := time.Now()
	queued := map[string]bool{}
	for _, k := range dw.queue {
		queued[k] = true
	}
	// At the fast cadence (a very hot shard), the others wait their turn.
	slow := !dw.anyVeryHot(now) || !now.Before(dw.nextSlowHot)
	if slow {
		dw.nextSlowHot = now.Add(slowHotEvery)
	}
	var keys []string
	for k, until := range dw.hot {
		if now.After(until) {
			delete(dw.hot, k)
			delete(dw.news, k)
			continue
		}
		if !slow && !dw.veryHot(k, now) {
			continue
		}
		if bd, ok := dw.bounds[k]; ok && bd.Phase == checkpoint.PhaseIncremental && !queued[k] {
			keys = append(keys, k)
			queued[k] = true
		}
	}
	for k := range dw.genWait {
		if bd, ok := dw.bounds[k]; !ok {
			delete(dw.genWait, k)
		} else if slow && (bd.Phase == checkpoint.PhaseIncremental || bd.Phase == checkpoint.PhaseBucketFull) && !queued[k] {
			keys = append(keys, k) // at the slow turn, as the other hot ones
		}
	}
	sort.Strings(keys)
	dw.queue = append(dw.queue, keys...)
	return len(keys) > 0
}
