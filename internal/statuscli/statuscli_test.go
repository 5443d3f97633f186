package statuscli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

func resp(at time.Time, applied, bytes uint64, shard3Behind uint64) *v1.StatusResponse {
	old := at.Add(-3 * time.Second)
	return &v1.StatusResponse{Role: "exporter", Id: "exp", Gateway: "http://a", Now: timestamppb.New(at),
		Destinations: []*v1.DestinationStatus{{
			Destination: "zone-b", Appliers: []string{"a1"}, EntriesApplied: applied, BytesApplied: bytes,
			Shards: []*v1.ShardStatus{
				{Shard: &v1.ShardRef{LogType: v1.LogType_LOG_TYPE_METADATA_FULL}, Phase: v1.ShardPhase_SHARD_PHASE_DONE},
				{Shard: &v1.ShardRef{LogType: v1.LogType_LOG_TYPE_METADATA, Shard: 0}, Phase: v1.ShardPhase_SHARD_PHASE_CAUGHT_UP},
				{Shard: &v1.ShardRef{LogType: v1.LogType_LOG_TYPE_METADATA, Shard: 3}, Phase: v1.ShardPhase_SHARD_PHASE_INCREMENTAL,
					EntriesBehind: shard3Behind, Retries: 1, LeaseHolder: "a1", LastError: "503", OldestUnapplied: timestamppb.New(old), Resyncs: 2},
			},
		}}}
}

func TestReportRatesAndBehind(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	r := build(resp(t0, 100, 1000, 5), resp(t0.Add(2*time.Second), 300, 5000, 4))
	require.Len(t, r.Destinations, 1)
	d := r.Destinations[0]
	require.InDelta(t, 100, d.EntriesPerSec, 0.001)
	require.InDelta(t, 2000, d.BytesPerSec, 0.001)
	require.Len(t, d.Logs, 2)
	md := d.Logs[0]
	require.Equal(t, "metadata", md.Log)
	require.Equal(t, 2, md.Shards)
	require.Equal(t, 1, md.CaughtUp)
	require.Equal(t, 1, md.Behind)
	require.Equal(t, uint32(1), md.Retries)
	require.Equal(t, uint32(2), md.Resyncs)
	require.InDelta(t, 3, md.LagSeconds, 0.001)
	require.Equal(t, uint32(3), md.BehindShards[0].Shard)
	require.Equal(t, "DONE", d.Logs[1].Phase)

	var text bytes.Buffer
	require.NoError(t, Print(&text, r, false))
	for _, s := range []string{"destination zone-b", "1/2 shards caught up, 1 behind", "oldest unapplied change 3s ago",
		"shard 3", "last error: 503", "full sync done", "100.0 entries/s", "2.0 KiB/s", "2 re-syncs"} {
		require.Contains(t, text.String(), s)
	}
	var js bytes.Buffer
	require.NoError(t, Print(&js, r, true))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, r.Destinations[0].Logs[0].Behind, back.Destinations[0].Logs[0].Behind)
}

func TestMainNeedsCredentials(t *testing.T) {
	err := Main([]string{"-addr", "127.0.0.1:1"}, "", &bytes.Buffer{})
	require.ErrorContains(t, err, "-cacert, -cert and -key are required")
}

// A gateway that does not answer is the status's first line (issue #16: at
// once, not only as retries piling up), in text and JSON.
func TestGatewayDownIsShown(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	second := resp(t0.Add(2*time.Second), 300, 5000, 4)
	second.GatewayDown, second.GatewayError = true, "PUT /b/k: dial tcp 127.0.0.1:8002: connect: connection refused"
	second.GatewayStateSince = timestamppb.New(t0.Add(-40 * time.Second))
	r := build(resp(t0, 100, 1000, 5), second)
	var text bytes.Buffer
	require.NoError(t, Print(&text, r, false))
	require.Contains(t, text.String(), "GATEWAY DOWN: http://a has not answered since 2026-12-07T14:59:20Z (42s ago): PUT /b/k: dial tcp")
	var js bytes.Buffer
	require.NoError(t, Print(&js, r, true))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.True(t, back.GatewayDown)
	require.Contains(t, back.GatewayError, "connection refused")

	text.Reset()
	require.NoError(t, Print(&text, build(resp(t0, 100, 1000, 5), resp(t0.Add(2*time.Second), 300, 5000, 4)), false))
	require.NotContains(t, text.String(), "GATEWAY DOWN")
}
