// Package chaos is the fault-injection suite: it runs the real exporter and
// three appliers (internal/testkit/synctest) against the lab while a seeded workload
// (internal/testkit/workload) writes on zone-a, injects process, link, lease and
// gateway faults, then heals everything, waits until the verifiers find
// zone-b equal to zone-a and reports what it did and what it found.
//
// Topology (all on 127.0.0.1):
//
//	applier ──► toxiproxy "link" ──► exporter ──► zone-a
//	applier ──► toxiproxy "dest" ──► FaultGateway (HTTP) ──► zone-b
package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
	"github.com/rgwsync/rgwsync/internal/testkit/workload"
	"github.com/rgwsync/rgwsync/internal/verify"
)

// Config is one chaos run.
type Config struct {
	Seed uint64
	// Kills is the number of process faults (kill -9, and SIGTERM every
	// fifth time) of the exporter or of applier a1/a2, each followed by a
	// restart.
	Kills int
	// LinkFaults is the number of toxics played on the applier→exporter
	// and applier→zone-b links.
	LinkFaults int
	// LeaseFaults is the number of SIGSTOPs of applier a3 past its lease.
	LeaseFaults int
	// GatewayFaults is the number of windows in which zone-b's fault proxy
	// spoils answers.
	GatewayFaults int
	// Duration is the fault phase; the workload runs through it.
	Duration time.Duration
	// Pace is the workload's pause between operations.
	Pace time.Duration
	// Converge bounds the wait for equal zones after the last fault.
	Converge time.Duration
	// Blackhole is how long a black hole lasts (default 36 s: longer than
	// the gRPC keepalive, 20 s + 10 s, and than the lease).
	Blackhole time.Duration
	// TLS runs the link over mTLS (the toxiproxy sits under TLS).
	TLS bool
}

// Report is what a run did and found.
type Report struct {
	Seed          uint64
	Faults        map[string]int // by kind
	Workload      map[string]int // operations by kind
	Buckets       []string
	RemovedBucket []string
	TenantBucket  []workload.TenantBucket // verified with their tenant's user (CHAOS_EXTENDED)
	FaultPhase    time.Duration
	// Converge is the time from the end of the last fault to equal zones
	// (or to the give-up when Diffs is not empty).
	Converge     time.Duration
	Diffs        []verify.Diff
	Lost         int // objects/keys missing on zone-b
	Resurrected  int // objects/keys on zone-b only (a delete not applied or undone)
	Other        int // other differences
	AuditRecords int
	Violations   []string      // double-applied shards, batches past their lease
	Crashes      []string      // processes that exited without being told
	VerifyPasses int           // comparisons of the zones until equal (or give-up)
	LastPass     time.Duration // how long the last one took
	// StartRefusals are restarts that exited at start (retried; not a
	// failure of the run, but listed: see RELIABILITY.md).
	StartRefusals  []string
	SpoiledAnswers int64
	FrozenHeld     []int // leases a3 held when frozen, one per SIGSTOP
	WorkloadErr    error
}

// Total is the number of faults injected.
func (r *Report) Total() int {
	n := 0
	for _, v := range r.Faults {
		n += v
	}
	return n
}

// KindTotals sums the faults by family (process, link, lease, gateway).
func (r *Report) KindTotals() map[string]int {
	out := map[string]int{}
	for k, v := range r.Faults {
		fam, _, _ := strings.Cut(k, ":")
		out[fam] += v
	}
	return out
}

// String prints the report.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report (seed %d)\n", r.Seed)
	fams := r.KindTotals()
	fmt.Fprintf(&b, "  faults injected: %d (", r.Total())
	for i, k := range slices.Sorted(maps.Keys(fams)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, fams[k])
	}
	b.WriteString(")\n")
	for _, k := range slices.Sorted(maps.Keys(r.Faults)) {
		fmt.Fprintf(&b, "    %-34s %d\n", k, r.Faults[k])
	}
	ops := 0
	for _, v := range r.Workload {
		ops += v
	}
	fmt.Fprintf(&b, "  workload: %d operations:", ops)
	for _, k := range slices.Sorted(maps.Keys(r.Workload)) {
		fmt.Fprintf(&b, " %s=%d", k, r.Workload[k])
	}
	fmt.Fprintf(&b, "\n  buckets verified: %d, %d of a tenant (+%d removed during the run)\n", len(r.Buckets)+len(r.TenantBucket), len(r.TenantBucket), len(r.RemovedBucket))
	fmt.Fprintf(&b, "  fault phase: %s; converged %s after the last fault\n", r.FaultPhase.Round(time.Second), r.Converge.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "  verification: %d passes, the last took %s\n", r.VerifyPasses, r.LastPass.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "  differences: %d (lost %d, resurrected deletes %d, other %d)\n", len(r.Diffs), r.Lost, r.Resurrected, r.Other)
	fmt.Fprintf(&b, "  audit: %d batches, %d violations (double-applied shards or batches past their lease)\n", r.AuditRecords, len(r.Violations))
	fmt.Fprintf(&b, "  gateway answers spoiled: %d; leases held by a3 when frozen: %v\n", r.SpoiledAnswers, r.FrozenHeld)
	fmt.Fprintf(&b, "  unexpected exits: %d; restarts refused at start (retried): %d\n", len(r.Crashes), len(r.StartRefusals))
	for _, s := range r.StartRefusals {
		fmt.Fprintf(&b, "    START-REFUSED %s\n", s)
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(&b, "    DIFF %s\n", d)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "    AUDIT %s\n", v)
	}
	for _, c := range r.Crashes {
		fmt.Fprintf(&b, "    CRASH %s\n", c)
	}
	if r.WorkloadErr != nil {
		fmt.Fprintf(&b, "  workload error: %v\n", r.WorkloadErr)
	}
	return b.String()
}

// OK reports whether the run found nothing wrong.
func (r *Report) OK() bool {
	return len(r.Diffs) == 0 && len(r.Violations) == 0 && len(r.Crashes) == 0 && r.WorkloadErr == nil
}

// fatal is how the harness's Fatal reaches a fault goroutine (see goTB).
type fatal struct{ msg string }

// goTB lets harness calls made from fault goroutines fail without
// runtime.Goexit on a goroutine that is not the test's: Fatal panics with
// fatal, which the goroutine recovers into an error.
type goTB struct{ labtest.TB }

func (g goTB) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (g goTB) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }

func catch(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatal)
		if !ok {
			panic(r)
		}
		*err = errors.New(f.msg)
	}
}

type run struct {
	cfg   Config
	t     labtest.TB
	e     *synctest.Env
	links *Links
	gw    *FaultGateway
	rep   *Report

	mu        sync.Mutex
	exp       *synctest.Proc
	apps      map[string]*synctest.Proc
	extra     string
	lastFault time.Time
}

func (r *run) count(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Faults[kind]++
}

func (r *run) faultEnded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.After(r.lastFault) {
		r.lastFault = now
	}
}

// Run runs the suite on the lab and returns its report; it fails t only
// when the run could not be set up or driven (the caller judges the
// report).
func Run(t labtest.TB, cfg Config) *Report {
	t.Helper()
	if cfg.Converge == 0 {
		cfg.Converge = 5 * time.Minute
	}
	if cfg.Blackhole == 0 {
		cfg.Blackhole = 36 * time.Second
	}
	rep := &Report{Seed: cfg.Seed, Faults: map[string]int{}}
	e := synctest.NewEnv(goTB{t})
	e.TLS = cfg.TLS
	e.LeaseLength = 6 * time.Second
	prefix := fmt.Sprintf("chaos%d-%s", cfg.Seed%100000, labtest.RandomName("")[:4])
	e.Only(prefix)
	r := &run{cfg: cfg, t: t, e: e, rep: rep, apps: map[string]*synctest.Proc{}, extra: "data:\n  enabled: true\n"}
	if lvl := os.Getenv("CHAOS_LOG_LEVEL"); lvl != "" {
		// The exporter's log level (debug logs every object op it builds:
		// what a lost key's history is traced with).
		r.extra += "log_level: " + lvl + "\n"
	}
	// On failure keep the env's directory (process logs, audit log,
	// bounds.db, the exporter's status at give-up) before t's TempDir goes:
	// registered after NewEnv's TempDir and before the processes, it runs
	// after they are killed and before the directory is removed.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep := os.Getenv("CHAOS_KEEP")
		if keep == "" {
			keep = filepath.Join(labtest.Root(), ".tmp", fmt.Sprintf("chaos-seed%d", cfg.Seed))
		}
		_ = os.RemoveAll(keep)
		if err := os.CopyFS(keep, os.DirFS(e.Dir)); err != nil {
			t.Logf("keep %s: %v", keep, err)
			return
		}
		t.Logf("logs, audit log, bounds and status kept in %s", keep)
	})

	r.setUp()

	ctx := context.Background()
	w, err := workload.New(ctx, workload.Config{Seed: cfg.Seed, Prefix: prefix, Owner: prefix + "-owner",
		Endpoint: e.Lab.ZoneA, LabDir: e.Lab.Dir, Pace: cfg.Pace, Extended: os.Getenv("CHAOS_EXTENDED") == "1"})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	wctx, stopWorkload := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx, 0) }()

	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for i, loop := range []func(*rand.Rand){r.processLoop, r.linkLoop, r.leaseLoop, r.gatewayLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			defer func() {
				if err != nil {
					errs <- err
				}
			}()
			defer catch(&err)
			loop(rand.New(rand.NewPCG(cfg.Seed, uint64(i+1))))
		}()
	}
	wg.Wait()
	stopWorkload()
	rep.WorkloadErr = <-wdone
	rep.FaultPhase = time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("fault loop: %v", err)
	}

	r.heal()
	r.faultEnded()
	rep.SpoiledAnswers = r.gw.Spoiled()
	rep.Workload = w.Counts()
	rep.Buckets = w.Buckets()
	rep.RemovedBucket = w.Removed()
	rep.TenantBucket = w.TenantBuckets()

	r.converge(w)

	recs, err := synctest.ReadAudit(e.AuditPath())
	if err != nil {
		t.Fatal(err)
	}
	rep.AuditRecords = len(recs)
	rep.Violations = synctest.AuditViolations(recs)
	return rep
}

// setUp puts zone-b behind the fault gateway behind toxiproxy "dest" and
// the exporter behind toxiproxy "link", and starts the exporter and the
// three appliers.
func (r *run) setUp() {
	var setupErr error
	func() {
		defer catch(&setupErr)
		// zone-b behind the fault gateway behind toxiproxy "dest"; the
		// exporter behind toxiproxy "link".
		gw, err := NewFaultGateway(r.e.Lab.ZoneB, r.cfg.Seed)
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(gw.Close)
		r.gw = gw
		r.links = NewLinks()
		r.t.Cleanup(r.links.Close)
		gu, _ := url.Parse(gw.URL())
		destAddr, err := r.links.Add("dest", gu.Host)
		if err != nil {
			r.t.Fatal(err)
		}
		linkAddr, err := r.links.Add("link", r.e.ExporterAddr)
		if err != nil {
			r.t.Fatal(err)
		}
		r.e.DestEndpoint = "http://" + destAddr
		r.e.ExporterDial = linkAddr
		r.exp = r.e.StartExporter(r.extra)
		for _, id := range []string{"a1", "a2", "a3"} {
			r.apps[id] = r.e.StartApplier(id)
		}
	}()
	if setupErr != nil {
		r.t.Fatal(setupErr)
	}
}

// heal ends every fault (no toxics, no spoiled answers) and restarts any
// process that exited by itself (recorded as a crash).
func (r *run) heal() {
	// Heal: no toxics, no spoiled answers, every process running.
	for _, p := range []string{"link", "dest"} {
		if err := r.links.Clear(p); err != nil {
			r.t.Fatal(err)
		}
	}
	r.gw.Set(GatewayOK)
	var healErr error
	func() {
		defer catch(&healErr)
		// the fault loops are over: nothing else touches r.exp and r.apps
		r.apps["a3"].Signal(syscall.SIGCONT)
		if r.exp.Exited() {
			r.rep.Crashes = append(r.rep.Crashes, "exporter exited by itself:\n"+tail(r.exp.Log(), 30))
			r.exp = r.restart("exporter")
		}
		for _, id := range slices.Sorted(maps.Keys(r.apps)) {
			if p := r.apps[id]; p.Exited() {
				r.rep.Crashes = append(r.rep.Crashes, "applier "+id+" exited by itself:\n"+tail(p.Log(), 30))
				r.apps[id] = r.restart(id)
			}
		}
	}()
	if healErr != nil {
		r.t.Fatal(healErr)
	}
}

// converge polls the verifiers until zone-b equals zone-a or cfg.Converge
// passes, and fills the report's differences.
func (r *run) converge(w *workload.Workload) {
	e, rep := r.e, r.rep
	deadline := time.Now().Add(r.cfg.Converge)
	src, dst := workload.Client(e.Lab.ZoneA, w.Owner()), workload.Client(e.Lab.ZoneB, w.Owner())
	keep := synctest.Prefix(strings.TrimSuffix(w.Owner(), "-owner"))
	// pass compares everything once; its own timeout, so the give-up never
	// cuts a pass short and the last complete pass's differences are
	// reported.
	pass := func() ([]verify.Diff, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		diffs, err := verify.Metadata(ctx, e.Src, e.Dst, rgwlog.DefaultSections, keep)
		if err != nil {
			return nil, err
		}
		for _, b := range rep.Buckets {
			d, err := verify.Objects(ctx, src, dst, b)
			if err != nil {
				return nil, err
			}
			diffs = append(diffs, d...)
		}
		for _, tb := range rep.TenantBucket {
			d, err := verify.Objects(ctx, workload.Client(e.Lab.ZoneA, tb.User), workload.Client(e.Lab.ZoneB, tb.User), tb.Bucket)
			if err != nil {
				return nil, err
			}
			diffs = append(diffs, d...)
		}
		for _, b := range rep.RemovedBucket {
			if _, err := dst.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err == nil {
				diffs = append(diffs, verify.Diff{Section: "bucket", Key: b, What: "removed on the source, still on the destination"})
			}
		}
		return diffs, nil
	}
	var last []verify.Diff
	var lastErr error
	complete := false
	for {
		t0 := time.Now()
		diffs, err := pass()
		rep.VerifyPasses++
		rep.LastPass = time.Since(t0)
		if err == nil {
			last, complete = diffs, true
			if len(diffs) == 0 {
				break
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	r.mu.Lock()
	rep.Converge = time.Since(r.lastFault)
	r.mu.Unlock()
	if len(last) > 0 || !complete {
		// What the exporter thinks at give-up, for the post-mortem.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if st, err := synctest.StatusOf(ctx, e.ExporterAddr, e.Dest, e.DialOption(e.ExporterAddr)); err == nil {
			b, _ := protojson.MarshalOptions{Multiline: true}.Marshal(st)
			_ = os.WriteFile(filepath.Join(e.Dir, "exporter-status.json"), b, 0o644)
		}
		cancel()
	}
	if !complete {
		last = []verify.Diff{{Section: "verify", Key: "-", What: fmt.Sprintf("no complete comparison: %v", lastErr)}}
	}
	rep.Diffs = last
	for _, d := range last {
		switch {
		case strings.Contains(d.What, "missing on the destination"):
			rep.Lost++
		case strings.Contains(d.What, "only on the destination"), strings.Contains(d.What, "still on the destination"):
			rep.Resurrected++
		default:
			rep.Other++
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
