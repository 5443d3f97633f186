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

func TestPrintErrors(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	resp := &v1.ListErrorsResponse{Total: 3, Items: []*v1.ErrorItem{
		{Destination: "zone-b", Shard: &v1.ShardRef{LogType: v1.LogType_LOG_TYPE_DATA, Shard: 3}, BucketShard: "photos:inst.2:0",
			Section: "object", Name: "k1", VersionId: "v1", State: v1.ErrorState_ERROR_STATE_FAILED, Error: "put b/k1: status 503\nSlowDown",
			Attempts: 4, FirstSeen: timestamppb.New(now.Add(-time.Hour)), LastAttempt: timestamppb.New(now.Add(-time.Minute)),
			NextAttempt: timestamppb.New(now.Add(30 * time.Second))},
		{Destination: "zone-b", Shard: &v1.ShardRef{LogType: v1.LogType_LOG_TYPE_METADATA, Shard: 7}, Section: "user", Name: "bob",
			State: v1.ErrorState_ERROR_STATE_PARKED, Error: "parked: why", Attempts: 9, FirstSeen: timestamppb.New(now.Add(-2 * time.Hour)),
			NextAttempt: timestamppb.New(now.Add(-time.Second))},
	}}
	var b bytes.Buffer
	require.NoError(t, PrintErrors(&b, resp, now, false))
	out := b.String()
	for _, want := range []string{"FIRST SEEN", "2026-12-06T11:00:00Z", "failed", "photos:inst.2:0 k1?versionId=v1", "data/3",
		"1m0s ago", "in 30s", "put b/k1: status 503 SlowDown", "parked", "user bob", "metadata/7", "due", "(2 of 3 items; -limit for more)"} {
		require.Contains(t, out, want)
	}
	require.Equal(t, 4, strings.Count(out, "\n"), "a header, one line per item, the count: %s", out)

	b.Reset()
	require.NoError(t, PrintErrors(&b, resp, now, true))
	var doc struct {
		Total uint32
		Items []ErrorReport
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	require.EqualValues(t, 3, doc.Total)
	require.Equal(t, "failed", doc.Items[0].State)
	require.Equal(t, "data/3", doc.Items[0].Shard)
	require.NotNil(t, doc.Items[0].LastAttempt)
	require.Nil(t, doc.Items[1].LastAttempt)

	b.Reset()
	require.NoError(t, PrintErrors(&b, &v1.ListErrorsResponse{}, now, false))
	require.Equal(t, "no items kept for retry\n", b.String())
}
