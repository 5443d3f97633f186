package verifier

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// fakeZone is a zone's listing: entries kept in the gateway's order, pages
// of pageMax; requests counted.
type fakeZone struct {
	mu       sync.Mutex
	entries  []rgwobj.ListEntry
	attrs    map[string]rgwobj.ObjectInfo // key+"\x00"+version
	meta     map[string]string            // section:key -> blob
	pageMax  int
	requests int
	onList   func() // called before each listing page
	// statWait: how long each Stat takes; inStat, peakStat: Stats running
	// now and at most at once.
	statWait         time.Duration
	inStat, peakStat int
}

func (z *fakeZone) sort() {
	sort.SliceStable(z.entries, func(i, j int) bool { return z.entries[i].Key < z.entries[j].Key })
}

func (z *fakeZone) ListMetadataKeys(_ context.Context, section, _ string, _ int) (rgwadmin.KeyPage, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var p rgwadmin.KeyPage
	for k := range z.meta {
		if s, key, _ := strings.Cut(k, ":"); s == section {
			p.Keys = append(p.Keys, key)
		}
	}
	return p, nil
}

func (z *fakeZone) GetMetadata(_ context.Context, section, key string) ([]byte, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	b, ok := z.meta[section+":"+key]
	if !ok {
		return nil, rgwadmin.ErrNotFound
	}
	return []byte(b), nil
}

func (z *fakeZone) ListBucket(_ context.Context, _, prefix, km, vm string, max int) (rgwobj.ListPage, error) {
	if z.onList != nil {
		z.onList()
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.requests++
	max = min(max, z.pageMax)
	var p rgwobj.ListPage
	past := km == ""
	for _, e := range z.entries {
		if !past {
			past = e.Key == km && e.VersionID == vm
			continue
		}
		if !strings.HasPrefix(e.Key, prefix) {
			continue
		}
		if len(p.Entries) == max {
			p.Truncated = true
			break
		}
		p.Entries = append(p.Entries, e)
	}
	if p.Truncated {
		last := p.Entries[len(p.Entries)-1]
		p.NextKeyMarker, p.NextVersionMarker = last.Key, last.VersionID
	}
	return p, nil
}

func (z *fakeZone) Stat(_ context.Context, bucket, key, version string) (rgwobj.ObjectInfo, error) {
	z.mu.Lock()
	z.inStat++
	z.peakStat = max(z.peakStat, z.inStat)
	z.mu.Unlock()
	time.Sleep(z.statWait)
	z.mu.Lock()
	defer z.mu.Unlock()
	z.inStat--
	z.requests++
	info, ok := z.attrs[key+"\x00"+version]
	if !ok {
		return rgwobj.ObjectInfo{}, rgwobj.ErrNotFound
	}
	return info, nil
}

func obj(key, version string, latest bool, size int64) rgwobj.ListEntry {
	return rgwobj.ListEntry{Key: key, VersionID: version, IsLatest: latest, Size: size, ETag: fmt.Sprintf("e%d", size),
		Mtime: time.Unix(1700000000, 0)}
}

func zoneOf(pageMax int, es ...rgwobj.ListEntry) *fakeZone {
	z := &fakeZone{entries: es, pageMax: pageMax, attrs: map[string]rgwobj.ObjectInfo{}, meta: map[string]string{}}
	z.sort()
	for _, e := range es {
		z.attrs[e.Key+"\x00"+e.VersionID] = rgwobj.ObjectInfo{Key: e.Key, VersionID: e.VersionID, ContentType: "text/plain", Owner: "alice"}
	}
	return z
}

func collect(t *testing.T, cfg Config) ([]string, Result) {
	t.Helper()
	var got []string
	cfg.Buckets = []string{"b"}
	cfg.RecheckAfter = time.Millisecond
	cfg.Report = func(d Diff) { got = append(got, d.String()) }
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	return got, res
}

func TestObjectsCompared(t *testing.T) {
	src := zoneOf(2,
		obj("a", "null", true, 1),
		obj("b", "V2", true, 2), obj("b", "V1", false, 1),
		obj("c", "null", true, 3),
		obj("d", "null", true, 4),
		obj("same", "null", true, 5),
		rgwobj.ListEntry{Key: "dm", VersionID: "D1", IsLatest: true, DeleteMarker: true},
	)
	dst := zoneOf(3,
		obj("a", "null", true, 1),
		obj("b", "V2", false, 2), obj("b", "V1", true, 1),
		obj("c", "null", true, 30),
		obj("e", "null", true, 5),
		obj("same", "null", true, 5),
		obj("same", "null", true, 5), // listed twice
	)
	dst.attrs["a\x00null"] = rgwobj.ObjectInfo{Key: "a", ContentType: "application/json", Owner: "alice", Tags: map[string]string{"x": "1"}}
	got, res := collect(t, Config{Source: src, Destination: dst, Attrs: true})
	require.Equal(t, []string{
		"object b/a version null: content_type: source text/plain, destination application/json",
		`object b/a version null: tags: source "", destination x=1`,
		"object b/b version V1: is_latest: source false, destination true",
		"object b/b version V2: is_latest: source true, destination false",
		"object b/c version null: size: source 3, destination 30",
		"object b/c version null: etag: source e3, destination e30",
		"object b/d version null: version: source 4 bytes, etag e4 (current), destination missing",
		"object b/dm version D1: version: source delete marker (current), destination missing",
		"object b/e version null: version: source missing, destination 5 bytes, etag e5 (current)",
		"object b/same version null: listed: source once, destination twice",
	}, got)
	require.Equal(t, len(got), res.Differences)
	require.Equal(t, int64(9), res.Versions)
}

// A key the source changed after the verify began is not reported: the
// sync may not have had it yet.
func TestChangedKeyIsNotReported(t *testing.T) {
	src := zoneOf(10, obj("k", "null", true, 1), obj("old", "null", true, 1))
	dst := zoneOf(10, obj("k", "null", true, 1))
	listed := 0
	src.onList = func() {
		listed++
		if listed == 2 { // the recheck: k was written again meanwhile
			src.mu.Lock()
			src.entries[0] = obj("k", "null", true, 2)
			src.entries[0].Mtime = time.Now().Add(time.Hour)
			src.mu.Unlock()
		}
	}
	dst.entries[0].Size = 9 // k differs; "old" is missing on the destination
	got, res := collect(t, Config{Source: src, Destination: dst})
	require.Equal(t, []string{"object b/old version null: version: source 1 bytes, etag e1 (current), destination missing"}, got)
	require.Equal(t, 1, res.Changed)
}

// A difference the sync repairs before the recheck is not reported.
func TestRepairedKeyIsNotReported(t *testing.T) {
	src := zoneOf(10, obj("k", "null", true, 1))
	dst := zoneOf(10)
	n := 0
	dst.onList = func() {
		if n++; n == 2 {
			dst.mu.Lock()
			dst.entries = []rgwobj.ListEntry{obj("k", "null", true, 1)}
			dst.mu.Unlock()
		}
	}
	got, res := collect(t, Config{Source: src, Destination: dst})
	require.Empty(t, got)
	require.Zero(t, res.Differences)
}

// Memory stays flat: the listings are read page by page as streams (a
// bucket of 20,000 versions, pages of 100, holds at most a page of each).
func TestLargeBucketIsStreamed(t *testing.T) {
	var es []rgwobj.ListEntry
	for i := range 20000 {
		es = append(es, obj(fmt.Sprintf("k%06d", i), "null", true, 1))
	}
	src, dst := zoneOf(100, es...), zoneOf(100, es...)
	got, res := collect(t, Config{Source: src, Destination: dst})
	require.Empty(t, got)
	require.Equal(t, int64(20000), res.Versions)
	require.Equal(t, 200, src.requests, "one listing per page")
}

func TestRate(t *testing.T) {
	src, dst := zoneOf(1, obj("a", "null", true, 1), obj("b", "null", true, 1)), zoneOf(1, obj("a", "null", true, 1), obj("b", "null", true, 1))
	start := time.Now()
	_, _ = collect(t, Config{Source: src, Destination: dst, Rate: 10})
	// 3 listings per side at 10/s with a burst of 1: at least 0.2 s.
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
}

// A named bucket the source no longer has and the destination still has is
// a difference; on neither zone, an error.
func TestBucketOnOneSideOnly(t *testing.T) {
	src, dst := zoneOf(10), zoneOf(10, obj("k", "null", true, 1))
	dst.meta["bucket:b"] = `{"data":{}}`
	gone := &missingBucket{fakeZone: src}
	got, res := collect(t, Config{Source: gone, Destination: dst})
	require.Equal(t, []string{"bucket b: bucket: source missing, destination present"}, got)
	require.Equal(t, 1, res.Differences)

	_, err := Run(context.Background(), Config{Source: gone, Destination: &missingBucket{fakeZone: zoneOf(10)}, Buckets: []string{"b"}})
	require.ErrorContains(t, err, "no such bucket on either zone")
}

// missingBucket: a zone without the bucket (its listing answers NoSuchBucket).
type missingBucket struct{ *fakeZone }

func (m *missingBucket) ListBucket(context.Context, string, string, string, string, int) (rgwobj.ListPage, error) {
	return rgwobj.ListPage{}, fmt.Errorf("list: %w", rgwobj.ErrNotFound)
}

// The attributes of the versions equal in the listings are read several at
// a time (Config.Concurrency), and the differences still come in key
// order: one at a time, 2,000 versions took 75 s through a loaded
// exporter (make bench-verify).
func TestAttributesReadInParallel(t *testing.T) {
	var es []rgwobj.ListEntry
	for i := range 300 {
		es = append(es, obj(fmt.Sprintf("k%04d", i), "null", true, 1))
	}
	src, dst := zoneOf(100, es...), zoneOf(100, es...)
	src.statWait, dst.statWait = time.Millisecond, time.Millisecond
	for _, k := range []string{"k0007", "k0150", "k0299"} {
		in := dst.attrs[k+"\x00null"]
		in.ContentType = "image/png"
		dst.attrs[k+"\x00null"] = in
	}
	var got []string
	res, err := Run(context.Background(), Config{Source: src, Destination: dst, Buckets: []string{"b"}, Attrs: true, Concurrency: 8,
		RecheckAfter: time.Millisecond, Report: func(d Diff) { got = append(got, d.Key+" "+d.Field) }})
	require.NoError(t, err)
	require.EqualValues(t, 300, res.Versions)
	require.Equal(t, []string{"k0007 content_type", "k0150 content_type", "k0299 content_type"}, got)
	require.Greater(t, src.peakStat, 1, "the source's attributes read one at a time")
	require.LessOrEqual(t, src.peakStat, 8)
}

// countingZone is a zone that counts a bucket's versions (its bucket stats).
type countingZone struct{ *fakeZone }

func (c countingZone) CountVersions(context.Context, string) (int64, error) {
	return int64(len(c.entries)), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The progress line estimates the time left from the destination's count
// of the bucket's versions.
func TestProgressEstimatesTheTimeLeft(t *testing.T) {
	var es []rgwobj.ListEntry
	for i := range 200 {
		es = append(es, obj(fmt.Sprintf("k%04d", i), "null", true, 1))
	}
	src, dst := zoneOf(10, es...), zoneOf(10, es...)
	src.statWait = 2 * time.Millisecond
	var progress syncBuffer
	_, err := Run(context.Background(), Config{Source: src, Destination: countingZone{dst}, Buckets: []string{"b"}, Attrs: true,
		Concurrency: 1, Progress: &progress, ProgressEvery: 50 * time.Millisecond})
	require.NoError(t, err)
	require.Regexp(t, `verify: \d+ versions compared of about 200, about \d+s left`, progress.String())
}

// blockedCount answers CountVersions only once released.
type blockedCount struct {
	*fakeZone
	release chan struct{}
}

func (c blockedCount) CountVersions(ctx context.Context, _ string) (int64, error) {
	select {
	case <-c.release:
		return int64(len(c.entries)), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// The buckets' counts are read beside the comparison: a destination slow to
// answer them (thousands of buckets) does not hold the first comparison
// back. Before, every count was read first.
func TestComparisonDoesNotWaitForTheCounts(t *testing.T) {
	es := []rgwobj.ListEntry{obj("k1", "null", true, 1), obj("k2", "null", true, 1)}
	src, dst := zoneOf(10, es...), zoneOf(10, es...)
	var progress syncBuffer
	done := make(chan Result, 1)
	go func() {
		res, err := Run(context.Background(), Config{Source: src, Destination: blockedCount{dst, make(chan struct{})}, Buckets: []string{"b"},
			Attrs: true, Concurrency: 1, Progress: &progress, ProgressEvery: time.Hour})
		assert.NoError(t, err)
		done <- res
	}()
	select {
	case res := <-done:
		require.Equal(t, int64(2), res.Versions)
	case <-time.After(10 * time.Second):
		t.Fatal("the comparison waited for the destination's counts")
	}
}
