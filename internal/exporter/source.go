package exporter

// SourceService: the source's state read page by page for `rgwsync-applier
// verify`, over the exporter's mTLS link. Only what this exporter
// replicates is served.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// BucketReader is what SourceService needs of the source's S3 side
// (rgwobj.Client): a whole bucket's versioned listing and one version's
// attributes.
type BucketReader interface {
	ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error)
	Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error)
}

// maxSourcePage bounds a SourceService page.
const maxSourcePage = 1000

func pageSize(max uint32) int {
	if max == 0 || max > maxSourcePage {
		return maxSourcePage
	}
	return int(max)
}

// sourceErr is the gRPC status of a source read's failure: NOT_FOUND only
// for the source's own "no such entry".
func sourceErr(what string, err error) error {
	var gerr *rgwadmin.GatewayError
	switch {
	case errors.Is(err, rgwadmin.ErrNotFound), errors.Is(err, rgwobj.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: %v", what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.As(err, &gerr):
		return status.Errorf(codes.Unavailable, "%s: the source answered: %v", what, err)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

func (e *Exporter) replicatedSection(section, key string) error {
	if !e.sections[section] {
		return status.Errorf(codes.PermissionDenied, "metadata section %q is not replicated by this exporter", section)
	}
	if key != "" && !e.cfg.Filter.Metadata(section, key) {
		return status.Errorf(codes.PermissionDenied, "%s %q is not replicated by this exporter (bucket filter)", section, key)
	}
	return nil
}

// ListMetadataKeys implements SourceService.ListMetadataKeys: the keys the
// bucket filter passes (a page may hold fewer than max, and be empty while
// truncated).
func (e *Exporter) ListMetadataKeys(ctx context.Context, req *v1.ListMetadataKeysRequest) (*v1.ListMetadataKeysResponse, error) {
	if err := e.replicatedSection(req.GetSection(), ""); err != nil {
		return nil, err
	}
	page, err := e.cfg.Source.ListMetadataKeys(ctx, req.GetSection(), req.GetMarker(), pageSize(req.GetMax()))
	if err != nil {
		return nil, sourceErr("list the source's "+req.GetSection()+" keys", err)
	}
	resp := &v1.ListMetadataKeysResponse{NextMarker: page.Marker, Truncated: page.Truncated}
	for _, k := range page.Keys {
		if e.cfg.Filter.Metadata(req.GetSection(), k) {
			resp.Keys = append(resp.Keys, k)
		}
	}
	return resp, nil
}

// GetMetadata implements SourceService.GetMetadata.
func (e *Exporter) GetMetadata(ctx context.Context, req *v1.GetMetadataRequest) (*v1.GetMetadataResponse, error) {
	if req.GetKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "key: required")
	}
	if err := e.replicatedSection(req.GetSection(), req.GetKey()); err != nil {
		return nil, err
	}
	blob, err := e.cfg.Source.GetMetadata(ctx, req.GetSection(), req.GetKey())
	if err != nil {
		return nil, sourceErr("read the source's "+req.GetSection()+" "+req.GetKey(), err)
	}
	return &v1.GetMetadataResponse{Blob: blob}, nil
}

// bucketReader is the source's S3 side for SourceService, or why not.
func (e *Exporter) bucketReader(bucket string) (BucketReader, error) {
	if bucket == "" {
		return nil, status.Error(codes.InvalidArgument, "bucket: required")
	}
	if !e.cfg.Filter.Bucket(strings.Replace(bucket, ":", "/", 1)) {
		return nil, status.Errorf(codes.PermissionDenied, "bucket %q is not replicated by this exporter (bucket filter)", bucket)
	}
	r, ok := e.cfg.Objects.(BucketReader)
	if !ok || e.cfg.Objects == nil {
		return nil, status.Error(codes.Unimplemented, "this exporter does not read objects (data sync is off)")
	}
	return r, nil
}

// ListObjectVersions implements SourceService.ListObjectVersions.
func (e *Exporter) ListObjectVersions(ctx context.Context, req *v1.ListObjectVersionsRequest) (*v1.ListObjectVersionsResponse, error) {
	r, err := e.bucketReader(req.GetBucket())
	if err != nil {
		return nil, err
	}
	page, err := r.ListBucket(ctx, req.GetBucket(), req.GetPrefix(), req.GetKeyMarker(), req.GetVersionIdMarker(), pageSize(req.GetMax()))
	if err != nil {
		return nil, sourceErr("list the versions of bucket "+req.GetBucket()+" on the source", err)
	}
	resp := &v1.ListObjectVersionsResponse{NextKeyMarker: page.NextKeyMarker, NextVersionIdMarker: page.NextVersionMarker,
		Truncated: page.Truncated, Versions: make([]*v1.ObjectVersion, len(page.Entries))}
	for i, en := range page.Entries {
		resp.Versions[i] = &v1.ObjectVersion{Key: en.Key, VersionId: en.VersionID, IsLatest: en.IsLatest,
			DeleteMarker: en.DeleteMarker, Etag: en.ETag, Size: en.Size, Mtime: timestamppb.New(en.Mtime), Owner: en.Owner}
	}
	return resp, nil
}

// StatObject implements SourceService.StatObject.
func (e *Exporter) StatObject(ctx context.Context, req *v1.StatObjectRequest) (*v1.StatObjectResponse, error) {
	r, err := e.bucketReader(req.GetBucket())
	if err != nil {
		return nil, err
	}
	info, err := r.Stat(ctx, req.GetBucket(), req.GetKey(), req.GetVersionId())
	if err != nil {
		return nil, sourceErr("read "+req.GetBucket()+"/"+req.GetKey()+" on the source", err)
	}
	return &v1.StatObjectResponse{Attrs: wire.Attrs(info), VersionId: info.VersionID, Owner: info.Owner}, nil
}

// GetScope implements SourceService.GetScope.
func (e *Exporter) GetScope(context.Context, *v1.GetScopeRequest) (*v1.GetScopeResponse, error) {
	inc, exc := e.cfg.Filter.Patterns()
	return &v1.GetScopeResponse{Sections: slices.Sorted(maps.Keys(e.sections)), Include: inc, Exclude: exc}, nil
}
