package applier

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/rgwsync/rgwsync/internal/lease"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Every lease lost while running counts as a move, by reason; a release
// at shutdown does not.
func TestLeaseMovesByReason(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Config{ID: "a1", Destination: "d", Dest: nopDest{}, Conn: &grpcConnStub{}, Metrics: NewMetrics(reg)})
	require.NoError(t, err)
	u := rgwlog.Unit{Log: rgwlog.LogData, Shard: 3}
	for _, r := range []string{"rebalanced", "locked by another applier", "expired before renewal", "expired before renewal",
		"revoked by the exporter", "shutting down"} {
		a.LeaseChanged(lease.Event{Unit: u, Held: true})
		a.LeaseChanged(lease.Event{Unit: u, Held: false, Reason: r})
	}
	want := `
# HELP rgwsync_applier_lease_moves_total Shard leases given up or lost while running (not at shutdown), by reason: rebalanced (another member owns it now), taken (locked by another applier), expired (not renewed in time), revoked (by the exporter).
# TYPE rgwsync_applier_lease_moves_total counter
rgwsync_applier_lease_moves_total{reason="expired"} 2
rgwsync_applier_lease_moves_total{reason="rebalanced"} 1
rgwsync_applier_lease_moves_total{reason="revoked"} 1
rgwsync_applier_lease_moves_total{reason="taken"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "rgwsync_applier_lease_moves_total"))
}

// grpcConnStub is a connection never used (the test does not run).
type grpcConnStub struct{ grpc.ClientConnInterface }
