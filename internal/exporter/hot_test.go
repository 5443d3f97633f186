package exporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
)

// A bucket shard whose bilog just had entries is polled every 2 × PollMin
// however long the datalog has been quiet (its idle wait has grown to
// PollMax), and only it: the other hot shards wait slowHotEvery. Before,
// every hot shard was polled at the idle backoff (50 ms doubling to 1 s),
// and the benchmark's lag (one object every 200 ms) had a p50 of 361 ms.
func TestVeryHotShardIsPolledFast(t *testing.T) {
	const busy, quiet = "b:inst:0", "b:inst:1"
	inc := func() *checkpoint.Bound { return &checkpoint.Bound{Phase: checkpoint.PhaseIncremental} }
	dw := commitWorker(map[string]*checkpoint.Bound{busy: inc(), quiet: inc()})
	dw.e.cfg.PollMin, dw.e.cfg.PollMax = 50*time.Millisecond, time.Second

	dw.markHot(quiet) // named by the datalog, nothing since
	require.Equal(t, time.Second, dw.pollAfter(time.Second), "no shard with news: the idle backoff")
	require.True(t, dw.requeueHot())
	require.ElementsMatch(t, []string{quiet}, dw.queue)
	dw.queue = nil

	dw.hadNews(busy)
	require.Equal(t, 100*time.Millisecond, dw.pollAfter(time.Second), "a shard with news: 2 × PollMin")
	require.Equal(t, 50*time.Millisecond, dw.pollAfter(50*time.Millisecond), "never longer than the backoff")
	require.True(t, dw.requeueHot())
	require.ElementsMatch(t, []string{busy}, dw.queue, "at the fast cadence, only the busy one: the quiet one was just read")
	dw.queue = nil
	dw.nextSlowHot = time.Now().Add(-time.Millisecond) // slowHotEvery later
	require.True(t, dw.requeueHot())
	require.ElementsMatch(t, []string{busy, quiet}, dw.queue, "the slow turn of the quiet one")
	dw.queue = nil
	require.True(t, dw.requeueHot())
	require.ElementsMatch(t, []string{busy}, dw.queue)
	dw.queue = nil

	dw.news[busy] = time.Now().Add(-veryHotFor) // its news is old now
	require.Equal(t, time.Second, dw.pollAfter(time.Second))
	require.True(t, dw.requeueHot())
	require.ElementsMatch(t, []string{busy, quiet}, dw.queue, "both stay hot, at the idle cadence")
}
