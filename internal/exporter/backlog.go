package exporter

// Backlog: what is waiting for a bucket (the `mc replicate backlog`
// analogue) — per index shard its phase, bound, head and why it is not
// done, and the changes known to be waiting: the source's bilog entries
// after the acked bound, and the items kept for retry.

import (
	"context"
	"errors"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// backlogDefault is the number of entries a Backlog lists when the request
// sets no limit; backlogPage the bilog page it reads at a time.
const (
	backlogDefault = 1000
	backlogPage    = 1000
)

// Backlog implements StatusService.Backlog.
func (e *Exporter) Backlog(ctx context.Context, req *v1.BacklogRequest) (*v1.BacklogResponse, error) {
	dest, err := e.waitDestination(req.GetDestination())
	if err != nil {
		return nil, err
	}
	if e.cfg.Data == nil {
		return nil, status.Error(codes.FailedPrecondition, "this exporter does not sync data (data.enabled is off)")
	}
	t := waitTarget{dest: dest, bilog: map[string]string{}}
	if err := e.readBucketHeads(ctx, &t, req.GetBucket()); err != nil {
		if errors.Is(err, rgwadmin.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "read the bucket's index shards: %v", err)
		}
		return nil, status.Errorf(codes.Unavailable, "read the bucket's index shards: %v", err)
	}
	sort.Slice(t.shards, func(i, j int) bool { return t.shards[i].Key < t.shards[j].Key })
	promised, err := e.promisedWork(t)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	left := int(req.GetLimit())
	if left <= 0 {
		left = backlogDefault
	}
	resp := &v1.BacklogResponse{}
	for _, bs := range t.shards {
		row, entries, err := e.shardBacklog(ctx, t, bs, promised[bs.Key], left)
		if err != nil {
			return nil, err
		}
		resp.Shards = append(resp.Shards, row)
		n := min(len(entries), left)
		resp.Entries = append(resp.Entries, entries[:n]...)
		left -= n
		resp.Total += uint32(len(entries))
		resp.Truncated = resp.Truncated || row.GetMore() || n < len(entries)
	}
	return resp, nil
}

// shardBacklog sums up one bucket shard and lists its waiting changes
// (reading at most max bilog entries).
func (e *Exporter) shardBacklog(ctx context.Context, t waitTarget, bs rgwlog.BucketShard, promised string, max int) (*v1.BucketShardBacklog, []*v1.BacklogEntry, error) {
	b, ok, err := e.cfg.Store.Get(e.bucketShardKey(t.dest, bs))
	if err != nil {
		return nil, nil, status.Error(codes.Internal, err.Error())
	}
	row := &v1.BucketShardBacklog{BucketShard: bs.Key, Head: t.bilog[bs.Key], Bound: b.Marker, Phase: "incremental"}
	switch {
	case !ok:
		row.Phase = "not met yet"
	case b.Phase == checkpoint.PhaseBucketFull:
		row.Phase = "full sync"
	}
	row.Waiting = promised
	if row.Waiting == "" {
		if row.Waiting, err = boundReason(rgwlog.LogBucketIndex, b, ok, row.Head, &v1.WaitResponse{}); err != nil {
			return nil, nil, status.Errorf(codes.Internal, "%s: %v", bs.Key, err)
		}
	}
	var entries []*v1.BacklogEntry
	for _, r := range b.Retries {
		if r.Error == recheckMark {
			continue
		}
		row.Retries++
		entries = append(entries, &v1.BacklogEntry{BucketShard: bs.Key, Key: r.Name, VersionId: r.VersionID, Op: "retry",
			Logged: timestamppb.New(r.Timestamp), Error: r.Error})
	}
	if row.Phase != "incremental" || row.Waiting == "" {
		// A full sync copies the whole shard (nothing is logged for it);
		// a shard done up to the head has nothing waiting.
		return row, entries, nil
	}
	pos := b.Marker
	for read := 0; ; {
		if read >= max {
			row.More = true
			return row, entries, nil
		}
		n := min(backlogPage, max-read)
		page, err := e.cfg.Data.ListBILog(ctx, bs.Key, pos, n)
		if err != nil {
			return nil, nil, status.Errorf(codes.Unavailable, "list the bucket index log of %s after %q: %v", bs.Key, pos, err)
		}
		read += len(page)
		for _, en := range page {
			if en.State != "" && en.State != "complete" {
				continue // finished by a later entry of the same op
			}
			row.EntriesBehind++
			entries = append(entries, &v1.BacklogEntry{BucketShard: bs.Key, Key: en.Object, VersionId: en.Instance, Op: en.Op,
				Marker: en.OpID, Logged: timestamppb.New(en.Timestamp)})
		}
		if len(page) < n {
			return row, entries, nil
		}
		pos = page[len(page)-1].OpID
	}
}
