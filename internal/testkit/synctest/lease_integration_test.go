//go:build integration

package synctest

import (
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Two appliers started together and left alone (issue #15, item 5): each
// shard moves at most once (from the first to join to its owner), no
// phantom member is ever counted, and every shard ends with exactly one
// holder. Before, probes of the same free slots in step counted phantom
// members (members=3) and the shards changed holder 4–6 times each in
// three minutes. RGWSYNC_LEASE_SOAK sets how long (default 60s; the issue's
// acceptance ran it for 5m).
func TestTwoAppliersSettle(t *testing.T) {
	soak := 60 * time.Second
	if v := os.Getenv("RGWSYNC_LEASE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		soak = d
	}
	e := NewEnv(t)
	e.Only("none-") // the leases are what is tested; no data to copy
	e.StartExporter(dataOn)
	a1 := e.StartApplier("a1")
	a2 := e.StartApplier("a2")
	units := e.Units()
	time.Sleep(soak)

	h1, h2 := heldBy(t, a1.Addr), heldBy(t, a2.Addr)
	for u := range h1 {
		require.False(t, h2[u], "shard %s held by both appliers", u)
	}
	require.Equal(t, units, len(h1)+len(h2), "every shard held by one applier")
	require.NotEmpty(t, h1)
	require.NotEmpty(t, h2)

	lost := regexp.MustCompile(`msg="lease lost" .*shard=(\S+) reason="?([^"\n]*)`)
	moves, reasons := map[string]int{}, map[string]int{}
	for _, p := range []*Proc{a1, a2} {
		log := p.Log()
		require.NotRegexp(t, `members=([3-9]|\d\d)`, log, "a phantom member was counted")
		for _, m := range lost.FindAllStringSubmatch(log, -1) {
			moves[m[1]]++
			reasons[m[2]]++
		}
	}
	for u, n := range moves {
		require.LessOrEqual(t, n, 1, "shard %s moved %d times in %s", u, n, soak)
	}
	t.Logf("%d shards, %d held by a1, %d by a2, %d moved once (%v), none more, over %s", units, len(h1), len(h2), len(moves), reasons, soak)
}
