//go:build integration

package synctest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/verify"
)

// The source mdlog is trimmed (by someone else) past the bound of a stopped
// applier while changes are pending: the exporter detects it, says so, and
// re-runs the full sync, so nothing is missing.
func TestTrimmedLogIsResynced(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("x")
	e.Only(p)
	e.StartExporter("")
	app := e.StartApplier("a1")
	e.User(p+"-u0", "Before")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	require.NoError(t, app.Stop())

	for i := 1; i <= 6; i++ {
		e.User(fmt.Sprintf("%s-u%d", p, i), "Created while the applier was down")
	}
	c := e.User(p+"-owner", "Owner")
	e.Bucket(c, p+"-bkt")
	trimAllToHead(t, e)

	e.StartApplier("a1")
	e.WaitMetadataEqual(90*time.Second, Prefix(p))
	exp := e.exporter
	require.Contains(t, exp.Log(), "re-running the metadata full sync")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := StatusOf(ctx, e.ExporterAddr, e.Dest)
	require.NoError(t, err)
	var resyncs uint32
	for _, s := range st.GetDestinations()[0].GetShards() {
		resyncs += s.GetResyncs()
	}
	require.Greater(t, resyncs, uint32(0), "the trimmed shards show their re-sync in Status")
}

// trimAllToHead trims every source mdlog shard up to its newest entry, as
// an operator's `radosgw-admin mdlog trim` or Ceph's autotrim would.
func trimAllToHead(t *testing.T, e *Env) {
	ctx := context.Background()
	info, err := e.Src.MDLogInfo(ctx)
	require.NoError(t, err)
	n := 0
	for i := range info.NumShards {
		page, err := e.Src.ListMDLog(ctx, info.Period, i, "", 1000)
		require.NoError(t, err)
		if len(page.Entries) == 0 {
			continue
		}
		for page.Truncated {
			more, err := e.Src.ListMDLog(ctx, info.Period, i, page.Marker, 1000)
			require.NoError(t, err)
			page.Entries, page.Marker, page.Truncated = append(page.Entries, more.Entries...), more.Marker, more.Truncated
		}
		require.NoError(t, e.Src.TrimMDLog(ctx, info.Period, i, page.Entries[len(page.Entries)-1].ID))
		n += len(page.Entries)
	}
	t.Logf("trimmed %d mdlog entries", n)
	require.Greater(t, n, 0)
}

// With trimming on, the exporter trims the source log behind the
// destination's bounds, never past them (no re-sync), sync goes on, and
// the metrics show it.
func TestOwnTrimmingAndMetrics(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("o")
	e.Only(p)
	metrics := FreeAddr(t)
	before := countMDLog(t, e)
	e.StartExporter(fmt.Sprintf("metrics_listen: %s\ntrim:\n  enabled: true\n  interval: 500ms\n", metrics))
	e.StartApplier("a1")
	for i := range 30 {
		e.User(fmt.Sprintf("%s-u%02d", p, i), "Trim test")
	}
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	require.Eventually(t, func() bool { return metricValue(t, metrics, `rgwsync_exporter_log_trims_total{log="metadata"}`) > 0 },
		30*time.Second, 200*time.Millisecond, "the exporter trims")
	// The log shrank below what it held before this test's changes.
	require.Eventually(t, func() bool { return countMDLog(t, e) < before+60 }, 30*time.Second, 500*time.Millisecond)

	for i := 30; i < 40; i++ {
		e.User(fmt.Sprintf("%s-u%02d", p, i), "After trimming")
	}
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	require.NotContains(t, e.exporter.Log(), "re-running the metadata full sync", "own trimming must never look like a trim past a bound")
	require.Greater(t, metricValue(t, metrics, `rgwsync_exporter_entries_applied_total{destination="`+e.Dest+`",log="metadata"}`), 0.0)
	require.Greater(t, metricValue(t, metrics, `rgwsync_exporter_batches_sent_total{destination="`+e.Dest+`",log="metadata"}`), 0.0)
	// Per-shard gauges are published without anyone calling Status.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `rgwsync_exporter_shard_lag_seconds{destination="`+e.Dest+`",log="metadata",shard="63"}`)
	}, 15*time.Second, 200*time.Millisecond)
}

func countMDLog(t *testing.T, e *Env) int {
	ctx := context.Background()
	info, err := e.Src.MDLogInfo(ctx)
	require.NoError(t, err)
	n := 0
	for i := range info.NumShards {
		marker := ""
		for {
			page, err := e.Src.ListMDLog(ctx, info.Period, i, marker, 1000)
			require.NoError(t, err)
			n += len(page.Entries)
			if !page.Truncated {
				break
			}
			marker = page.Marker
		}
	}
	return n
}

// metricValue scrapes addr/metrics and sums the samples whose name (with
// labels, if given) matches.
func metricValue(t *testing.T, addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		if strings.Contains(name, "{") && m[1] != "" {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		sum += v
	}
	return sum
}

// A bucket filter keeps excluded buckets (and their instances) off the
// destination; users still replicate.
func TestBucketFilter(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("f")
	e.Only(p)
	e.StartExporter(fmt.Sprintf("filter:\n  include: [\"%s*\"]\n  exclude: [\"%s-skip*\"]\n", p, p))
	e.StartApplier("a1")
	c := e.User(p+"-owner", "Owner")
	e.Bucket(c, p+"-keep")
	e.Bucket(c, p+"-skip1")
	e.WaitMetadataEqual(60*time.Second, func(section, key string) bool {
		return strings.Contains(key, p) && !strings.Contains(key, p+"-skip")
	})
	ctx := context.Background()
	_, err := e.Dst.GetMetadata(ctx, "bucket", p+"-keep")
	require.NoError(t, err)
	_, err = e.Dst.GetMetadata(ctx, "bucket", p+"-skip1")
	require.Error(t, err, "excluded bucket must not be on the destination")
	keys, err := e.Dst.ListMetadataKeys(ctx, "bucket.instance", "", 1000)
	require.NoError(t, err)
	for _, k := range keys.Keys {
		require.False(t, strings.HasPrefix(k, p+"-skip"), "excluded bucket instance %s on the destination", k)
	}
}

// `rgwsync-exporter status` and `rgwsync-applier status` print the sync
// state for people and as JSON.
func TestStatusCommand(t *testing.T) {
	expBin, appBin := Binaries(t)
	e := NewEnv(t)
	p := labtest.RandomName("s")
	e.Only(p)
	e.StartExporter("")
	app := e.StartApplier("a1")
	e.User(p+"-x", "X")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	e.WaitFullSyncDone(2 * time.Minute)

	out := run(t, expBin, "status", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest, "-interval", "200ms")
	for _, s := range []string{"exporter", "destination " + e.Dest, "appliers: a1", "metadata", "shards caught up", "entries/s"} {
		require.Contains(t, out, s)
	}
	out = run(t, expBin, "status", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest, "-json", "-interval", "0")
	var r struct {
		Role         string `json:"role"`
		Destinations []struct {
			Destination    string `json:"destination"`
			EntriesApplied uint64 `json:"entries_applied"`
			Logs           []struct {
				Log      string `json:"log"`
				Shards   int    `json:"shards"`
				CaughtUp int    `json:"caught_up"`
				Phase    string `json:"phase"`
			} `json:"logs"`
		} `json:"destinations"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Equal(t, "exporter", r.Role)
	require.Len(t, r.Destinations, 1)
	require.Greater(t, r.Destinations[0].EntriesApplied, uint64(0))
	logs := map[string]int{}
	for i, l := range r.Destinations[0].Logs {
		logs[l.Log] = i
	}
	require.Contains(t, logs, "metadata")
	require.Equal(t, 64, r.Destinations[0].Logs[logs["metadata"]].Shards)
	require.Equal(t, "DONE", r.Destinations[0].Logs[logs["metadata.full"]].Phase)

	out = run(t, appBin, "status", "-insecure", "-addr", app.Addr, "-json", "-interval", "0")
	require.Contains(t, out, `"role": "applier"`)
	// A service that is not there: a clear error, non-zero exit.
	bad, err := exec.Command(expBin, "status", "-insecure", "-addr", FreeAddr(t), "-timeout", "2s").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(bad), "status")
}

// SIGTERM drains: the applier finishes and acks what it is applying and
// releases its leases (a second applier takes the shards at once, without
// waiting for expiry); the exporter stores the acks in flight and ends the
// streams; restarted, everything converges.
func TestGracefulStopDrains(t *testing.T) {
	e := NewEnv(t)
	e.LeaseLength = 60 * time.Second // a takeover within the test proves the leases were released
	p := labtest.RandomName("q")
	e.Only(p)
	c := e.User(p+"-owner", "Owner")
	exp := e.StartExporter("")
	a1 := e.StartApplier("a1")
	units := e.Units()
	// a1 must hold the shards when it stops, or nothing is proven.
	require.Eventually(t, func() bool { return len(heldBy(t, a1.Addr)) == units }, 45*time.Second, 200*time.Millisecond,
		"a1 holds every shard")
	w := e.writeBuckets(c, p, 80)
	w.waitFor(t, 30)
	require.NoError(t, a1.Stop())
	require.Contains(t, a1.Log(), "drained: in-flight batches applied and acked")
	stopped := time.Now()
	a2 := e.StartApplier("a2")
	require.Eventually(t, func() bool { return len(heldBy(t, a2.Addr)) == units }, 50*time.Second, 200*time.Millisecond,
		"a2 takes every shard before a1's 60 s leases would expire")
	require.Less(t, time.Since(stopped), 60*time.Second, "taken over before a1's leases could have expired")
	w.waitFor(t, 60)
	require.NoError(t, exp.Stop())
	require.Contains(t, exp.Log(), "stream drained")
	e.StartExporter("")
	<-w.done
	e.WaitMetadataEqual(2*time.Minute, Prefix(p))
}

// `rgwsync-exporter wait` (issue #14 item 5, the `bucket sync checkpoint`
// analogue): with the applier stopped it does not return 0 (exit 1 at its
// timeout, naming what it waits for); once it returns 0 every change made
// before it started is on zone-b at that moment — the zones are compared
// once, without waiting — for one bucket, and for the metadata and every
// bucket.
func TestWaitCommand(t *testing.T) {
	e, p, uid, c := newOwnedEnv(t, "wt")
	b := p + "-b"
	e.Bucket(c, b)
	e.StartExporter(dataOn)
	app := e.StartApplier("a1")
	e.WaitObjectsEqual(2*time.Minute, uid, b)
	expBin, _ := Binaries(t)
	wait := func(timeout string, args ...string) (string, int) {
		cmd := exec.Command(expBin, append([]string{"wait", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest,
			"-timeout", timeout}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "%s", out)
			return string(out), exit.ExitCode()
		}
		return string(out), 0
	}

	out, code := wait("2m", "-bucket", b) // its index shards past their full sync
	require.Equal(t, 0, code, out)
	require.NoError(t, app.Stop())
	for i := range 30 {
		PutObject(t, c, b, fmt.Sprintf("k/%02d", i), RandomBytes(100+i), nil)
	}
	out, code = wait("5s", "-bucket", b)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "waiting for "+b+":", out)
	// `status -backlog` (issue #14 item 4) lists those writes, read from
	// the source's bucket index log after the bound.
	status := func(args ...string) string {
		cmd := exec.Command(expBin, append([]string{"status", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	out = status("-backlog", "-bucket", b)
	require.Contains(t, out, "30 changes waiting", out)
	for i := range 30 {
		require.Contains(t, out, fmt.Sprintf(" k/%02d ", i), out)
	}

	e.StartApplier("a1")
	for i := range 30 {
		PutObject(t, c, b, fmt.Sprintf("more/%02d", i), RandomBytes(200+i), nil)
	}
	out, code = wait("3m", "-bucket", b)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "applied: every change logged before")
	d, err := verify.Objects(context.Background(), UserOn(e.Lab.ZoneA, uid), UserOn(e.Lab.ZoneB, uid), b)
	require.NoError(t, err)
	require.Empty(t, d, "zone-b once wait said applied")
	out = status("-bucket", b)
	require.Regexp(t, `bucket `+b+`: \d+ index shards, \d+ done, 0 waiting; 0 changes waiting`, out)

	e.User(p+"-other", "Other")
	second := p + "-c"
	e.Bucket(c, second)
	PutObject(t, c, second, "x", []byte("in a new bucket"), nil)
	out, code = wait("3m")
	require.Equal(t, 0, code, out)
	md, err := verify.Metadata(context.Background(), e.Src, e.Dst, rgwlog.DefaultSections, Prefix(p))
	require.NoError(t, err)
	require.Empty(t, md, "metadata once wait said applied")
	d, err = verify.Objects(context.Background(), UserOn(e.Lab.ZoneA, uid), UserOn(e.Lab.ZoneB, uid), second)
	require.NoError(t, err)
	require.Empty(t, d, "the new bucket once wait said applied")

	out, code = wait("5s", "-bucket", "no-such-bucket-"+p)
	require.Equal(t, 2, code, out)
}

// A destination gateway that stops answering shows in the applier's status
// and metrics at once (issue #16 item 2), not only as retries piling up,
// and clears when it answers again. The proxy in front of zone-b drops the
// connections of every request while "down".
func TestGatewayDownShowsAtOnce(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("g")
	e.Only(p)
	var down atomic.Bool
	e.ProxyDest(func(w http.ResponseWriter, r *http.Request) bool {
		if !down.Load() {
			return false
		}
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close() // no HTTP answer at all
				return true
			}
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	e.StartExporter("")
	app := e.StartApplier("a1")
	e.User(p+"-x", "X")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	ctx := context.Background()
	st, err := StatusOf(ctx, app.Addr, "")
	require.NoError(t, err)
	require.False(t, st.GetGatewayDown())

	down.Store(true)
	e.User(p+"-y", "Y") // a write to apply, and the lease renewals
	require.Eventually(t, func() bool {
		st, err := StatusOf(ctx, app.Addr, "")
		return err == nil && st.GetGatewayDown() && st.GetGatewayError() != ""
	}, 30*time.Second, 100*time.Millisecond, "the applier's status says zone-b does not answer")
	_, appBin := Binaries(t)
	out := run(t, appBin, "status", "-insecure", "-addr", app.Addr, "-interval", "0")
	require.Contains(t, out, "GATEWAY DOWN")

	down.Store(false)
	require.Eventually(t, func() bool {
		st, err := StatusOf(ctx, app.Addr, "")
		return err == nil && !st.GetGatewayDown()
	}, 60*time.Second, 200*time.Millisecond, "up again once zone-b answers")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
}
