package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/verifier"
)

type fakeSourceRPC struct {
	v1.SourceServiceClient
	buckets  []string
	versions map[string][]*v1.ObjectVersion // listing bucket name -> versions
	pages    int
}

func (f *fakeSourceRPC) ListMetadataKeys(_ context.Context, req *v1.ListMetadataKeysRequest, _ ...grpc.CallOption) (*v1.ListMetadataKeysResponse, error) {
	if req.GetMarker() == "" {
		return &v1.ListMetadataKeysResponse{Keys: f.buckets[:1], NextMarker: "m", Truncated: true}, nil
	}
	return &v1.ListMetadataKeysResponse{Keys: f.buckets[1:]}, nil
}

func (f *fakeSourceRPC) ListObjectVersions(_ context.Context, req *v1.ListObjectVersionsRequest, _ ...grpc.CallOption) (*v1.ListObjectVersionsResponse, error) {
	f.pages++
	all := f.versions[req.GetBucket()]
	start := 0
	for i, v := range all {
		if v.GetKey() == req.GetKeyMarker() && v.GetVersionId() == req.GetVersionIdMarker() {
			start = i + 1
		}
	}
	end := min(start+int(req.GetMax()), len(all))
	resp := &v1.ListObjectVersionsResponse{Versions: all[start:end], Truncated: end < len(all)}
	if resp.Truncated {
		resp.NextKeyMarker, resp.NextVersionIdMarker = all[end-1].GetKey(), all[end-1].GetVersionId()
	}
	return resp, nil
}

type fakeStatusRPC struct {
	v1.StatusServiceClient
	calls [][]*v1.ResyncObject
}

func (f *fakeStatusRPC) Resync(_ context.Context, req *v1.ResyncRequest, _ ...grpc.CallOption) (*v1.ResyncResponse, error) {
	f.calls = append(f.calls, append([]*v1.ResyncObject(nil), req.GetObjects()...))
	return &v1.ResyncResponse{Objects: uint32(len(req.GetObjects()))}, nil
}

// resync -older-than queues the versions the source last modified before
// the cutoff — of every replicated bucket (the scope's filter applied),
// a tenant's included — page by page, at most olderThanBatch per call.
func TestResyncOlderThan(t *testing.T) {
	cutoff := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	old, recent := timestamppb.New(cutoff.Add(-time.Hour)), timestamppb.New(cutoff.Add(time.Hour))
	var many []*v1.ObjectVersion
	for i := range 2500 {
		many = append(many, &v1.ObjectVersion{Key: "k" + string(rune('a'+i%26)) + time.Duration(i).String(), VersionId: "null", Mtime: old})
	}
	src := &fakeSourceRPC{buckets: []string{"photos", "acme/logs", "skipped"}, versions: map[string][]*v1.ObjectVersion{
		"photos":    {{Key: "a", VersionId: "V1", Mtime: old}, {Key: "a", VersionId: "V2", Mtime: recent}, {Key: "b", VersionId: "null", Mtime: old}},
		"acme:logs": many,
		"skipped":   {{Key: "x", VersionId: "null", Mtime: old}},
	}}
	st := &fakeStatusRPC{}
	keep := func(section, key string) bool { return key != "skipped" }
	queued, listed, err := resyncOlderThan(context.Background(), src, st, "zone-b", nil, keep, cutoff, nil)
	require.NoError(t, err)
	require.Equal(t, 2502, queued)
	require.Equal(t, 2503, listed)
	require.Len(t, st.calls, 3, "2,502 versions in calls of at most 1,000")
	require.Equal(t, &v1.ResyncObject{Bucket: "photos", Key: "a", VersionId: "V1"}, st.calls[0][0])
	require.Equal(t, "b", st.calls[0][1].GetKey(), "V2 is newer than the cutoff")
	require.Equal(t, "acme/logs", st.calls[0][2].GetBucket())
	require.Len(t, st.calls[0], olderThanBatch)

	// Named buckets: only those.
	st = &fakeStatusRPC{}
	queued, _, err = resyncOlderThan(context.Background(), src, st, "zone-b", []string{"photos"}, keep, cutoff, nil)
	require.NoError(t, err)
	require.Equal(t, 2, queued)
}

// resync -from takes every difference a verify -json printed: object
// versions, and metadata entries (a bucket's as "tenant/name"), each once.
func TestReadDiffs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.json")
	lines := []verifier.Diff{
		{Kind: "object", Bucket: "photos", Key: "k", VersionID: "V1", Field: "etag"},
		{Kind: "object", Bucket: "photos", Key: "k", VersionID: "V1", Field: "size"},
		{Kind: "bucket", Bucket: "acme:logs", Key: "acme:logs", Field: "bucket"},
		{Kind: "bucket", Key: "acme/logs", Field: "entry"},
		{Kind: "user", Key: "bob", Field: "entry"},
		{Kind: "bucket.instance", Key: "photos:abc.1", Field: "data differs: attrs.user.rgw.cors: …"},
	}
	var b strings.Builder
	for _, d := range lines {
		j, err := json.Marshal(d)
		require.NoError(t, err)
		b.Write(j)
		b.WriteString("\n")
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	objs, md, err := readDiffs(path)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	var got []string
	for _, m := range md {
		got = append(got, m.GetSection()+" "+m.GetKey())
	}
	require.Equal(t, []string{"bucket acme/logs", "user bob", "bucket.instance photos:abc.1"}, got)
}
