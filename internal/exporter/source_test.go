package exporter

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/filter"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// SourceService serves only what the exporter replicates, and says
// NOT_FOUND only for what the source does not have.
func TestSourceServiceScope(t *testing.T) {
	src := newFakeSource()
	src.blobs["bucket:keep-1"] = `{"data":{}}`
	src.blobs["bucket:drop-1"] = `{"data":{}}`
	src.blobs["user:alice"] = `{"data":{"user_id":"alice"}}`
	f, err := filter.New([]string{"keep-*"}, nil)
	require.NoError(t, err)
	r := newRig(t, src, filepath.Join(t.TempDir(), "s.db"), func(c *Config) {
		c.Filter = f
		c.Sections = []string{rgwlog.SectionUser, rgwlog.SectionBucket}
	})
	ctx := context.Background()

	keys, err := r.exp.ListMetadataKeys(ctx, &v1.ListMetadataKeysRequest{Section: rgwlog.SectionBucket})
	require.NoError(t, err)
	require.Equal(t, []string{"keep-1"}, keys.GetKeys())
	_, err = r.exp.GetMetadata(ctx, &v1.GetMetadataRequest{Section: rgwlog.SectionBucket, Key: "drop-1"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = r.exp.ListMetadataKeys(ctx, &v1.ListMetadataKeysRequest{Section: rgwlog.SectionBucketInstance})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a section not replicated")
	_, err = r.exp.GetMetadata(ctx, &v1.GetMetadataRequest{Section: rgwlog.SectionUser, Key: "bob"})
	require.Equal(t, codes.NotFound, status.Code(err))
	blob, err := r.exp.GetMetadata(ctx, &v1.GetMetadataRequest{Section: rgwlog.SectionUser, Key: "alice"})
	require.NoError(t, err)
	require.Contains(t, string(blob.GetBlob()), "alice")

	_, err = r.exp.ListObjectVersions(ctx, &v1.ListObjectVersionsRequest{Bucket: "drop-1"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = r.exp.ListObjectVersions(ctx, &v1.ListObjectVersionsRequest{Bucket: "keep-1"})
	require.Equal(t, codes.Unimplemented, status.Code(err), "data sync off: no object reads")

	scope, err := r.exp.GetScope(ctx, &v1.GetScopeRequest{})
	require.NoError(t, err)
	require.Equal(t, []string{"keep-*"}, scope.GetInclude())
	require.Equal(t, []string{rgwlog.SectionBucket, rgwlog.SectionUser}, scope.GetSections())
}
