// Command bench measures rgwsync on the real lab against its two
// yardsticks (docs: BENCHMARKS.md, DESIGN.md "Yardsticks"): Ceph's built-in
// multisite sync (a second lab with RGW_B_SYNC_THREAD=true) and the copy
// floor (a plain parallel GET-from-zone-a / PUT-to-zone-b copier, 16
// goroutines). Workloads: small objects and large objects caught up after
// the replicator was down, metadata (users and buckets) caught up, and the
// lag of a trickle of small writes; plus the peak RSS of the exporter and
// the applier while large objects stream. It prints a table of rates and
// ratios. A missed target is reported, not failed; an error (a lab that
// does not boot, a verification mismatch) exits 1.
//
// It boots and stops its own labs (deploy/ceph-lab/start.sh, stop.sh):
// first the rgwsync lab (rgwsync and the copy floor), then the built-in
// sync lab, one after the other so their memstores never add up.
//
//	go run ./internal/testkit/bench [-n 1] [-quick] ...   (make bench)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
)

type options struct {
	rounds                        int
	users, metaBuckets            int
	smallObjects, smallBuckets    int
	smallSize                     int
	largeCount                    int
	largeSize, partSize, hugeSize int64
	lagFor, lagEvery              time.Duration
	copyWorkers                   int
	skipBuiltin, skipRgwsync      bool
	labA, labB                    labSpec
	logLevel                      string
	objectStore                   string
	scale                         int
	verifyObjects                 int
	verifyOnly                    bool
}

func main() {
	var o options
	o.labA = labSpec{Name: "rgwsync", BuiltinSync: false}
	o.labB = labSpec{Name: "builtin", BuiltinSync: true}
	flag.IntVar(&o.rounds, "n", 1, "rounds of every workload; the table shows medians")
	flag.IntVar(&o.users, "users", 200, "metadata workload: users")
	flag.IntVar(&o.metaBuckets, "meta-buckets", 1000, "metadata workload: buckets (spread over the users)")
	flag.IntVar(&o.smallObjects, "small-objects", 5000, "small-object workload: objects")
	flag.IntVar(&o.smallBuckets, "small-buckets", 10, "small-object workload: buckets")
	flag.IntVar(&o.smallSize, "small-size", 4096, "small-object workload: bytes per object")
	flag.IntVar(&o.largeCount, "large-count", 4, "large-object workload: objects")
	flag.Int64Var(&o.largeSize, "large-size", 256<<20, "large-object workload: bytes per object (multipart)")
	flag.Int64Var(&o.partSize, "part-size", 8<<20, "multipart part size of the large objects (and of the copy floor's ranged copies)")
	flag.Int64Var(&o.hugeSize, "huge-size", 1<<30, "one object of this size streamed through rgwsync alone, for its peak RSS (0: skip)")
	flag.DurationVar(&o.lagFor, "lag", 30*time.Second, "lag workload duration (0: skip)")
	flag.DurationVar(&o.lagEvery, "lag-every", 200*time.Millisecond, "lag workload: one small object every ...")
	flag.IntVar(&o.copyWorkers, "copy-workers", 16, "copy floor goroutines")
	flag.BoolVar(&o.skipBuiltin, "skip-builtin", false, "do not boot the built-in sync lab")
	flag.BoolVar(&o.skipRgwsync, "skip-rgwsync", false, "do not boot the rgwsync lab (rgwsync and the copy floor)")
	flag.StringVar(&o.labA.Dir, "lab-dir", envOr("BENCH_LAB", "/tmp/rgwsync-bench-lab"), "LAB of the rgwsync lab")
	flag.IntVar(&o.labA.Mon, "mon-port", envInt("BENCH_MON_PORT", 29789), "monitor port of the rgwsync lab")
	flag.IntVar(&o.labA.A, "zone-a-port", envInt("BENCH_RGW_A_PORT", 29001), "zone-a port of the rgwsync lab")
	flag.IntVar(&o.labA.B, "zone-b-port", envInt("BENCH_RGW_B_PORT", 29002), "zone-b port of the rgwsync lab")
	flag.StringVar(&o.labB.Dir, "builtin-lab-dir", envOr("BENCH_BUILTIN_LAB", "/tmp/rgwsync-bench-builtin-lab"), "LAB of the built-in sync lab")
	flag.IntVar(&o.labB.Mon, "builtin-mon-port", envInt("BENCH_BUILTIN_MON_PORT", 29889), "monitor port of the built-in sync lab")
	flag.IntVar(&o.labB.A, "builtin-zone-a-port", envInt("BENCH_BUILTIN_RGW_A_PORT", 29101), "zone-a port of the built-in sync lab")
	flag.IntVar(&o.labB.B, "builtin-zone-b-port", envInt("BENCH_BUILTIN_RGW_B_PORT", 29102), "zone-b port of the built-in sync lab")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level of the exporter and applier")
	flag.StringVar(&o.objectStore, "objectstore", envOr("BENCH_OBJECTSTORE", "bluestore"),
		"OSD object store of both labs: bluestore (a 10 GiB sparse file: little RAM) or memstore (RAM: about twice the data)")
	flag.IntVar(&o.scale, "scale", 10, "rgwsync only: the small-object and metadata workloads again at this many times their size, for the cost per item as the size grows (0 or 1: skip)")
	flag.IntVar(&o.verifyObjects, "verify-objects", 0, "rgwsync only: a bucket of this many objects synced, then compared by `rgwsync-applier verify` (0: skip; make bench-verify: 100000)")
	flag.BoolVar(&o.verifyOnly, "verify-only", false, "only the verify workload (with -verify-objects; no built-in lab)")
	quick := flag.Bool("quick", false, "a small run to check the setup (500 objects, 4 x 32 MiB, 20 users, 100 buckets, no 1 GiB object, 10 s lag, scale 2)")
	flag.Parse()
	if *quick {
		o.users, o.metaBuckets, o.smallObjects, o.largeSize, o.hugeSize, o.lagFor, o.scale = 20, 100, 500, 32<<20, 0, 10*time.Second, 2
	}
	if o.verifyOnly {
		o.skipBuiltin = true
	}
	o.labA.ObjectStore, o.labB.ObjectStore = o.objectStore, o.objectStore
	// Each lab's one OSD holds both zones. The rgwsync lab stores, per
	// round: the large objects three times (zone-a, zone-b, the copy
	// floor's copy), the huge object twice, small objects three times;
	// memstore takes about twice the bytes stored (a 7 GiB memstore filled
	// up with 4.2 GiB of objects), bluestore's file is 10 GiB.
	per := 3*int64(o.largeCount)*o.largeSize + 2*o.hugeSize + 3*int64(o.smallObjects)*int64(o.smallSize)*2 +
		int64(max(o.scale, 0))*2*int64(o.smallObjects)*int64(o.smallSize)*2
	o.labA.MemstoreBytes = 2*int64(o.rounds)*per + 2<<30
	o.labB.MemstoreBytes = 2*int64(o.rounds)*(2*int64(o.largeCount)*o.largeSize+2*int64(o.smallObjects)*int64(o.smallSize)*2) + 2<<30
	if o.objectStore == "bluestore" && int64(o.rounds)*per > 8<<30 {
		fmt.Fprintf(os.Stderr, "bench: %d rounds store about %d GiB in the rgwsync lab, more than its 10 GiB bluestore file holds: use fewer rounds, smaller objects or -objectstore memstore\n", o.rounds, int64(o.rounds)*per>>30)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

func run(ctx context.Context, o options) (code int) {
	defer synctest.RemoveBinaries()
	start := time.Now()
	r := &results{v: map[string][]float64{}}
	tb := &benchTB{dir: mustTemp()}
	defer os.RemoveAll(tb.dir)
	fail := func(lab labSpec, err error) int {
		fmt.Fprintf(os.Stderr, "bench: ERROR: %v\n", err)
		tb.failed = true
		tb.cleanup()
		if !errors.Is(err, errLabInUse) { // another run's lab: not ours to stop
			lab.stop(true)
		}
		return 1
	}
	// rgwsync lab: rgwsync, then the copy floor.
	if !o.skipRgwsync {
		if err := runRgwsyncLab(ctx, tb, o, r); err != nil {
			return fail(o.labA, err)
		}
		tb.cleanup()
		o.labA.stop(false)
	}
	if !o.skipBuiltin {
		if err := runBuiltinLab(ctx, o, r); err != nil {
			return fail(o.labB, err)
		}
		o.labB.stop(false)
	}
	r.print(os.Stdout, o, time.Since(start))
	return 0
}

// benchTB runs the synctest harness outside `go test` (like the demo's).
type benchTB struct {
	dir      string
	n        int
	cleanups []func()
	failed   bool
}

// fatal is what Fatal panics with; protect turns it back into an error.
type fatal struct{ msg string }

func (d *benchTB) Helper()                 {}
func (d *benchTB) Logf(f string, a ...any) { logf(f, a...) }
func (d *benchTB) Fatal(a ...any)          { d.failed = true; panic(fatal{fmt.Sprint(a...)}) }
func (d *benchTB) Fatalf(f string, a ...any) {
	d.failed = true
	panic(fatal{fmt.Sprintf(f, a...)})
}
func (d *benchTB) Cleanup(f func()) { d.cleanups = append(d.cleanups, f) }
func (d *benchTB) Failed() bool     { return d.failed }
func (d *benchTB) TempDir() string {
	d.n++
	p := filepath.Join(d.dir, fmt.Sprint(d.n))
	if err := os.MkdirAll(p, 0o755); err != nil {
		panic(err)
	}
	return p
}

func (d *benchTB) cleanup() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// protect runs f, turning a harness Fatal into an error.
func protect(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if ft, ok := v.(fatal); ok {
				err = fmt.Errorf("%s", ft.msg)
				return
			}
			panic(v)
		}
	}()
	return f()
}

func mustTemp() string {
	d, err := os.MkdirTemp("", "rgwsync-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return d
}

var t0 = time.Now()

func logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] "+f+"\n", append([]any{time.Since(t0).Seconds()}, a...)...)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(k), &n); err == nil {
		return n
	}
	return def
}

// results keeps every round's figure by name ("small/rgwsync").
type results struct {
	v     map[string][]float64
	notes []string
}

func (r *results) add(name string, v float64) { r.v[name] = append(r.v[name], v) }
func (r *results) note(f string, a ...any)    { r.notes = append(r.notes, fmt.Sprintf(f, a...)) }

// med is the median of a figure, ok false when it was not measured.
func (r *results) med(name string) (float64, bool) {
	v := slices.Clone(r.v[name])
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

func hostLine() string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, %s", runtime.NumCPU(), cpu, mem, runtime.Version())
}
