package main

// The two systems a benchmark measures: rgwsync (its two services on the
// lab) and Ceph's built-in sync, and how each says it is done.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
)

// system is what a workload is timed on: rgwsync (restarted to catch up)
// or the built-in sync (zone-b's gateway frozen with SIGSTOP while the
// workload is written, then thawed).
type system interface {
	name() string
	pause(ctx context.Context) error  // before the workload is written
	resume(ctx context.Context) error // the clock starts just before
	done(ctx context.Context, phase string) error
	settle(ctx context.Context) error // wait until nothing is pending
}

// deployment is one exporter + one applier of rgwsync, run with the
// production defaults (no sync: tuning), stopped between workloads so each
// one is a catch-up.
type deployment struct {
	env                    *synctest.Env
	expBin, appBin         string
	expCfg, appCfg         string
	expMetrics, appMetrics string
	exp, app               *synctest.Proc
	r                      *results
	round                  int
}

func (d *deployment) name() string { return "rgwsync" }

func (d *deployment) pause(context.Context) error {
	if d.app != nil {
		if err := d.app.Stop(); err != nil {
			return err
		}
		d.app = nil
	}
	if d.exp != nil {
		if err := d.exp.Stop(); err != nil {
			return err
		}
		d.exp = nil
	}
	return nil
}

func (d *deployment) resume(context.Context) error {
	return protect(func() error {
		d.exp = d.env.Start("exporter", d.expBin, "-config", d.expCfg, "-log-level", logLevel)
		if err := waitListen(d.exp, d.env.ExporterAddr); err != nil {
			return err
		}
		d.app = d.env.Start("applier", d.appBin, "-config", d.appCfg, "-log-level", logLevel)
		return nil
	})
}

var logLevel = "info"

func waitListen(p *synctest.Proc, addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited at start:\n%s", p.Name, p.Log())
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s does not listen on %s", p.Name, addr)
}

// done records the services' peak RSS and what their metrics say of the
// phase (kept as notes for BENCHMARKS.md).
func (d *deployment) done(ctx context.Context, phase string) error {
	for _, p := range []*synctest.Proc{d.exp, d.app} {
		if p == nil || p.Exited() {
			return fmt.Errorf("rgwsync: a service is not running at the end of %s", phase)
		}
		hwm, err := peakRSS(p.PID())
		if err != nil {
			return err
		}
		d.r.add("rss/"+phase+"/"+p.Name, float64(hwm))
		logf("rgwsync: %s peak RSS (VmHWM) in the %s run: %.1f MiB", p.Name, phase, float64(hwm)/(1<<20))
	}
	am, err := scrape(ctx, d.appMetrics)
	if err != nil {
		return err
	}
	em, err := scrape(ctx, d.expMetrics)
	if err != nil {
		return err
	}
	d.r.note("round %d %s: applier batches %.0f (%.3f s each on average), object ops %.0f (%.1f ms each), bytes %.0f; exporter batches sent %.0f, object bytes read %.0f, errors exporter %.0f applier %.0f",
		d.round, phase,
		am["rgwsync_applier_batch_apply_seconds_count"], div(am["rgwsync_applier_batch_apply_seconds_sum"], am["rgwsync_applier_batch_apply_seconds_count"]),
		am["rgwsync_applier_object_apply_seconds_count"], 1000*div(am["rgwsync_applier_object_apply_seconds_sum"], am["rgwsync_applier_object_apply_seconds_count"]),
		am["rgwsync_applier_bytes_applied_total"],
		em["rgwsync_exporter_batches_sent_total"], em["rgwsync_exporter_object_bytes_read_total"],
		em["rgwsync_exporter_errors_total"], am["rgwsync_applier_errors_total"])
	var res []string
	for k, v := range am {
		if r, ok := strings.CutPrefix(k, `rgwsync_applier_objects_applied_total{result="`); ok && v > 0 {
			res = append(res, fmt.Sprintf("%s %.0f", strings.TrimSuffix(r, `"}`), v))
		}
	}
	if len(res) > 0 {
		sort.Strings(res)
		d.r.note("round %d %s: applier object results: %s", d.round, phase, strings.Join(res, ", "))
	}
	return nil
}

// settle waits until the exporter reports no shard behind (its gauges
// refresh every 5 s).
func (d *deployment) settle(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	time.Sleep(6 * time.Second)
	for time.Now().Before(deadline) {
		m, err := scrape(ctx, d.expMetrics)
		if err == nil && m["rgwsync_exporter_shards_behind"] == 0 {
			return nil
		}
		time.Sleep(time.Second)
	}
	logf("rgwsync: still shards behind after 3 minutes; going on")
	return nil
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// scrape sums each Prometheus metric over its labels.
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		name := l[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[name] += v
			if name != l[:i] {
				out[l[:i]] = v // and each labelled series on its own
			}
		}
	}
	return out, sc.Err()
}

// builtin is Ceph's own sync on the second lab.
type builtin struct{ lab *labtest.Lab }

func (b *builtin) name() string { return "built-in" }

func (b *builtin) pause(context.Context) error {
	return signalDaemon(b.lab.Dir, "rgw.b", syscall.SIGSTOP)
}

func (b *builtin) resume(context.Context) error {
	return signalDaemon(b.lab.Dir, "rgw.b", syscall.SIGCONT)
}

func (b *builtin) done(context.Context, string) error { return nil }

func (b *builtin) settle(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	var st string
	for time.Now().Before(deadline) {
		var err error
		st, err = builtinSyncStatus(ctx, b.lab)
		if err == nil && strings.Contains(st, "metadata is caught up") && strings.Contains(st, "data is caught up") {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	logf("built-in: not caught up after 3 minutes; going on:\n%s", st)
	return nil
}
