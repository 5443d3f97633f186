package verifier

// The two sides a verify compares: the source, read through the exporter's
// SourceService (no S3 access across the WAN), and the destination, read
// directly with the applier's credentials.

import (
	"context"
	"errors"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Side is one zone's state as a verify reads it. GetMetadata answers
// rgwadmin.ErrNotFound and Stat rgwobj.ErrNotFound for what the zone does
// not have.
type Side interface {
	ListMetadataKeys(ctx context.Context, section, marker string, max int) (rgwadmin.KeyPage, error)
	GetMetadata(ctx context.Context, section, key string) ([]byte, error)
	ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error)
	Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error)
}

// Source is the source's side through the exporter.
func Source(c v1.SourceServiceClient) Side { return rpcSide{c} }

type rpcSide struct{ c v1.SourceServiceClient }

// rpcErr maps the service's NOT_FOUND to the errors a Side answers.
func rpcErr(err error, notFound error) error {
	if status.Code(err) == codes.NotFound {
		return errors.Join(notFound, err)
	}
	return err
}

func (s rpcSide) ListMetadataKeys(ctx context.Context, section, marker string, max int) (rgwadmin.KeyPage, error) {
	r, err := s.c.ListMetadataKeys(ctx, &v1.ListMetadataKeysRequest{Section: section, Marker: marker, Max: uint32(max)})
	if err != nil {
		return rgwadmin.KeyPage{}, err
	}
	return rgwadmin.KeyPage{Keys: r.GetKeys(), Marker: r.GetNextMarker(), Truncated: r.GetTruncated()}, nil
}

func (s rpcSide) GetMetadata(ctx context.Context, section, key string) ([]byte, error) {
	r, err := s.c.GetMetadata(ctx, &v1.GetMetadataRequest{Section: section, Key: key})
	if err != nil {
		return nil, rpcErr(err, rgwadmin.ErrNotFound)
	}
	return r.GetBlob(), nil
}

func (s rpcSide) ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error) {
	r, err := s.c.ListObjectVersions(ctx, &v1.ListObjectVersionsRequest{Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker,
		VersionIdMarker: versionMarker, Max: uint32(max)})
	if err != nil {
		return rgwobj.ListPage{}, rpcErr(err, rgwobj.ErrNotFound)
	}
	p := rgwobj.ListPage{NextKeyMarker: r.GetNextKeyMarker(), NextVersionMarker: r.GetNextVersionIdMarker(), Truncated: r.GetTruncated(),
		Entries: make([]rgwobj.ListEntry, len(r.GetVersions()))}
	for i, v := range r.GetVersions() {
		p.Entries[i] = rgwobj.ListEntry{Key: v.GetKey(), VersionID: v.GetVersionId(), IsLatest: v.GetIsLatest(),
			DeleteMarker: v.GetDeleteMarker(), ETag: v.GetEtag(), Size: v.GetSize(), Mtime: v.GetMtime().AsTime(), Owner: v.GetOwner()}
	}
	return p, nil
}

func (s rpcSide) Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error) {
	r, err := s.c.StatObject(ctx, &v1.StatObjectRequest{Bucket: bucket, Key: key, VersionId: versionID})
	if err != nil {
		return rgwobj.ObjectInfo{}, rpcErr(err, rgwobj.ErrNotFound)
	}
	info := wire.Info(bucket, key, r.GetVersionId(), r.GetOwner(), r.GetAttrs())
	info.Mtime = r.GetAttrs().GetSourceMtime().AsTime()
	return info, nil
}

// Zone is a zone read directly: its admin API and its S3 API (the
// destination, with the applier's system credentials).
func Zone(admin *rgwadmin.Client, objects *rgwobj.Client) Side { return zoneSide{admin, objects} }

type zoneSide struct {
	*rgwadmin.Client
	objects *rgwobj.Client
}

func (z zoneSide) ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error) {
	return z.objects.ListBucket(ctx, bucket, prefix, keyMarker, versionMarker, max)
}

// CountVersions is the zone's count of a bucket's versions (its bucket
// stats): what the progress line's estimate of the time left counts on.
func (z zoneSide) CountVersions(ctx context.Context, bucket string) (int64, error) {
	return z.Client.BucketVersions(ctx, bucket)
}

func (z zoneSide) Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error) {
	return z.objects.Stat(ctx, bucket, key, versionID)
}

// limited is a side whose every request waits for the verify's rate.
type limited struct {
	s Side
	l *rate.Limiter
}

func limit(s Side, l *rate.Limiter) Side {
	if l == nil {
		return s
	}
	return limited{s, l}
}

func (l limited) ListMetadataKeys(ctx context.Context, section, marker string, max int) (rgwadmin.KeyPage, error) {
	if err := l.l.Wait(ctx); err != nil {
		return rgwadmin.KeyPage{}, err
	}
	return l.s.ListMetadataKeys(ctx, section, marker, max)
}

func (l limited) GetMetadata(ctx context.Context, section, key string) ([]byte, error) {
	if err := l.l.Wait(ctx); err != nil {
		return nil, err
	}
	return l.s.GetMetadata(ctx, section, key)
}

func (l limited) ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (rgwobj.ListPage, error) {
	if err := l.l.Wait(ctx); err != nil {
		return rgwobj.ListPage{}, err
	}
	return l.s.ListBucket(ctx, bucket, prefix, keyMarker, versionMarker, max)
}

func (l limited) Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error) {
	if err := l.l.Wait(ctx); err != nil {
		return rgwobj.ObjectInfo{}, err
	}
	return l.s.Stat(ctx, bucket, key, versionID)
}

// newLimiter allows perSecond requests a second (0: no limit).
func newLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
}
