package chaos

// The fault loops of a chaos run: processes killed and restarted, link
// faults (toxiproxy), lease thefts (a frozen applier), spoiled gateway
// answers.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
)

// slots spreads n events over d: the start of event i, jittered by up to
// half a slot.
func slots(rng *rand.Rand, n int, d time.Duration) []time.Duration {
	if n == 0 {
		return nil
	}
	slot := d / time.Duration(n)
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i)*slot + time.Duration(rng.Int64N(int64(slot/2)+1))
	}
	return out
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

func (r *run) processLoop(rng *rand.Rand) {
	start := time.Now()
	targets := []string{"exporter", "a1", "a2"}
	for i, at := range slots(rng, r.cfg.Kills, r.cfg.Duration) {
		sleepUntil(start.Add(at))
		// The first three faults hit each target once, so even a short run
		// kills both sides.
		target := targets[i%3]
		if i >= 3 {
			target = targets[rng.IntN(3)]
		}
		graceful := i%5 == 4 // every fifth fault is a graceful restart
		down := time.Duration(rng.IntN(1500)) * time.Millisecond
		r.mu.Lock()
		var p *synctest.Proc
		if target == "exporter" {
			p = r.exp
		} else {
			p = r.apps[target]
		}
		r.mu.Unlock()
		if p.Exited() {
			r.mu.Lock()
			r.rep.Crashes = append(r.rep.Crashes, target+" exited by itself:\n"+tail(p.Log(), 30))
			r.mu.Unlock()
		}
		kind := "process:kill-9-" + target
		if graceful {
			kind = "process:sigterm-" + target
			if err := p.Stop(); err != nil {
				r.mu.Lock()
				r.rep.Crashes = append(r.rep.Crashes, fmt.Sprintf("%s: %v", target, err))
				r.mu.Unlock()
			}
		} else {
			p.Kill()
		}
		r.count(kind)
		time.Sleep(down)
		np := r.restart(target)
		r.mu.Lock()
		if target == "exporter" {
			r.exp = np
		} else {
			r.apps[target] = np
		}
		r.mu.Unlock()
		r.faultEnded()
	}
}

// restart starts target again. A start that fails (the process exits at
// start, e.g. its start-up check of the gateway got a spoiled answer) is
// recorded in the report and retried a second later, as a supervisor
// (systemd Restart=on-failure, Kubernetes) would.
func (r *run) restart(target string) *synctest.Proc {
	for attempt := 1; ; attempt++ {
		var p *synctest.Proc
		var err error
		func() {
			defer catch(&err)
			if target == "exporter" {
				p = r.e.StartExporter(r.extra)
			} else {
				p = r.e.StartApplier(target)
			}
		}()
		if err == nil {
			return p
		}
		r.mu.Lock()
		r.rep.StartRefusals = append(r.rep.StartRefusals, fmt.Sprintf("%s (attempt %d): %s", target, attempt, firstLines(err.Error(), 3)))
		r.mu.Unlock()
		if attempt == 20 {
			panic(fatal{fmt.Sprintf("%s does not start after %d attempts: %v", target, attempt, err)})
		}
		time.Sleep(time.Second)
	}
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

// linkFault is one toxic setup: name, and how to apply it.
type linkFault struct {
	name  string
	apply func(l *Links, proxy string) error
	hold  func(r *run, rng *rand.Rand) time.Duration
}

func both(l *Links, proxy, name, typ, attrs string) error {
	if err := l.Toxic(proxy, name+"-up", typ, "upstream", attrs); err != nil {
		return err
	}
	return l.Toxic(proxy, name+"-down", typ, "downstream", attrs)
}

func holdFor(min, spread time.Duration) func(*run, *rand.Rand) time.Duration {
	return func(_ *run, rng *rand.Rand) time.Duration { return min + time.Duration(rng.Int64N(int64(spread))) }
}

func (r *run) linkLoop(rng *rand.Rand) {
	start := time.Now()
	order := rng.Perm(len(linkFaults))
	for i, at := range slots(rng, r.cfg.LinkFaults, r.cfg.Duration) {
		sleepUntil(start.Add(at))
		f := linkFaults[order[i%len(order)]]
		proxy := []string{"link", "dest"}[(i/len(order)+i)%2]
		if err := f.apply(r.links, proxy); err != nil {
			panic(fatal{err.Error()})
		}
		r.count("link:" + f.name + "@" + proxy)
		time.Sleep(f.hold(r, rng))
		if err := r.links.Clear(proxy); err != nil {
			panic(fatal{err.Error()})
		}
		r.faultEnded()
	}
}

func (r *run) leaseLoop(rng *rand.Rand) {
	start := time.Now()
	for _, at := range slots(rng, r.cfg.LeaseFaults, r.cfg.Duration) {
		sleepUntil(start.Add(at))
		r.mu.Lock()
		a3 := r.apps["a3"]
		r.mu.Unlock()
		held := heldBy(a3.Addr, r.e)
		a3.Signal(syscall.SIGSTOP)
		r.count("lease:sigstop-a3")
		r.mu.Lock()
		r.rep.FrozenHeld = append(r.rep.FrozenHeld, held)
		r.mu.Unlock()
		time.Sleep(2*r.e.LeaseLength + time.Duration(rng.IntN(4000))*time.Millisecond)
		a3.Signal(syscall.SIGCONT)
		r.faultEnded()
	}
}

func (r *run) gatewayLoop(rng *rand.Rand) {
	start := time.Now()
	order := rng.Perm(len(GatewayModes))
	for i, at := range slots(rng, r.cfg.GatewayFaults, r.cfg.Duration) {
		sleepUntil(start.Add(at))
		m := GatewayModes[order[i%len(order)]]
		r.gw.Set(m)
		r.count("gateway:" + m)
		time.Sleep(8*time.Second + time.Duration(rng.IntN(8000))*time.Millisecond)
		r.gw.Set(GatewayOK)
		r.faultEnded()
	}
}

// heldBy is the number of units addr's applier holds a valid lease on.
func heldBy(addr string, e *synctest.Env) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := synctest.StatusOf(ctx, addr, "", e.DialOption(addr))
	if err != nil {
		return -1
	}
	n := 0
	for _, d := range st.GetDestinations() {
		for _, s := range d.GetShards() {
			if s.GetLeaseHolder() != "" && s.GetLeaseExpires().AsTime().After(time.Now()) {
				n++
			}
		}
	}
	return n
}

var linkFaults = []linkFault{
	{"latency-100ms-rtt", func(l *Links, p string) error {
		return both(l, p, "latency", "latency", `{"latency":50,"jitter":10}`)
	}, holdFor(10*time.Second, 10*time.Second)},
	{"bandwidth-256KiBps", func(l *Links, p string) error {
		return both(l, p, "bw", "bandwidth", `{"rate":256}`)
	}, holdFor(10*time.Second, 10*time.Second)},
	{"reset-peer", func(l *Links, p string) error {
		return both(l, p, "reset", "reset_peer", `{"timeout":200}`)
	}, holdFor(3*time.Second, 4*time.Second)},
	{"blackhole", func(l *Links, p string) error {
		// data dropped, connections closed when the toxic goes (or after
		// an hour): a silent partition.
		return both(l, p, "blackhole", "timeout", `{"timeout":3600000}`)
	}, func(r *run, _ *rand.Rand) time.Duration { return r.cfg.Blackhole }},
	{"half-open-limit-data", func(l *Links, p string) error {
		return l.Toxic(p, "limit-down", "limit_data", "downstream", `{"bytes":32768}`)
	}, holdFor(8*time.Second, 8*time.Second)},
	{"slow-close", func(l *Links, p string) error {
		return both(l, p, "slowclose", "slow_close", `{"delay":5000}`)
	}, holdFor(8*time.Second, 8*time.Second)},
}
