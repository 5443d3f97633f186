package statuscli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

func TestPrintBacklog(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	resp := &v1.BacklogResponse{Total: 3, Truncated: true,
		Shards: []*v1.BucketShardBacklog{
			{BucketShard: "photos:inst.2:0", Phase: "incremental", Bound: "00000000003.4.5", Head: "00000000009.10.5",
				Waiting: "1 items kept for retry", EntriesBehind: 2, More: true, Retries: 1},
			{BucketShard: "photos:inst.2:1", Phase: "incremental", Bound: "00000000001.2.5", Head: "00000000001.2.5"},
			{BucketShard: "photos:inst.2:2", Phase: "full sync", Waiting: "full sync"},
		},
		Entries: []*v1.BacklogEntry{
			{BucketShard: "photos:inst.2:0", Op: "retry", Key: "old", VersionId: "V1", Logged: at, Error: "503\nSlowDown"},
			{BucketShard: "photos:inst.2:0", Op: "write", Key: "k3", Marker: "00000000004.5.5", Logged: at},
		}}
	var b bytes.Buffer
	require.NoError(t, PrintBacklog(&b, "photos", resp, true, false))
	out := b.String()
	for _, want := range []string{
		"bucket photos: 3 index shards, 1 done, 2 waiting; 3 changes waiting or more (1 kept for retry)",
		"photos:inst.2:0  incremental  2+", "1 items kept for retry", "photos:inst.2:2  full sync    -",
		"2026-12-07T12:00:00Z  photos:inst.2:0  retry  old  V1", "503 SlowDown", "write  k3   -", "(2 listed; -limit for more)",
	} {
		require.Contains(t, out, want, out)
	}

	b.Reset()
	require.NoError(t, PrintBacklog(&b, "photos", resp, false, false))
	require.NotContains(t, b.String(), "LOGGED", "without -backlog: the shards only")

	b.Reset()
	require.NoError(t, PrintBacklog(&b, "", resp, true, true))
	var doc struct {
		Shards  []map[string]any `json:"shards"`
		Entries []map[string]any `json:"entries"`
		Total   int              `json:"total"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc), b.String())
	require.Len(t, doc.Shards, 3)
	require.Len(t, doc.Entries, 2)
	require.Equal(t, 3, doc.Total)
	require.True(t, strings.HasPrefix(strings.TrimSpace(b.String()), "{"))
}
