package applier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// The HTTP transport can still be reading a request body when the request
// has returned; drain must then neither race with it nor lose chunks of
// the op (run with -race: a chaos run crashed an applier here).
func TestChunkReaderDrainWhileTransportReads(t *testing.T) {
	for range 50 {
		ch := make(chan *v1.ObjectChunk, 8)
		r := &chunkReader{ctx: context.Background(), ch: ch, index: 3}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the transport's writer goroutine
			defer wg.Done()
			buf := make([]byte, 7)
			for {
				if _, err := r.Read(buf); err != nil {
					return
				}
			}
		}()
		var off int64
		for i := range 6 {
			data := make([]byte, 1000)
			ch <- &v1.ObjectChunk{Index: 3, Offset: off, Data: data, Last: i == 5}
			off += int64(len(data))
		}
		r.drain() // concurrently with the reads above
		wg.Wait()
		_, err := r.Read(make([]byte, 1))
		require.ErrorIs(t, err, errDetached)
		require.Len(t, ch, 0, "every chunk of the op consumed")
	}
}

func TestChunkReaderSourceFailed(t *testing.T) {
	ch := make(chan *v1.ObjectChunk, 2)
	ch <- &v1.ObjectChunk{Index: 0, Offset: -1, Last: true}
	r := &chunkReader{ctx: context.Background(), ch: ch}
	_, err := io.ReadAll(r)
	require.True(t, errors.Is(err, errSourceBody))
	require.True(t, r.sourceFailed())
}

func TestSameCopy(t *testing.T) {
	base := rgwobj.ObjectInfo{ETag: "e", Size: 3, Owner: "alice", ContentType: "text/plain",
		UserMeta: map[string]string{"a": "1"}, Tags: map[string]string{"k": "v"}}
	require.True(t, sameCopy(base, base))
	for name, mod := range map[string]func(*rgwobj.ObjectInfo){
		"tags dropped at the source": func(i *rgwobj.ObjectInfo) { i.Tags = nil },
		"tag changed":                func(i *rgwobj.ObjectInfo) { i.Tags = map[string]string{"k": "w"} },
		"ACL set":                    func(i *rgwobj.ObjectInfo) { i.ACL = []byte("<AccessControlPolicy/>") },
		"metadata added":             func(i *rgwobj.ObjectInfo) { i.UserMeta = map[string]string{"a": "1", "b": "2"} },
		"owner":                      func(i *rgwobj.ObjectInfo) { i.Owner = "bob" },
		"body":                       func(i *rgwobj.ObjectInfo) { i.ETag = "f" },
	} {
		want := base
		mod(&want)
		require.False(t, sameCopy(base, want), name)
	}
	noTags := base
	noTags.Tags = map[string]string{}
	base.Tags = nil
	require.True(t, sameCopy(base, noTags), "no tags and an empty tag set are the same")
}

// Bodies on request: one answer per chunked op; a skipped body is never
// waited for, an op that failed before asking answers skip at drain. With
// chunk credit the answer grants the queue's room and every chunk taken
// but the last grants one more.
func TestChunkReaderAsk(t *testing.T) {
	type answer struct {
		index  uint32
		skip   bool
		chunks uint32
	}
	var got []answer
	ask := &asker{send: func(i uint32, skip bool, chunks uint32) { got = append(got, answer{i, skip, chunks}) }}
	ch := make(chan *v1.ObjectChunk, 4)

	r := &chunkReader{ctx: context.Background(), ch: ch, index: 0, ask: ask}
	r.notWanted()
	r.want() // too late: answered once
	r.drain()
	require.Equal(t, []answer{{0, true, 0}}, got)

	r = &chunkReader{ctx: context.Background(), ch: ch, index: 1, ask: ask}
	r.want()
	ch <- &v1.ObjectChunk{Index: 1, Offset: 0, Data: []byte("abc"), Last: true}
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "abc", string(b))
	r.drain()

	r = &chunkReader{ctx: context.Background(), ch: ch, index: 2, ask: ask}
	r.drain() // failed before it asked: nothing comes, nothing blocks
	require.Equal(t, []answer{{0, true, 0}, {1, false, 0}, {2, true, 0}}, got)
	require.Len(t, ch, 0)

	got = nil
	ask.grant = 4
	r = &chunkReader{ctx: context.Background(), ch: ch, index: 3, ask: ask}
	r.want()
	ch <- &v1.ObjectChunk{Index: 3, Offset: 0, Data: []byte("ab")}
	ch <- &v1.ObjectChunk{Index: 3, Offset: 2, Data: []byte("cd")}
	ch <- &v1.ObjectChunk{Index: 3, Offset: 4, Data: []byte("e"), Last: true}
	b, err = io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "abcde", string(b))
	require.Equal(t, []answer{{3, false, 4}, {3, false, 1}, {3, false, 1}}, got, "room asked with the body, one more per chunk taken but the last")
}

// fakeDest is an ObjectDest that records the writes it gets; stat answers
// Stat, listed answers FindVersionInBucket, failPut fails Put per key.
type fakeDest struct {
	versioning string                       // of every bucket
	stat       map[string]rgwobj.ObjectInfo // key+"\x00"+version
	statErr    error
	listed     map[string]rgwobj.ListEntry
	unindexed  map[string]bool // keys Stat finds and the index does not list
	failPut    map[string]bool
	putErr     map[string]error            // key+"\x00"+version -> the Put's answer
	delay      time.Duration               // of each Put
	hang       map[string]bool             // keys whose Put never reads its body nor returns (until cancelled)
	markerErr  map[string]error            // key+"\x00"+version -> the PutDeleteMarker's answer
	latest     map[string]rgwobj.ListEntry // key -> its current entry (LatestInBucket)
	listErr    error                       // FindVersionInBucket's answer

	mu              sync.Mutex
	calls           []string
	versioningReads int
	active, peak    int    // Puts running at once
	lastBody        []byte // of the last Put
}

func (f *fakeDest) record(c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// callsOf are the calls whose text starts with prefix, in order.
func (f *fakeDest) callsOf(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeDest) Put(ctx context.Context, info rgwobj.ObjectInfo, body io.Reader, epoch uint64) (string, error) {
	if f.hang[info.Key] {
		f.record("hung " + info.Key)
		<-ctx.Done()
		return "", ctx.Err()
	}
	f.mu.Lock()
	f.active++
	f.peak = max(f.peak, f.active)
	f.mu.Unlock()
	time.Sleep(f.delay)
	f.mu.Lock()
	f.active--
	f.mu.Unlock()
	f.record("put " + info.Key + " " + info.VersionID)
	if f.failPut[info.Key+"\x00"+info.VersionID] {
		return "", errors.New("503 from the fake")
	}
	if err := f.putErr[info.Key+"\x00"+info.VersionID]; err != nil {
		return "", err
	}
	b, _ := io.ReadAll(body)
	f.mu.Lock()
	f.lastBody = b
	f.mu.Unlock()
	return info.ETag, nil
}

func (f *fakeDest) PutMultipart(_ context.Context, info rgwobj.ObjectInfo, _ func(int, int64, int64) (io.ReadCloser, error), _ uint64) (string, error) {
	f.record("put multipart " + info.Key + " " + info.VersionID)
	return info.ETag, nil
}

func (f *fakeDest) Delete(_ context.Context, _, key, _, version string) error {
	f.record("delete " + key + " " + version)
	return nil
}

func (f *fakeDest) DeleteVersion(_ context.Context, _, key, _, version string, _ uint64) error {
	f.record("delete-version " + key + " " + version)
	return nil
}

func (f *fakeDest) PutDeleteMarker(_ context.Context, _, key, _, version string, _ uint64) error {
	f.record("delete-marker " + key + " " + version)
	return f.markerErr[key+"\x00"+version]
}

func (f *fakeDest) LatestInBucket(_ context.Context, _, key string) (rgwobj.ListEntry, bool, error) {
	en, ok := f.latest[key]
	return en, ok, nil
}

func (f *fakeDest) Stat(_ context.Context, _, key, version string) (rgwobj.ObjectInfo, error) {
	if f.statErr != nil {
		return rgwobj.ObjectInfo{}, f.statErr
	}
	if in, ok := f.stat[key+"\x00"+version]; ok {
		return in, nil
	}
	return rgwobj.ObjectInfo{}, rgwobj.ErrNotFound
}

// FindVersionInBucket answers what zone-b's index lists: the entries of
// listed, and every copy of stat (one it has is indexed) but those of
// unindexed (heads a reshard left out of a new index: FACTS.md section 12).
func (f *fakeDest) FindVersionInBucket(_ context.Context, _, key, version string) (rgwobj.ListEntry, bool, error) {
	if f.listErr != nil {
		return rgwobj.ListEntry{}, false, f.listErr
	}
	if en, ok := f.listed[key+"\x00"+version]; ok {
		return en, true, nil
	}
	for _, v := range []string{version, strings.TrimSuffix(version, "null")} {
		if in, ok := f.stat[key+"\x00"+v]; ok && !f.unindexed[key] {
			return rgwobj.ListEntry{Key: key, VersionID: version, ETag: in.ETag, Size: in.Size, Owner: in.Owner}, true, nil
		}
	}
	return rgwobj.ListEntry{}, false, nil
}

func (f *fakeDest) PutACL(_ context.Context, _, key, version, _ string, _ []byte) error {
	f.record("acl " + key + " " + version)
	return nil
}

func (f *fakeDest) PutTagging(_ context.Context, _, key, version, _ string, tags map[string]string) error {
	f.record(fmt.Sprintf("tagging %s %s %v", key, version, tags))
	return nil
}

func (f *fakeDest) BucketVersioning(context.Context, string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versioningReads++
	return f.versioning, nil
}

type allLeases struct{}

func (allLeases) Valid(rgwlog.Unit) bool                 { return true }
func (allLeases) Deadline(rgwlog.Unit) (time.Time, bool) { return time.Now().Add(time.Minute), true }
func (allLeases) Held() map[rgwlog.Unit]time.Time        { return nil }
func (allLeases) Release(rgwlog.Unit)                    {}
func (allLeases) Exclusive(context.Context, string) (func(), error) {
	return func() {}, nil
}

func applyWith(t *testing.T, dst *fakeDest, ops ...*v1.ObjectOp) []*v1.RetryItem {
	t.Helper()
	return applyWithAdmin(t, dst, nil, ops...)
}

// applyWithAdmin applies ops with admin as zone-b's admin API (nil: none).
func applyWithAdmin(t *testing.T, dst *fakeDest, admin Dest, ops ...*v1.ObjectOp) []*v1.RetryItem {
	t.Helper()
	return applyWithLeases(t, dst, admin, allLeases{}, ops...)
}

// applyWithLeases applies ops with admin as zone-b's admin API and leases.
func applyWithLeases(t *testing.T, dst *fakeDest, admin Dest, leases Leases, ops ...*v1.ObjectOp) []*v1.RetryItem {
	t.Helper()
	a := &Applier{cfg: Config{Objects: dst, Dest: admin, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: leases,
		log: slog.New(slog.DiscardHandler)}
	for i, op := range ops {
		op.Index = uint32(i)
		if op.Kind == v1.ObjectOpKind_OBJECT_OP_KIND_PUT && op.Attrs == nil {
			op.Owner, op.Attrs, op.Body = "u", &v1.ObjectAttrs{Size: 1, Etag: "e"}, []byte("x")
		}
	}
	failed, err := a.applyObjects(context.Background(), rgwlog.Unit{}, &v1.Batch{Objects: ops}, nil, nil)
	require.NoError(t, err)
	return failed
}

// A delete marker or version the destination has already is not written
// again (a re-sent batch): written with its older epoch the gateway stops
// listing it as current (TestReplayedLinkWithOlderEpochIsNotCurrent).
func TestReplayedVersionsAreNotWrittenAgain(t *testing.T) {
	dst := &fakeDest{
		listed: map[string]rgwobj.ListEntry{"k\x00DM": {Key: "k", VersionID: "DM", DeleteMarker: true}},
		stat:   map[string]rgwobj.ObjectInfo{"j\x00V3": {Key: "j", VersionID: "V3", Owner: "u", Size: 1, ETag: "e"}},
	}
	failed := applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "DM", VersionedEpoch: 4},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k2", VersionId: "DM2", VersionedEpoch: 7})
	require.Empty(t, failed)
	require.Equal(t, []string{"delete-marker k2 DM2"}, dst.calls, "only the delete marker the destination lacks is written")

	// A version there but for its ACL gets its ACL, not a second write.
	dst = &fakeDest{stat: map[string]rgwobj.ObjectInfo{"j\x00V3": {Key: "j", VersionID: "V3", Owner: "u", Size: 1, ETag: "e"}}}
	failed = applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4,
		Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e", Acl: []byte("<acl/>")}, Body: []byte("x")})
	require.Empty(t, failed)
	require.Equal(t, []string{"acl j V3"}, dst.calls)

	// A version there whose tags changed at the source since (PUT
	// ?tagging&versionId logs a "write" of the instance, FACTS.md): its
	// tags are set in place, removed when the source has none, and its
	// ACL put back to the owner's default; never a second write.
	dst = &fakeDest{stat: map[string]rgwobj.ObjectInfo{
		"j\x00V3": {Key: "j", VersionID: "V3", Owner: "u", Size: 1, ETag: "e", Tags: map[string]string{"t": "old"}},
		"j\x00V4": {Key: "j", VersionID: "V4", Owner: "u", Size: 1, ETag: "e", Tags: map[string]string{"t": "x"}, ACL: []byte("<acl/>")}}}
	failed = applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4,
			Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e", Tags: map[string]string{"t": "new"}}, Body: []byte("x")},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V4", VersionedEpoch: 5,
			Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")})
	require.Empty(t, failed)
	require.Equal(t, []string{"tagging j V3 map[t:new]", "tagging j V4 map[]", "acl j V4"}, dst.calls)

	// Whether it is there unknown (the destination answers garbage): not
	// written blind, retried.
	dst = &fakeDest{statErr: errors.New("decode: garbage")}
	failed = applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "plain"})
	require.Len(t, failed, 1)
	require.Equal(t, "j", failed[0].GetKey())
	require.Equal(t, []string{"put plain "}, dst.calls, "an unversioned object is written whatever the destination has")
}

// A null delete marker (a DELETE in a suspended bucket) is laid with its
// epoch over zone-b's null version, once zone-b's bucket is versioned; it
// was refused before ("a delete marker needs its version id"), holding
// every later op of its key for good (make chaos seed 4: 56 keys).
func TestNullDeleteMarkerIsLaid(t *testing.T) {
	dst := &fakeDest{versioning: "Enabled",
		listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", ETag: "e"}}}
	require.Empty(t, applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 4},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "j", VersionId: "null", VersionedEpoch: 2}))
	require.ElementsMatch(t, []string{"delete-marker k null", "delete-marker j null"}, dst.calls)

	// There already (a replay): skipped.
	dst = &fakeDest{versioning: "Suspended",
		listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", DeleteMarker: true, VersionedEpoch: 4}}}
	require.Empty(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 4}))
	require.Empty(t, dst.calls)

	// An earlier null marker (epoch 2) is not this one (epoch 5): the id
	// "null" is reused, so this one is laid; the same epoch is a replay.
	dst = &fakeDest{versioning: "Enabled",
		listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", DeleteMarker: true, VersionedEpoch: 2}}}
	require.Empty(t, applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 5},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 2}))
	require.Equal(t, []string{"delete-marker k null"}, dst.calls)
	// The same for a null version: one with the same body but an earlier
	// epoch is written again.
	dst = &fakeDest{versioning: "Suspended", stat: map[string]rgwobj.ObjectInfo{"n\x00null": {Key: "n", VersionID: "null", Owner: "u", Size: 1, ETag: "e"}},
		listed: map[string]rgwobj.ListEntry{"n\x00null": {Key: "n", VersionID: "null", VersionedEpoch: 3, ETag: "e"}}}
	require.Empty(t, applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "n", VersionId: "null", VersionedEpoch: 6},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "n", VersionId: "null", VersionedEpoch: 3}))
	require.Equal(t, []string{"put n null"}, dst.calls)

	// zone-b's bucket not versioned yet: retried, nothing written.
	dst = &fakeDest{}
	require.Len(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 4}), 1)
	require.Empty(t, dst.calls)
}

// A multipart version is written only while zone-b's bucket is
// versioning-enabled: suspended or not versioned there, the complete stores
// it as the null version, its id lost and zone-b's null version
// overwritten (FACTS.md section 14). It waits (retried) instead.
func TestMultipartVersionWaitsForEnabledBucket(t *testing.T) {
	mp := func() *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "m", VersionId: "V1", VersionedEpoch: 2, Owner: "u",
			Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e-1", PartSizes: []int64{1}}, Body: []byte("x")}
	}
	for _, st := range []string{"Suspended", ""} {
		dst := &fakeDest{versioning: st}
		require.Len(t, applyWith(t, dst, mp()), 1, "versioning %q", st)
		require.Empty(t, dst.calls, "versioning %q", st)
	}
	dst := &fakeDest{versioning: "Enabled"}
	require.Empty(t, applyWith(t, dst, mp()))
	require.Equal(t, []string{"put multipart m V1"}, dst.calls)
}

// A copy Stat finds is skipped only when zone-b's index lists it too: a
// reshard leaves zone-b a new, empty index while every old head still
// answers a GET (FACTS.md section 12). Fails on the code before (the
// version and its ACL-only twin were skipped, the index never got them).
func TestCopyTheIndexDoesNotListIsWritten(t *testing.T) {
	v3 := rgwobj.ObjectInfo{Key: "j", VersionID: "V3", Owner: "u", Size: 1, ETag: "e"}
	dst := &fakeDest{stat: map[string]rgwobj.ObjectInfo{"j\x00V3": v3, "k\x00V1": {Key: "k", VersionID: "V1", Owner: "u", Size: 1, ETag: "e"}},
		unindexed: map[string]bool{"j": true, "k": true}}
	failed := applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "V1", VersionedEpoch: 2,
			Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e", Acl: []byte("<acl/>")}, Body: []byte("x")})
	require.Empty(t, failed)
	require.ElementsMatch(t, []string{"put j V3", "put k V1"}, dst.calls, "written whole, not skipped nor only given its ACL")

	// Listed: skipped as before.
	dst = &fakeDest{stat: map[string]rgwobj.ObjectInfo{"j\x00V3": v3}}
	require.Empty(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "j", VersionId: "V3", VersionedEpoch: 4}))
	require.Empty(t, dst.calls)
}

// After an op of a versioned key failed, the later ops of that key in the
// batch are not tried (failed as held, retried behind it); other keys go on.
func TestFailedVersionHoldsItsKey(t *testing.T) {
	dst := &fakeDest{failPut: map[string]bool{"k\x00V2": true}}
	failed := applyWith(t, dst,
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "V2", VersionedEpoch: 3},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "other", VersionId: "O1", VersionedEpoch: 2},
		&v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, Key: "k", VersionId: "V1", VersionedEpoch: 4})
	require.ElementsMatch(t, []string{"put k V2", "put other O1"}, dst.calls)
	require.Len(t, failed, 2)
	require.Equal(t, "V2", failed[0].GetVersionId())
	require.Equal(t, "V1", failed[1].GetVersionId())
	require.True(t, rgwlog.Held(failed[1].GetError()), failed[1].GetError())
}

// Different keys are applied side by side (up to ApplyConcurrency); the
// ops of one key keep the batch's order.
func TestObjectsOfDifferentKeysInParallel(t *testing.T) {
	dst := &fakeDest{delay: 20 * time.Millisecond}
	var ops []*v1.ObjectOp
	for v := range 3 {
		for k := range 8 {
			ops = append(ops, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: fmt.Sprintf("k%d", k),
				VersionId: fmt.Sprintf("V%d", v), VersionedEpoch: uint64(2 + v)})
		}
	}
	require.Empty(t, applyWith(t, dst, ops...))
	require.Equal(t, 4, dst.peak, "four keys at a time")
	for k := range 8 {
		p := fmt.Sprintf("put k%d ", k)
		require.Equal(t, []string{p + "V0", p + "V1", p + "V2"}, dst.callsOf(p), "the versions of k%d in order", k)
	}
}

// A null version (the source's bucket suspended) waits until zone-b's
// bucket shows versioning suspended too (issue #11, hole 2: written while
// zone-b was still enabled, the gateway stored another kind of null
// version for good); after nullVersionWait it is written anyway.
func TestNullVersionWaitsForSuspendedBucket(t *testing.T) {
	op := func(ts time.Time) *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null", VersionedEpoch: 3,
			Timestamp: timestamppb.New(ts)}
	}
	for _, status := range []string{"Enabled", ""} {
		dst := &fakeDest{versioning: status}
		failed := applyWith(t, dst, op(time.Now()))
		require.Len(t, failed, 1, "versioning %q", status)
		require.Contains(t, failed[0].GetError(), "not Suspended yet")
		require.Empty(t, dst.callsOf("put"), "versioning %q", status)
	}
	dst := &fakeDest{versioning: "Suspended"}
	require.Empty(t, applyWith(t, dst, op(time.Now())))
	require.Equal(t, []string{"put k null"}, dst.callsOf("put"))

	dst = &fakeDest{versioning: "Enabled"}
	require.Empty(t, applyWith(t, dst, op(time.Now().Add(-nullVersionWait-time.Minute))))
	require.Equal(t, []string{"put k null"}, dst.callsOf("put"), "written after waiting long enough")

	// A new key in a suspended bucket is logged as a plain write (no
	// version id, no epoch): not written while zone-b is still enabled
	// (it would become a version with a new id), written when zone-b is
	// suspended or never versioned.
	plain := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "p", Timestamp: timestamppb.Now()}
	dst = &fakeDest{versioning: "Enabled"}
	require.Len(t, applyWith(t, dst, plain), 1)
	require.Empty(t, dst.callsOf("put"))
	for _, status := range []string{"Suspended", ""} {
		dst = &fakeDest{versioning: status}
		require.Empty(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "p", Timestamp: timestamppb.Now()}))
		require.Equal(t, []string{"put p "}, dst.callsOf("put"), "versioning %q", status)
	}
}

// A null version zone-b refuses for good (its bucket never showed
// suspended, the key has versions there: NoSuchKey, FACTS.md section 9) is
// parked once it has waited nullVersionWait: kept for retry and shown, but
// the later ops of its key — the current version — are applied. Before, it
// was an ordinary failure: every later op of the key was held behind it
// for good (chaos with CHAOS_EXTENDED, RELIABILITY.md finding 14).
func TestRefusedNullVersionIsParked(t *testing.T) {
	old := timestamppb.New(time.Now().Add(-nullVersionWait - time.Minute))
	null := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: "k", VersionId: "null", VersionedEpoch: 4, Timestamp: old}
	v3 := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Bucket: "b", Key: "k", VersionId: "V3", VersionedEpoch: 5, Timestamp: old}
	noSuchKey := &rgwobj.GatewayError{Op: "put b/k", Method: "PUT", Path: "/b/k", Status: 404, Code: "NoSuchKey"}
	dst := &fakeDest{versioning: "Enabled", putErr: map[string]error{"k\x00null": noSuchKey}}
	failed := applyWith(t, dst, null, v3)
	require.Len(t, failed, 1)
	require.Equal(t, "null", failed[0].GetVersionId())
	require.True(t, rgwlog.Parked(failed[0].GetError()), "parked: %s", failed[0].GetError())
	require.Equal(t, []string{"put k null", "put k V3"}, dst.callsOf("put"), "the later version is applied")

	// Not parked: a refusal before the wait is over (its bucket's metadata
	// may still come), or another error (a missing bucket is NoSuchBucket).
	for _, c := range []struct {
		ts  *timestamppb.Timestamp
		err error
	}{
		{old, &rgwobj.GatewayError{Op: "put b/k", Status: 404, Code: "NoSuchBucket"}},
		{old, errors.New("503 from the fake")},
	} {
		dst := &fakeDest{versioning: "Enabled", putErr: map[string]error{"k\x00null": c.err}}
		n := proto.Clone(null).(*v1.ObjectOp)
		n.Timestamp = c.ts
		failed := applyWith(t, dst, n, v3)
		require.Len(t, failed, 2, "%v", c.err)
		require.False(t, rgwlog.Parked(failed[0].GetError()))
		require.True(t, rgwlog.Held(failed[1].GetError()), "the later version waits behind an ordinary failure")
	}
}

// The tags or ACL of a null version changed at the source after the
// source's bucket was versioning-enabled again: set in place on the null
// version (versionId=null), at once, whatever zone-b's bucket state. Before,
// the null version was written again: it waited for zone-b to show the
// bucket suspended, then became a null version that is not current and
// cannot be deleted (make chaos seed 4, v/k00604; FACTS.md sections 15, 16).
func TestNullVersionAttrsSetInPlace(t *testing.T) {
	have := rgwobj.ObjectInfo{Key: "k", VersionID: "null", Owner: "u", Size: 1, ETag: "e"}
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null", VersionedEpoch: 3,
		Timestamp: timestamppb.Now(), Owner: "u", Body: []byte("x"),
		Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e", Tags: map[string]string{"t": "1"}, Acl: []byte("<acl/>")}}
	for _, status := range []string{"Enabled", "Suspended"} {
		dst := &fakeDest{versioning: status, stat: map[string]rgwobj.ObjectInfo{"k\x00null": have},
			listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", VersionedEpoch: 3, ETag: "e", Size: 1}}}
		require.Empty(t, applyWith(t, dst, proto.Clone(op).(*v1.ObjectOp)), status)
		require.Equal(t, []string{"tagging k null map[t:1]", "acl k null"}, dst.calls, "zone-b's bucket %s", status)
	}
	// A null version listed with a lower epoch is an earlier one (the id is
	// reused): written, once zone-b shows the bucket suspended.
	dst := &fakeDest{versioning: "Enabled", stat: map[string]rgwobj.ObjectInfo{"k\x00null": have},
		listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", VersionedEpoch: 2, ETag: "e", Size: 1}}}
	failed := applyWith(t, dst, proto.Clone(op).(*v1.ObjectOp))
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].GetError(), "not Suspended yet")
	require.Empty(t, dst.calls)
}

// TestNullVersionCheckIsNotCached: whether zone-b's bucket is suspended is
// read again for every null version of a versioned bucket. A status kept
// for 2 s let a null version through after zone-b's bucket had been
// enabled again: stored there as the kind no DELETE ?versionId=null
// removes (FACTS.md section 15; make chaos seed 4, v/k00598, written a
// second after zone-b said Enabled).
func TestNullVersionCheckIsNotCached(t *testing.T) {
	dst := &fakeDest{versioning: "Suspended"}
	a := &Applier{cfg: Config{Objects: dst, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: allLeases{}, log: slog.New(slog.DiscardHandler)}
	apply := func(key string) []*v1.RetryItem {
		op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: key, VersionId: "null", VersionedEpoch: 3,
			Timestamp: timestamppb.Now(), Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")}
		failed, err := a.applyObjects(context.Background(), rgwlog.Unit{}, &v1.Batch{Objects: []*v1.ObjectOp{op}}, nil, nil)
		require.NoError(t, err)
		return failed
	}
	require.Empty(t, apply("k1"))
	dst.mu.Lock()
	dst.versioning = "Enabled" // metadata sync applied the source's next toggle
	dst.mu.Unlock()
	failed := apply("k2")
	require.Len(t, failed, 1, "written on a status read before zone-b was enabled again")
	require.Contains(t, failed[0].GetError(), "not Suspended yet")
	require.Equal(t, []string{"put k1 null"}, dst.callsOf("put"))

	// A bucket never versioned cannot become so without an Enabled that
	// its own objects wait for: that status is kept (one read per bucket
	// every 2 s, not one per object).
	dst = &fakeDest{versioning: ""}
	a.cfg.Objects = dst
	for _, k := range []string{"p1", "p2", "p3"} {
		failed, err := a.applyObjects(context.Background(), rgwlog.Unit{}, &v1.Batch{Objects: []*v1.ObjectOp{{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT,
			Key: k, Timestamp: timestamppb.Now(), Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")}}}, nil, nil)
		require.NoError(t, err)
		require.Empty(t, failed)
	}
	require.Equal(t, 1, dst.versioningReads)
}

// TestWaitedNullVersionIsNotDuplicated: a null version that waited
// nullVersionWait for zone-b's bucket to show versioning suspended was
// written anyway into the enabled bucket; where zone-b already listed a
// null entry of the key, that made a second one no DELETE removes (make
// chaos seed 5, v/k00358; FACTS.md section 20). It is parked instead; with
// no null entry there it is still written.
func TestWaitedNullVersionIsNotDuplicated(t *testing.T) {
	old := timestamppb.New(time.Now().Add(-nullVersionWait - time.Minute))
	op := func() *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null", VersionedEpoch: 5, Timestamp: old}
	}
	dst := &fakeDest{versioning: "Enabled",
		listed: map[string]rgwobj.ListEntry{"k\x00null": {Key: "k", VersionID: "null", VersionedEpoch: 2, ETag: "old", Size: 3}}}
	failed := applyWith(t, dst, op())
	require.Len(t, failed, 1)
	require.True(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Contains(t, failed[0].GetError(), "second one")
	require.Empty(t, dst.callsOf("put"))

	dst = &fakeDest{versioning: "Enabled"}
	require.Empty(t, applyWith(t, dst, op()))
	require.Equal(t, []string{"put k null"}, dst.callsOf("put"), "no null entry there: written after the wait, as before")
}

// A delete marker the gateway declines because the key's current entry on
// zone-b is a delete marker already (FACTS.md section 22; make chaos seed
// 5, v/k02081) is parked: kept and shown, and later ops of the key go on
// (it held them for good before, failing with "is the bucket versioned?").
// Declined while zone-b's current entry is not a marker, the cause is
// unknown: a plain failure, retried.
func TestDeclinedMarkerOverMarkerIsParked(t *testing.T) {
	const named = "9yZADrZa6AQ65qBNn0qb43r5-feu1Qb"
	declined := fmt.Errorf("put delete marker b/k %s: %w", named, rgwobj.ErrMarkerDeclined)
	dm := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: named, VersionedEpoch: 2}
	dst := &fakeDest{versioning: "Enabled", markerErr: map[string]error{"k\x00" + named: declined},
		latest: map[string]rgwobj.ListEntry{"k": {Key: "k", VersionID: "null", IsLatest: true, DeleteMarker: true, VersionedEpoch: 3}}}
	failed := applyWith(t, dst, dm)
	require.Len(t, failed, 1)
	require.True(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Contains(t, failed[0].GetError(), "FACTS.md section 22")

	dst.latest = map[string]rgwobj.ListEntry{"k": {Key: "k", VersionID: "V", IsLatest: true, VersionedEpoch: 3}}
	failed = applyWith(t, dst, dm)
	require.Len(t, failed, 1)
	require.False(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.ErrorContains(t, errors.New(failed[0].GetError()), "declined")
}

// make chaos seed 1 (CHAOS_EXTENDED=1): the source's bucket was suspended
// for seven seconds, a null version written in them; the metadata sync,
// which copies current blobs, never wrote that suspension on zone-b, and
// the null version waited the full 10 minutes, holding every later op of
// its key — past the run's end (10 of its 28 differences). Written at once
// into the enabled bucket instead, it was the other kind of null version,
// and a later null write listed the key's null twice (9 keys of the next
// run). Once the exporter says the metadata logged before the op is
// applied (MetadataSettled) the op is parked: kept and shown, the key's
// later ops go on, and a retry writes it if zone-b's bucket is suspended.
func TestSettledMetadataParksTheNullVersion(t *testing.T) {
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null", VersionedEpoch: 3,
		Timestamp: timestamppb.Now(), MetadataSettled: true}
	dst := &fakeDest{versioning: "Enabled"}
	failed := applyWith(t, dst, op)
	require.Len(t, failed, 1)
	require.True(t, rgwlog.Parked(failed[0].GetError()), failed[0].GetError())
	require.Contains(t, failed[0].GetError(), "never showed")
	require.Empty(t, dst.callsOf("put"), "never written into the enabled bucket")

	dst = &fakeDest{versioning: "Suspended"}
	require.Empty(t, applyWith(t, dst, op))
	require.Equal(t, []string{"put k null"}, dst.callsOf("put"), "zone-b suspended: written")

	op.MetadataSettled = false
	dst = &fakeDest{versioning: "Enabled"}
	failed = applyWith(t, dst, op)
	require.Len(t, failed, 1, "not settled: it waits, as before")
	require.False(t, rgwlog.Parked(failed[0].GetError()))
	require.Contains(t, failed[0].GetError(), "not Suspended yet")
}

// A null version that comes without its epoch (a change of its tags or ACL
// at the source logs a plain "write", and a plain write is replayed after
// a kill) into a bucket versioned on zone-b, which has it as the op says
// but for its tags: set in place, not written again. Written again zone-b
// gave it an epoch above the key's later ops (make chaos seed 1 extended,
// v/k00302: the source's later delete marker not current on zone-b), and
// each write into a bucket whose versioning toggles risks another kind of
// null version (seed 2 extended, v/k01410: four writes of one null, "null"
// listed twice). On the code before it was written whole.
func TestNullVersionWithoutEpochIsNotWrittenAgain(t *testing.T) {
	for _, st := range []string{"Suspended", "Enabled"} {
		dst := &fakeDest{versioning: st,
			stat: map[string]rgwobj.ObjectInfo{"k\x00null": {Key: "k", VersionID: "null", Owner: "u", Size: 1, ETag: "e"}}}
		op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null", Owner: "u",
			Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e", Tags: map[string]string{"a": "1"}}, Body: []byte("x"), MetadataSettled: true}
		require.Empty(t, applyWith(t, dst, op), st)
		require.Equal(t, []string{"tagging k null map[a:1]"}, dst.calls, "%s: its tags set in place", st)

		dst = &fakeDest{versioning: st,
			stat: map[string]rgwobj.ObjectInfo{"k\x00null": {Key: "k", VersionID: "null", Owner: "u", Size: 1, ETag: "e"}}}
		op.Attrs.Tags = nil
		require.Empty(t, applyWith(t, dst, op), st)
		require.Empty(t, dst.calls, "%s: a replay of what zone-b has: nothing written", st)
	}
	// A bucket never versioned: written as before (no look first).
	dst := &fakeDest{stat: map[string]rgwobj.ObjectInfo{"k\x00null": {Key: "k", VersionID: "null", Owner: "u", Size: 1, ETag: "e"}}}
	require.Empty(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_PUT, Key: "k", VersionId: "null",
		Owner: "u", Attrs: &v1.ObjectAttrs{Size: 1, Etag: "e"}, Body: []byte("x")}))
	require.Equal(t, []string{"put k null"}, dst.calls)
}

// The null version is removed only when zone-b lists one older than the
// removal: a second DELETE ?versionId=null of a key whose null version is
// gone (a batch re-sent after a fault) leaves the key's OLH behind on
// Pacific, so a delete marker laid once every version is gone is not
// current (FACTS.md section 27; make chaos seeds 2 and 3 at 4da48da).
// Fails on the code before: the delete is sent whatever zone-b has.
func TestNullVersionRemovedOnlyWhenListed(t *testing.T) {
	del := func(key string, epoch uint64) *v1.ObjectOp {
		return &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, Key: key, VersionId: "null", VersionedEpoch: epoch, Owner: "u"}
	}
	dst := &fakeDest{listed: map[string]rgwobj.ListEntry{
		"old\x00null":    {Key: "old", VersionID: "null", VersionedEpoch: 4},
		"marker\x00null": {Key: "marker", VersionID: "null", VersionedEpoch: 3, DeleteMarker: true},
		"later\x00null":  {Key: "later", VersionID: "null", VersionedEpoch: 8},
		"noep\x00null":   {Key: "noep", VersionID: "null"},
	}}
	require.Empty(t, applyWith(t, dst, del("gone", 6), del("old", 6), del("marker", 5), del("later", 6), del("noep", 0)))
	require.ElementsMatch(t, []string{"delete-version old null", "delete-version marker null", "delete-version noep null"}, dst.calls,
		"not listed: nothing sent; a later null version (epoch 8) is not this removal's (epoch 6)")

	// Named versions are removed as before (a repeat leaves no OLH).
	dst = &fakeDest{}
	require.Empty(t, applyWith(t, dst, &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION, Key: "k", VersionId: "V1", VersionedEpoch: 5, Owner: "u"}))
	require.Equal(t, []string{"delete-version k V1"}, dst.calls)

	// zone-b's listing fails: retried, nothing sent.
	dst = &fakeDest{listErr: errors.New("500 from the fake")}
	require.Len(t, applyWith(t, dst, del("old", 6)), 1)
	require.Empty(t, dst.calls)

	// zone-b has no such bucket (removed, its removal applied first): no
	// null version to remove, done — it was retried for good (make chaos
	// seed 2 at 909a6b6: hundreds of removals in removed buckets, the
	// later ops of their keys held behind them).
	dst = &fakeDest{listErr: fmt.Errorf("find version: GET /b: status 404 NoSuchBucket: %w", rgwobj.ErrNotFound)}
	require.Empty(t, applyWith(t, dst, del("old", 6)))
	require.Empty(t, dst.calls)
}

// declinesOverMarker is zone-b declining a null delete marker over a
// current delete marker until a null version is there for it to replace
// (FACTS.md sections 22 and 29).
type declinesOverMarker struct {
	*fakeDest
	nullPut bool
}

func (d *declinesOverMarker) Put(ctx context.Context, info rgwobj.ObjectInfo, body io.Reader, epoch uint64) (string, error) {
	if info.VersionID == "null" {
		d.record(fmt.Sprintf("put %s null epoch %d size %d", info.Key, epoch, info.Size))
		d.nullPut = true
		return "", nil
	}
	return d.fakeDest.Put(ctx, info, body, epoch)
}

func (d *declinesOverMarker) PutDeleteMarker(ctx context.Context, bucket, key, owner, version string, epoch uint64) error {
	d.record(fmt.Sprintf("delete-marker %s %s epoch %d", key, version, epoch))
	if version == "null" && !d.nullPut {
		return fmt.Errorf("put delete marker %s/%s null: %w", bucket, key, rgwobj.ErrMarkerDeclined)
	}
	return nil
}

// make chaos seed 2 (extended, at 10ea65a): null delete markers the source
// laid over a named delete marker (a DELETE in a suspended bucket whose
// key was deleted already) were declined by zone-b for good and parked: 2
// of its 5 differences. In a bucket zone-b shows suspended, a null version
// written first with an epoch below the current marker's (never current)
// is replaced by the marker, which then lands as on the source (FACTS.md
// section 29). Fails on the code before (parked).
func TestNullMarkerOverMarkerReplacesATemporaryNullVersion(t *testing.T) {
	op := &v1.ObjectOp{Kind: v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, Key: "k", VersionId: "null", VersionedEpoch: 7, Owner: "u"}
	cur := map[string]rgwobj.ListEntry{"k": {Key: "k", VersionID: "M", IsLatest: true, DeleteMarker: true, VersionedEpoch: 6}}
	dst := &declinesOverMarker{fakeDest: &fakeDest{versioning: "Suspended", latest: cur}}
	a := &Applier{cfg: Config{Objects: dst, Metrics: NewMetrics(nil), ApplyConcurrency: 4}, leases: allLeases{},
		log: slog.New(slog.DiscardHandler)}
	require.NoError(t, a.applyObject(context.Background(), op, nil))
	require.Equal(t, []string{"delete-marker k null epoch 7", "put k null epoch 5 size 0", "delete-marker k null epoch 7"}, dst.calls)

	// zone-b's bucket shows versioning enabled (a null version would not
	// be written as one): parked, as before; so is a current marker with
	// no epoch below it to give the null version.
	for _, c := range []struct {
		versioning string
		epoch      uint64
	}{{"Enabled", 6}, {"Suspended", 1}} {
		cur := map[string]rgwobj.ListEntry{"k": {Key: "k", VersionID: "M", IsLatest: true, DeleteMarker: true, VersionedEpoch: c.epoch}}
		dst := &declinesOverMarker{fakeDest: &fakeDest{versioning: c.versioning, latest: cur}}
		a.cfg.Objects = dst
		err := a.applyObject(context.Background(), op, nil)
		_, parked := parkedLevel(err)
		require.True(t, parked, "%s, current marker epoch %d: %v", c.versioning, c.epoch, err)
		require.NotContains(t, strings.Join(dst.calls, ","), "put k null")
	}
}
