package exporter

// ListErrors: the items kept for retry with the bounds, for operators (the
// `radosgw-admin sync error list` analogue). Read from the store, so they
// are there across restarts and for destinations not connected now.

import (
	"context"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// defaultErrorsLimit bounds ListErrors' answer when the request sets none.
const defaultErrorsLimit = 1000

// ListErrors implements StatusService.ListErrors.
func (e *Exporter) ListErrors(_ context.Context, req *v1.ListErrorsRequest) (*v1.ListErrorsResponse, error) {
	all, err := e.cfg.Store.List(req.GetDestination())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	bucket := strings.Replace(req.GetBucket(), ":", "/", 1) // "tenant:name" as S3 writes it
	var items []*v1.ErrorItem
	for _, en := range all {
		for _, r := range en.Bound.Retries {
			it, ok := errorItem(en.Key, r)
			if !ok || (it.GetState() == v1.ErrorState_ERROR_STATE_RECHECK && !req.GetIncludeRechecks()) {
				continue
			}
			if bucket != "" && itemBucket(it) != bucket {
				continue
			}
			items = append(items, it)
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		return items[i].GetFirstSeen().AsTime().Before(items[j].GetFirstSeen().AsTime())
	})
	resp := &v1.ListErrorsResponse{Total: uint32(len(items))}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = defaultErrorsLimit
	}
	resp.Items = items[:min(limit, len(items))]
	return resp, nil
}

// errorItem is the wire form of a retry kept under key; false for a bound
// that is not a log shard's (the exporter's own lists of promised work).
func errorItem(k checkpoint.Key, r checkpoint.Retry) (*v1.ErrorItem, bool) {
	it := &v1.ErrorItem{Destination: k.Destination, Section: r.Section, Name: r.Name, VersionId: r.VersionID,
		Error: r.Error, Attempts: r.Attempts, FirstSeen: timestamppb.New(r.Timestamp),
		NextAttempt: timestamppb.New(r.NextAttempt)}
	if !r.LastAttempt.IsZero() {
		it.LastAttempt = timestamppb.New(r.LastAttempt)
	}
	switch k.Log {
	case checkpoint.LogMetadata, checkpoint.LogMetadataFull:
		l, _ := rgwlog.ParseLog(k.Log)
		it.Shard = wire.Ref(rgwlog.Unit{Log: l, Shard: k.Shard})
	case checkpoint.LogBucketIndex:
		it.Shard = wire.Ref(rgwlog.Unit{Log: rgwlog.LogData, Shard: k.Shard})
		it.BucketShard = k.Instance
	default:
		return nil, false
	}
	switch {
	case r.Error == recheckMark:
		it.State = v1.ErrorState_ERROR_STATE_RECHECK
	case rgwlog.Held(r.Error):
		it.State = v1.ErrorState_ERROR_STATE_HELD
	case rgwlog.Parked(r.Error):
		it.State = v1.ErrorState_ERROR_STATE_PARKED
	default:
		it.State = v1.ErrorState_ERROR_STATE_FAILED
	}
	return it, true
}

// itemBucket is the bucket an item belongs to ("[tenant/]name"): of its
// bucket shard for objects, of its key for bucket metadata; "" for a user.
func itemBucket(it *v1.ErrorItem) string {
	if it.GetBucketShard() != "" {
		bs, err := rgwlog.ParseBucketShard(it.GetBucketShard())
		if err != nil {
			return ""
		}
		return bs.Bucket
	}
	switch it.GetSection() {
	case rgwlog.SectionBucket:
		return it.GetName()
	case rgwlog.SectionBucketInstance:
		name, _, _ := strings.Cut(it.GetName(), ":")
		return name
	}
	return ""
}
