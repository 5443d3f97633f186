package rgwlog

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareMDLogMarkers(t *testing.T) {
	// ids as the lab's gateway writes them (probe-sample-output.txt)
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1_1795609532.671183_40.1", "1_1795609532.672479_41.1", -1},
		{"1_1795609532.672479_41.1", "1_1795609532.671183_40.1", 1},
		{"1_1795609532.671183_40.1", "1_1795609532.671183_40.1", 0},
		{"1_1795609530.377534_5.1", "1_1795609532.671183_40.1", -1},
		{"1_1795609532.671183_9.1", "1_1795609532.671183_10.1", -1}, // numeric, not lexical
		{"", "1_1795609532.671183_40.1", -1},
		{"1_1795609532.671183_40.1", "", 1},
		{"", "", 0},
	} {
		got, err := CompareMDLogMarkers(tc.a, tc.b)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%q vs %q", tc.a, tc.b)
	}
	_, err := CompareMDLogMarkers("garbage", "1_1795609532.671183_40.1")
	require.ErrorContains(t, err, `mdlog marker "garbage"`)
}

func TestLockIDsDoNotCollide(t *testing.T) {
	seen := map[int]Unit{}
	for _, u := range MetadataUnits(64) {
		id := u.LockID(0)
		require.NotContains(t, seen, id)
		seen[id] = u
	}
	for i := range 128 {
		id := Unit{Log: LogData, Shard: uint32(i)}.LockID(0)
		require.NotContains(t, seen, id)
		require.Less(t, id, LockMemberSlot)
	}
	require.Equal(t, 100010000, Unit{Log: LogMetadataFull}.LockID(100000000))
}

func TestApplyRankOrder(t *testing.T) {
	require.Less(t, ApplyRank(SectionUser, false), ApplyRank(SectionBucketInstance, false))
	require.Less(t, ApplyRank(SectionBucketInstance, false), ApplyRank(SectionBucket, false))
	require.Less(t, ApplyRank(SectionBucket, false), ApplyRank(SectionBucket, true))
	require.Less(t, ApplyRank(SectionBucket, true), ApplyRank(SectionBucketInstance, true))
	require.Less(t, ApplyRank(SectionBucketInstance, true), ApplyRank(SectionUser, true))
}

func TestBucketID(t *testing.T) {
	// The entry point as the lab's gateway answers it (rgwadmin testdata
	// metadata-put-bucket.json), trimmed to the fields around bucket_id.
	blob := []byte(`{"key":"bucket:b8b64f331","ver":{"tag":"_x","ver":1},"mtime":"2026-11-25 19:54:54Z",` +
		`"data":{"bucket":{"name":"b8b64f331","marker":"3622eef8-56e2-4c1c-9bbe-28a946b2cc0d.4177.2",` +
		`"bucket_id":"3622eef8-56e2-4c1c-9bbe-28a946b2cc0d.4177.2","tenant":""},"owner":"u","creation_time":"2026-11-25 19:54:54Z","linked":"true","has_bucket_info":"false"}}`)
	id, err := BucketID(blob)
	require.NoError(t, err)
	require.Equal(t, "3622eef8-56e2-4c1c-9bbe-28a946b2cc0d.4177.2", id)
	id, err = BucketID([]byte(`{"data":{}}`))
	require.NoError(t, err)
	require.Empty(t, id)
	_, err = BucketID([]byte(`<html>`))
	require.ErrorContains(t, err, "bucket entry point")
}

func TestNumShards(t *testing.T) {
	// A tenant's bucket instance as the lab's gateway answers it.
	raw, err := os.ReadFile("../rgwadmin/testdata/metadata-get-bucket-instance.json")
	require.NoError(t, err)
	var rec struct {
		Body string `json:"body"`
	}
	require.NoError(t, json.Unmarshal(raw, &rec))
	n, err := NumShards([]byte(rec.Body))
	require.NoError(t, err)
	require.Equal(t, 11, n)
	n, err = NumShards([]byte(`{"data":{"bucket_info":{}}}`))
	require.NoError(t, err)
	require.Zero(t, n, "an unsharded index")
	_, err = NumShards([]byte(`<html>`))
	require.ErrorContains(t, err, "bucket instance")
}

func TestUnitCompare(t *testing.T) {
	md := func(n uint32) Unit { return Unit{Log: LogMetadata, Shard: n} }
	data := func(n uint32) Unit { return Unit{Log: LogData, Shard: n} }
	us := []Unit{data(2), md(10), data(0), md(2)}
	slices.SortFunc(us, Unit.Compare)
	if want := []Unit{md(2), md(10), data(0), data(2)}; !slices.Equal(us, want) {
		t.Fatalf("sorted %v, want %v", us, want)
	}
	if md(3).Compare(md(3)) != 0 {
		t.Fatal("a unit is equal to itself")
	}
}

func TestResharding(t *testing.T) {
	// The old instance of a reshard on the lab's zone-a, polled while
	// radosgw-admin bucket reshard ran: before it, while it runs, after it
	// (the last answer before the gateway said 404; FACTS.md section 17).
	for file, want := range map[string]bool{
		"bucket-instance-plain.json":      false,
		"bucket-instance-resharding.json": true,
		"bucket-instance-resharded.json":  true,
	} {
		raw, err := os.ReadFile("testdata/" + file)
		require.NoError(t, err)
		got, err := Resharding(raw)
		require.NoError(t, err, file)
		require.Equal(t, want, got, file)
	}
	_, err := Resharding([]byte(`<html>`))
	require.ErrorContains(t, err, "bucket instance")
}

func TestBucketDeleted(t *testing.T) {
	// A Tentacle (20.2.4) zone-a's instance before and after DELETE of its
	// bucket, and Pacific's (which never sets the flag).
	for file, want := range map[string]bool{
		"tentacle-bucket-instance-live.json":    false,
		"tentacle-bucket-instance-deleted.json": true,
		"bucket-instance-plain.json":            false,
		"bucket-instance-resharded.json":        false,
	} {
		raw, err := os.ReadFile("testdata/" + file)
		require.NoError(t, err)
		got, err := BucketDeleted(raw)
		require.NoError(t, err, file)
		require.Equal(t, want, got, file)
	}
	got, err := BucketDeleted([]byte(`{"data":{"bucket_info":{"flags":66}}}`))
	require.NoError(t, err)
	require.True(t, got, "versioned (2) and deleted (64)")
	_, err = BucketDeleted([]byte(`<html>`))
	require.ErrorContains(t, err, "bucket instance")
}

func TestCompareMarkersOfEachLog(t *testing.T) {
	for _, tc := range []struct {
		log  Log
		a, b string
		want int
	}{
		// mdlog: the counter has no fixed width, "…_10.1" is after "…_9.1".
		{LogMetadata, "1_1795609532.671183_9.1", "1_1795609532.671183_10.1", -1},
		{LogMetadata, "", "1_1795609532.671183_9.1", -1},
		{LogData, "1_00000000000000000012.1", "1_00000000000000000011.1", 1},
		{LogBucketIndex, "00000000011.13.5", "00000000011.13.5", 0},
	} {
		got, err := CompareMarkers(tc.log, tc.a, tc.b)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%s %q %q", tc.log, tc.a, tc.b)
	}
}

func TestBILogIndexVer(t *testing.T) {
	for m, want := range map[string]uint64{"00000000011.13.5": 11, "3#00000000042.60.6": 42} {
		got, err := BILogIndexVer(m)
		require.NoError(t, err)
		require.Equal(t, want, got, m)
	}
	_, err := BILogIndexVer("garbage")
	require.ErrorContains(t, err, `bucket-index log marker "garbage"`)
}

func TestTrimmedErrorIsErrTrimmed(t *testing.T) {
	err := fmt.Errorf("poll: %w", &TrimmedError{Unit: Unit{Log: LogMetadata, Shard: 3}, Bound: "1_1.1_1.1"})
	require.ErrorIs(t, err, ErrTrimmed)
	require.ErrorContains(t, err, `metadata/3 was trimmed past the bound "1_1.1_1.1"`)
}

// Recorded on the lab (Pacific zone-b): a bucket's instance with
// versioning enabled (flags 2), and one never versioned (flags 0).
func TestWithVersioningSuspended(t *testing.T) {
	enabled, err := os.ReadFile("testdata/bucket-instance-enabled.json")
	require.NoError(t, err)
	st, err := Versioning(enabled)
	require.NoError(t, err)
	require.Equal(t, "Enabled", st)

	suspended, err := WithVersioningSuspended(enabled)
	require.NoError(t, err)
	st, err = Versioning(suspended)
	require.NoError(t, err)
	require.Equal(t, "Suspended", st)
	// Everything else as it was: the same JSON apart from the flags.
	var before, after map[string]any
	require.NoError(t, json.Unmarshal(enabled, &before))
	require.NoError(t, json.Unmarshal(suspended, &after))
	after["data"].(map[string]any)["bucket_info"].(map[string]any)["flags"] = float64(2)
	tag := after["ver"].(map[string]any)["tag"].(string)
	require.True(t, strings.HasPrefix(tag, SuspensionTag), tag)
	after["ver"].(map[string]any)["tag"] = strings.TrimPrefix(tag, SuspensionTag)
	require.Equal(t, before, after)
	require.NotContains(t, string(suspended), `\u003c`, "nothing escaped that was not")

	// A blob left suspended (a kill between the two puts) is recognised
	// and undone; zone-b's own blobs are not.
	orig, ok, err := WithoutSuspension(suspended)
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, string(enabled), string(orig))
	_, ok, err = WithoutSuspension(enabled)
	require.NoError(t, err)
	require.False(t, ok)

	plain, err := os.ReadFile("testdata/bucket-instance-plain.json")
	require.NoError(t, err)
	st, err = Versioning(plain)
	require.NoError(t, err)
	require.Equal(t, "", st)
	_, err = WithVersioningSuspended(plain)
	require.ErrorContains(t, err, "never versioned")
	_, err = WithVersioningSuspended([]byte(`<html>`))
	require.ErrorContains(t, err, "bucket instance")
	_, err = WithVersioningSuspended([]byte(`{"data":{}}`))
	require.ErrorContains(t, err, "no data.bucket_info.flags")
}
