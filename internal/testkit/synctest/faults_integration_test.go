//go:build integration

package synctest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// writer creates n buckets in the background with 4 goroutines and reports
// how many exist so far.
type writer struct {
	done    chan struct{}
	created atomic.Int64
}

func (e *Env) writeBuckets(c *s3.Client, prefix string, n int) *writer {
	w := &writer{done: make(chan struct{})}
	names := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				e.Bucket(c, name)
				w.created.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	go func() {
		for i := range n {
			// A random tail spreads the names over the mdlog shards: names
			// alike fall in a few of them (the gateway's hash), and a test
			// of two appliers then found all the work with one of them.
			names <- labtest.RandomName(fmt.Sprintf("%s-k%03d-", prefix, i))
		}
		close(names)
		wg.Wait()
		close(w.done)
	}()
	return w
}

func (w *writer) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for w.created.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("workload stuck at %d buckets", w.created.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill -9 of the applier and then of the exporter while changes stream in;
// restarted, the destination converges and the full sync is not redone.
func TestKill9MidStream(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("k")
	e.Only(p)
	c := e.User(p+"-owner", "Owner")
	exp := e.StartExporter("")
	app := e.StartApplier("a1")
	w := e.writeBuckets(c, p, 150)

	w.waitFor(t, 40)
	app.Kill()
	t.Logf("applier killed at %d buckets", w.created.Load())
	w.waitFor(t, 60)
	app = e.StartApplier("a1")

	w.waitFor(t, 100)
	exp.Kill()
	t.Logf("exporter killed at %d buckets", w.created.Load())
	w.waitFor(t, 120)
	exp = e.StartExporter("")

	<-w.done
	e.WaitMetadataEqual(2*time.Minute, Prefix(p))
	require.NotContains(t, exp.Log(), "starting metadata full sync", "restarted exporter must resume from its bounds, not redo the full sync")
	_ = app
}

// Two appliers share the shards through the leases, never apply one shard
// at the same time (from the audit log), and the survivor takes the shards
// of a killed one once its leases expire.
func TestTwoAppliersShareAndFailOver(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("t")
	e.Only(p)
	c := e.User(p+"-owner", "Owner")
	e.StartExporter("")
	a1 := e.StartApplier("a1")
	a2 := e.StartApplier("a2")
	early := e.writeBuckets(c, p+"-early", 20) // applied while the shares settle

	// Both get a share.
	units := e.Units()
	require.Eventually(t, func() bool {
		h1, h2 := heldBy(t, a1.Addr), heldBy(t, a2.Addr)
		return len(h1) > 0 && len(h2) > 0 && len(h1)+len(h2) == units
	}, 60*time.Second, 200*time.Millisecond, "both appliers should hold a share of the %d units", units)
	<-early.done

	// Written once both hold their share, so both get work: written before,
	// all of it could be applied by the applier that came first while the
	// other joined (Reef lab: "a1 applies a batch" never held).
	w := e.writeBuckets(c, p, 120)
	w.waitFor(t, 60)
	// Kill a1 only once it has applied something, or the takeover proves
	// nothing (on a loaded machine the rebalance can take a while).
	require.Eventually(t, func() bool {
		recs, err := ReadAudit(e.AuditPath())
		if err != nil {
			return false
		}
		for _, r := range recs {
			if r.Applier == "a1" {
				return true
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "a1 applies a batch")
	a1Held := heldBy(t, a1.Addr)
	a1.Kill()
	killed := time.Now()
	t.Log("a1 killed")
	// a2 takes everything once a1's leases expire.
	require.Eventually(t, func() bool { return len(heldBy(t, a2.Addr)) == units }, 4*e.LeaseLength, 200*time.Millisecond,
		"a2 should take over all %d units after a1's leases expire", units)
	<-w.done
	// Buckets written after the takeover land on a1's former shards too:
	// only a2 can apply them.
	after := e.writeBuckets(c, p+"-after", 40)
	<-after.done
	e.WaitMetadataEqual(2*time.Minute, Prefix(p))

	recs := readAudit(t, e.AuditPath())
	byApplier := map[string]int{}
	var tookOver int
	for _, r := range recs {
		byApplier[r.Applier]++
		if r.Applier == "a2" && a1Held[r.Shard] && r.Start.After(killed) {
			tookOver++
		}
	}
	require.Greater(t, byApplier["a1"], 0, "a1 applied batches")
	require.Greater(t, byApplier["a2"], 0, "a2 applied batches")
	require.Greater(t, tookOver, 0, "a2 applied batches of shards a1 held (%d of them) after a1 was killed", len(a1Held))
	AssertNoOverlap(t, recs)
}

func heldBy(t *testing.T, addr string) map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := StatusOf(ctx, addr, "")
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, d := range st.GetDestinations() {
		for _, s := range d.GetShards() {
			if s.GetLeaseHolder() != "" && s.GetLeaseExpires().AsTime().After(time.Now()) {
				out[wire.Unit(s.GetShard()).String()] = true
			}
		}
	}
	return out
}

func readAudit(t *testing.T, path string) []AuditRecord {
	recs, err := ReadAudit(path)
	require.NoError(t, err)
	return recs
}

// A key that fails on the destination is kept as a retry (visible in the
// bounds) and applied once the destination accepts it.
func TestFailedKeyIsRetried(t *testing.T) {
	e := NewEnv(t)
	p := labtest.RandomName("r")
	e.Only(p)
	victim := p + "-victim"
	var failing atomic.Bool
	failing.Store(true)
	var refused atomic.Int64
	e.ProxyDest(func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() && r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/admin/metadata/user") && r.URL.Query().Get("key") == victim {
			refused.Add(1)
			http.Error(w, `{"Code":"ServiceUnavailable"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})

	e.StartExporter("")
	e.StartApplier("a1")
	e.User(p+"-ok", "OK")
	e.User(victim, "Victim")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The victim shows up as an item in progress of some shard's bounds.
	require.Eventually(t, func() bool {
		for i := range 64 {
			b, err := e.BoundsOf(ctx, rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: uint32(i)})
			if err != nil {
				continue
			}
			for _, m := range b.GetMarkers() {
				for _, it := range m.GetItemsInProgress() {
					if it.GetName() == "user:"+victim && it.GetAttempts() >= 1 && strings.Contains(it.GetError(), "503") {
						return true
					}
				}
			}
		}
		return false
	}, 90*time.Second, 500*time.Millisecond, "victim key kept as a retry in the bounds")
	// The errors command lists it (the sync error list analogue).
	expBin, _ := Binaries(t)
	out := run(t, expBin, "errors", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest, "-json")
	var errs struct {
		Total uint32 `json:"total"`
		Items []struct {
			Section, Name, State, Error, Shard string
			Attempts                           uint32
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &errs), out)
	found := false
	for _, it := range errs.Items {
		if it.Section == "user" && it.Name == victim {
			found = true
			require.Equal(t, "failed", it.State, out)
			require.Contains(t, it.Error, "503", out)
			require.GreaterOrEqual(t, it.Attempts, uint32(1))
			require.True(t, strings.HasPrefix(it.Shard, "metadata"), out) // metadata/N, or metadata.full/0 when the full sync met it
		}
	}
	require.True(t, found, "the errors command lists the failing key: %s", out)
	e.WaitMetadataEqual(30*time.Second, Prefix(p+"-ok"))
	_, err := e.Dst.GetMetadata(ctx, "user", victim)
	require.Error(t, err, "victim must not be on the destination while it fails")

	failing.Store(false)
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	require.Greater(t, refused.Load(), int64(4), "the proxy refused the victim more than one attempt's retries")
	st, err := StatusOf(ctx, e.ExporterAddr, e.Dest)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err = StatusOf(ctx, e.ExporterAddr, e.Dest)
		return err == nil && st.GetDestinations()[0].GetRetries() == 0
	}, 30*time.Second, 200*time.Millisecond, "retries drained")
	out = run(t, expBin, "errors", "-insecure", "-addr", e.ExporterAddr, "-destination", e.Dest)
	require.Equal(t, "no items kept for retry\n", out)
}

// grpcurl lists the services (reflection) and calls Status and GetBounds.
func TestGrpcurlStatusAndBounds(t *testing.T) {
	grpcurl := findGrpcurl(t)
	e := NewEnv(t)
	p := labtest.RandomName("c")
	e.Only(p)
	e.StartExporter("")
	app := e.StartApplier("a1")
	e.User(p+"-x", "X")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	e.WaitFullSyncDone(2 * time.Minute)

	out := run(t, grpcurl, "-plaintext", e.ExporterAddr, "list")
	for _, s := range []string{"rgwsync.v1.ReplicationService", "rgwsync.v1.StatusService", "grpc.health.v1.Health"} {
		require.Contains(t, out, s)
	}
	out = run(t, grpcurl, "-plaintext", "-d", fmt.Sprintf(`{"destination":%q}`, e.Dest), e.ExporterAddr, "rgwsync.v1.StatusService/Status")
	require.Contains(t, out, `"role": "exporter"`)
	require.Contains(t, out, `"SHARD_PHASE_DONE"`)
	out = run(t, grpcurl, "-plaintext", "-d", fmt.Sprintf(`{"destination":%q,"log_type":"LOG_TYPE_METADATA_FULL","shard":0}`, e.Dest),
		e.ExporterAddr, "rgwsync.v1.StatusService/GetBounds")
	for _, s := range []string{`"marker": "3|"`, `"markers"`, `"position_marker"`, `"entity": "a1"`} {
		require.Contains(t, out, s)
	}
	out = run(t, grpcurl, "-plaintext", "-d", `{"service":""}`, app.Addr, "grpc.health.v1.Health/Check")
	require.Contains(t, out, "SERVING")
	out = run(t, grpcurl, "-plaintext", app.Addr, "rgwsync.v1.StatusService/Status")
	require.Contains(t, out, `"role": "applier"`)
}

func findGrpcurl(t *testing.T) string {
	if p := os.Getenv("GRPCURL"); p != "" {
		return p
	}
	if p := filepath.Join(labtest.Root(), ".bin", "grpcurl"); labtest.FileExists(p) {
		return p
	}
	p, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Fatal("grpcurl not found: run `make tools` (installs it into .bin/) or set GRPCURL")
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// Bad configuration fails at start with a message naming what is wrong.
func TestBadConfigFailsClearly(t *testing.T) {
	exp, app := Binaries(t)
	e := NewEnv(t)
	dir := t.TempDir()
	cases := []struct {
		name, bin, yaml, want string
	}{
		{"unknown key", exp, "listen: 127.0.0.1:0\nsourse:\n  endpoint: x\n", "field sourse not found"},
		{"missing endpoint", exp, "tls: {insecure: true}\nsource:\n  access_key: a\n  secret_key: b\n", "source.endpoint: required"},
		{"bad duration", exp, "sync:\n  poll_min: fast\n", "line 2: cannot unmarshal !!str `fast` into time.duration"},
		{"wrong secret key", exp, fmt.Sprintf("listen: %s\nbounds_path: %s\ntls: {insecure: true}\nsource:\n  endpoint: %s\n  access_key: %s\n  secret_key: wrong\n",
			FreeAddr(t), filepath.Join(dir, "b.db"), e.Lab.ZoneA, e.Lab.AccessKey), "secret"},
		{"applier missing exporter", app, "tls: {insecure: true}\ndestination:\n  endpoint: http://127.0.0.1:1\n  access_key: a\n  secret_key: b\n", "exporter: required"},
		{"applier wrong secret key", app, fmt.Sprintf("exporter: 127.0.0.1:1\ntls: {insecure: true}\ndestination:\n  endpoint: %s\n  access_key: %s\n  secret_key: wrong\n",
			e.Lab.ZoneB, e.Lab.AccessKey), "secret"},
		{"no tls and not insecure", app, "exporter: 127.0.0.1:1\ndestination:\n  endpoint: http://127.0.0.1:1\n  access_key: a\n  secret_key: b\n", "tls: ca, cert and key are required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			writeFile(t, p, tc.yaml)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, tc.bin, "-config", p).CombinedOutput()
			require.Error(t, err, "must fail:\n%s", out)
			require.Contains(t, strings.ToLower(string(out)), strings.ToLower(tc.want))
		})
	}
}
