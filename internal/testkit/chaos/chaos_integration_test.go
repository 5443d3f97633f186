//go:build integration

package chaos

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Stop()
	synctest.RemoveBinaries()
	os.Exit(code)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// judge logs the report and fails the test on any difference, audit
// violation, unexpected exit or workload error, and when a fault family
// asked for was not played.
func judge(t *testing.T, cfg Config, rep *Report) {
	t.Helper()
	t.Log("\n" + rep.String())
	if out := os.Getenv("CHAOS_REPORT"); out != "" {
		if err := os.WriteFile(out, []byte(rep.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	fams := rep.KindTotals()
	for fam, want := range map[string]int{"process": cfg.Kills, "link": cfg.LinkFaults, "lease": cfg.LeaseFaults, "gateway": cfg.GatewayFaults} {
		if fams[fam] < want {
			t.Errorf("%s faults: %d injected, %d asked for", fam, fams[fam], want)
		}
	}
	if !rep.OK() {
		t.Errorf("the replicator did not survive the faults: %d differences (lost %d, resurrected %d, other %d), %d audit violations, %d unexpected exits, workload error %v",
			len(rep.Diffs), rep.Lost, rep.Resurrected, rep.Other, len(rep.Violations), len(rep.Crashes), rep.WorkloadErr)
	}
}

// TestChaosShort is the seeded subset that runs in `make test`: a few kills
// of each side (kill -9 and SIGTERM), one of each link toxic but the black
// hole, one SIGSTOP of an applier past its lease, and gateway faults, over
// about 100 s; then the zones must converge with no difference. It runs in
// `make test` (so in CI) and alone in `make chaos-short`.
func TestChaosShort(t *testing.T) {
	cfg := Config{
		Seed:          uint64(envInt(t, "CHAOS_SEED", 20260806)),
		Kills:         6,
		LinkFaults:    5,
		LeaseFaults:   1,
		GatewayFaults: 3,
		Duration:      100 * time.Second,
		Pace:          100 * time.Millisecond,
		Converge:      3 * time.Minute,
		Blackhole:     36 * time.Second,
		TLS:           true,
	}
	judge(t, cfg, Run(t, cfg))
}

// TestChaos is the full run of `make chaos`, sized by CHAOS_SEED,
// CHAOS_KILLS, CHAOS_LINK_FAULTS, CHAOS_LEASE_FAULTS, CHAOS_GATEWAY_FAULTS
// and CHAOS_DURATION (the fault phase); it runs only when CHAOS_KILLS is
// set.
func TestChaos(t *testing.T) {
	if os.Getenv("CHAOS_KILLS") == "" {
		t.Skip("the full chaos run is `make chaos` (set CHAOS_KILLS to run it here)")
	}
	cfg := Config{
		Seed:          uint64(envInt(t, "CHAOS_SEED", int(time.Now().UnixNano()%1000000))),
		Kills:         envInt(t, "CHAOS_KILLS", 110),
		LinkFaults:    envInt(t, "CHAOS_LINK_FAULTS", 24),
		LeaseFaults:   envInt(t, "CHAOS_LEASE_FAULTS", 6),
		GatewayFaults: envInt(t, "CHAOS_GATEWAY_FAULTS", 15),
		Duration:      envDuration(t, "CHAOS_DURATION", 12*time.Minute),
		Pace:          envDuration(t, "CHAOS_PACE", 100*time.Millisecond),
		Converge:      envDuration(t, "CHAOS_CONVERGE", 5*time.Minute),
		TLS:           os.Getenv("CHAOS_TLS") != "0",
	}
	t.Logf("chaos: seed %d (CHAOS_SEED=%d reproduces the workload and the fault schedule)", cfg.Seed, cfg.Seed)
	judge(t, cfg, Run(t, cfg))
}
