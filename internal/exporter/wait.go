package exporter

// Wait: every change the source had logged when the call began is applied
// on the destination (the `radosgw-admin bucket sync checkpoint` analogue).
// The heads of the logs are read first; then the bounds in the store are
// compared with them until each is at or past its head with nothing kept
// for retry.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// waitTarget is what a Wait waits for: each shard's head when it began.
type waitTarget struct {
	dest    string
	started time.Time
	md      []string             // mdlog shard -> head marker (nil: the metadata is not waited for)
	shards  []rgwlog.BucketShard // bucket index shards waited for
	bilog   map[string]string    // bucket shard key -> head marker
}

// waitPoll is how often Wait compares the bounds with the heads;
// waitReport how often it sends progress that did not change.
const (
	waitPoll   = time.Second
	waitReport = 10 * time.Second
	waitShown  = 20 // waiting shards named in one progress message
)

// Wait implements StatusService.Wait.
func (e *Exporter) Wait(req *v1.WaitRequest, stream grpc.ServerStreamingServer[v1.WaitResponse]) error {
	ctx := stream.Context()
	dest, err := e.waitDestination(req.GetDestination())
	if err != nil {
		return err
	}
	t, err := e.readWaitTarget(ctx, dest, req.GetBucket())
	if err != nil {
		if errors.Is(err, rgwadmin.ErrNotFound) {
			return status.Errorf(codes.NotFound, "read the source's log heads: %v", err)
		}
		return status.Errorf(codes.Unavailable, "read the source's log heads: %v", err)
	}
	var last *v1.WaitResponse
	lastSent := time.Time{}
	for {
		p, err := e.waitProgress(t)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if p.GetDone() || last == nil || !proto.Equal(p, last) || time.Since(lastSent) > waitReport {
			if err := stream.Send(p); err != nil {
				return err
			}
			last, lastSent = p, time.Now()
		}
		if p.GetDone() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(waitPoll):
		}
	}
}

// waitDestination is the destination named, or the only one the store
// keeps bounds for.
func (e *Exporter) waitDestination(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	all, err := e.cfg.Store.List("")
	if err != nil {
		return "", status.Error(codes.Internal, err.Error())
	}
	seen := map[string]bool{}
	for _, en := range all {
		seen[en.Key.Destination] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", status.Error(codes.FailedPrecondition, "no destination has bounds here yet: has an applier connected?")
	}
	return "", status.Errorf(codes.InvalidArgument, "several destinations (%s): name one", strings.Join(names, ", "))
}

// readWaitTarget reads the heads: of every mdlog shard and every bucket's
// index shards, or of one bucket's index shards.
func (e *Exporter) readWaitTarget(ctx context.Context, dest, bucket string) (waitTarget, error) {
	t := waitTarget{dest: dest, started: time.Now(), bilog: map[string]string{}}
	if bucket == "" {
		t.md = make([]string, e.mdShards)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(e.cfg.FetchConcurrency)
		for i := range e.mdShards {
			g.Go(func() error {
				// As a new bound starts: "" for a shard that holds no
				// entry, whose &info marker may name one trimmed long ago.
				h, err := e.startPosition(gctx, i)
				t.md[i] = h
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return t, err
		}
	}
	if e.cfg.Data == nil {
		if bucket != "" {
			return t, errors.New("this exporter does not sync data (data.enabled is off)")
		}
		return t, nil
	}
	return t, e.readBucketHeads(ctx, &t, bucket)
}

// readBucketHeads reads the index shards of one bucket's current instance
// (bucket "": of every replicated bucket) into t, with their bilog heads.
func (e *Exporter) readBucketHeads(ctx context.Context, t *waitTarget, bucket string) error {
	var err error
	if bucket == "" {
		t.shards, err = e.allBucketShards(ctx)
	} else {
		bucket = strings.Replace(bucket, ":", "/", 1) // "tenant:name" as S3 writes it
		if !e.cfg.Filter.Bucket(bucket) {
			return fmt.Errorf("bucket %s is not replicated (data.buckets filter)", bucket)
		}
		t.shards, err = e.shardsOf(ctx, bucket)
	}
	if err != nil {
		return err
	}
	kept := t.shards[:0]
	for _, bs := range t.shards {
		if e.cfg.Filter.Bucket(bs.Bucket) {
			kept = append(kept, bs)
		}
	}
	t.shards = kept
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.FetchConcurrency)
	for _, bs := range t.shards {
		g.Go(func() error {
			info, err := e.cfg.Data.BILogInfo(gctx, bs.Key)
			if err != nil {
				return fmt.Errorf("bilog info of %s: %w", bs.Key, err)
			}
			mu.Lock()
			t.bilog[bs.Key] = info.MaxMarker
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// waitProgress compares the bounds in the store with t's heads.
func (e *Exporter) waitProgress(t waitTarget) (*v1.WaitResponse, error) {
	p := &v1.WaitResponse{Started: timestamppb.New(t.started), ShardsTotal: uint32(len(t.md) + len(t.shards))}
	wait := func(shard, reason string) {
		if len(p.Waiting) < waitShown {
			p.Waiting = append(p.Waiting, &v1.WaitingShard{Shard: shard, Reason: reason})
		}
	}
	promised, err := e.promisedWork(t)
	if err != nil {
		return nil, err
	}
	if len(t.md) > 0 {
		full, ok, err := e.cfg.Store.Get(checkpoint.UnitKey(t.dest, rgwlog.Unit{Log: rgwlog.LogMetadataFull}))
		if err != nil {
			return nil, err
		}
		fullDone := ok && full.Phase == checkpoint.PhaseDone
		for i, head := range t.md {
			u := rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: uint32(i)}
			b, ok, err := e.cfg.Store.Get(checkpoint.UnitKey(t.dest, u))
			if err != nil {
				return nil, err
			}
			reason := ""
			switch {
			case !fullDone:
				reason = "metadata full sync"
			default:
				reason, err = boundReason(rgwlog.LogMetadata, b, ok, head, p)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", u, err)
				}
			}
			if reason == "" {
				p.ShardsDone++
			} else {
				wait(u.String(), reason)
			}
		}
	}
	for _, bs := range t.shards {
		b, ok, err := e.cfg.Store.Get(e.bucketShardKey(t.dest, bs))
		if err != nil {
			return nil, err
		}
		reason := promised[bs.Key]
		if reason == "" {
			reason, err = boundReason(rgwlog.LogBucketIndex, b, ok, t.bilog[bs.Key], p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", bs.Key, err)
			}
		}
		if reason == "" {
			p.ShardsDone++
		} else {
			wait(bs.Key, reason)
		}
	}
	p.Done = p.ShardsDone == p.ShardsTotal
	return p, nil
}

// boundReason says what a shard whose bound is b (ok: stored) waits for to
// be applied up to head; "" when nothing. Items kept for retry count in
// p.Parked when parked; scheduled re-checks of applied deletes do not wait.
func boundReason(l rgwlog.Log, b checkpoint.Bound, ok bool, head string, p *v1.WaitResponse) (string, error) {
	var failed, parked int
	for _, r := range b.Retries {
		switch {
		case r.Error == recheckMark:
		case rgwlog.Parked(r.Error):
			parked++
		default:
			failed++
		}
	}
	p.Parked += uint32(parked)
	switch {
	case !ok && head == "":
		return "", nil // nothing logged, nothing met
	case !ok:
		return "not met yet", nil
	case b.Phase == checkpoint.PhaseBucketFull || b.Phase == checkpoint.PhaseFullSync:
		return "full sync", nil
	case parked > 0:
		return fmt.Sprintf("%d items parked (see errors)", parked), nil
	case failed > 0:
		return fmt.Sprintf("%d items kept for retry", failed), nil
	case head == "":
		return "", nil
	}
	c, err := rgwlog.CompareMarkers(l, b.Marker, head)
	if err != nil {
		return "", err
	}
	if c < 0 {
		return fmt.Sprintf("bound %q < head %q", b.Marker, head), nil
	}
	return "", nil
}

// promisedWork: the bucket shards of t with work the exporter promised and
// has not done yet (a listing again, an instance to check), and why.
func (e *Exporter) promisedWork(t waitTarget) (map[string]string, error) {
	out := map[string]string{}
	if len(t.shards) == 0 {
		return out, nil
	}
	byBucket, byInstance := map[string][]string{}, map[string][]string{}
	for _, bs := range t.shards {
		byBucket[bs.Bucket] = append(byBucket[bs.Bucket], bs.Key)
		byInstance[bs.InstanceKey()] = append(byInstance[bs.InstanceKey()], bs.Key)
	}
	for _, l := range []string{checkpoint.LogRelist, checkpoint.LogInstanceCheck, checkpoint.LogInstanceMet} {
		ens, err := e.cfg.Store.ListLog(t.dest, l)
		if err != nil {
			return nil, err
		}
		for _, en := range ens {
			switch l {
			case checkpoint.LogRelist:
				if _, ok := t.bilog[en.Key.Instance]; ok {
					out[en.Key.Instance] = "to be listed again"
				}
			case checkpoint.LogInstanceCheck:
				for _, k := range byBucket[en.Key.Instance] {
					out[k] = "its bucket instance to be checked"
				}
			case checkpoint.LogInstanceMet:
				for _, k := range byInstance[en.Key.Instance] {
					out[k] = "its bucket instance to be checked"
				}
			}
		}
	}
	return out, nil
}
