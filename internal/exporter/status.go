package exporter

import (
	"context"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Status implements StatusService.Status from the stored bounds and the
// live state of served shards.
func (e *Exporter) Status(ctx context.Context, req *v1.StatusRequest) (*v1.StatusResponse, error) {
	resp := &v1.StatusResponse{Role: "exporter", Id: e.cfg.ID, Gateway: e.cfg.SourceEndpoint, Now: timestamppb.Now()}
	e.cfg.Gateway.Fill(resp)
	e.mu.Lock()
	var names []string
	for n := range e.dests {
		if req.GetDestination() == "" || req.GetDestination() == n {
			names = append(names, n)
		}
	}
	e.mu.Unlock()
	sort.Strings(names)
	if req.GetDestination() != "" && len(names) == 0 {
		return nil, status.Errorf(codes.NotFound, "no destination %q", req.GetDestination())
	}
	for _, n := range names {
		ds, err := e.destinationStatus(n, wire.Log(req.GetLogType()))
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Destinations = append(resp.Destinations, ds)
	}
	return resp, nil
}

func (e *Exporter) destinationStatus(name string, only rgwlog.Log) (*v1.DestinationStatus, error) {
	d := e.destination(name)
	// Bucket-index bounds show through their data shard: not read here
	// (tens of thousands in a zone with many buckets, on every call).
	var bounds []checkpoint.Entry
	for _, l := range []string{checkpoint.LogData, checkpoint.LogMetadata, checkpoint.LogMetadataFull} {
		got, err := e.cfg.Store.ListLog(name, l)
		if err != nil {
			return nil, err
		}
		bounds = append(bounds, got...)
	}
	ds := &v1.DestinationStatus{Destination: name, ResyncQueued: d.resyncQueued.Load(), ResyncApplied: d.resyncApplied.Load(),
		ResyncFailed: d.resyncFailed.Load()}
	d.mu.Lock()
	for a := range d.appliers {
		ds.Appliers = append(ds.Appliers, a)
	}
	stats := make([]*shardStats, 0, len(d.stats))
	for _, st := range d.stats {
		stats = append(stats, st)
	}
	d.mu.Unlock()
	for _, st := range stats {
		ds.BytesApplied += st.snapshot().bytes
	}
	sort.Strings(ds.Appliers)
	var oldest time.Time
	behindByLog := map[string]float64{}
	oldestByLog := map[string]time.Time{}
	for _, en := range bounds {
		t, err := rgwlog.ParseLog(en.Key.Log)
		if err != nil || t == rgwlog.LogBucketIndex || (only != 0 && only != t) {
			continue // bucket index shards show through their data shard
		}
		u := rgwlog.Unit{Log: t, Shard: en.Key.Shard}
		ss := e.shardStatus(d, u, en.Bound)
		ds.Shards = append(ds.Shards, ss)
		pending := ss.GetRetries() > 0 || ss.GetEntriesBehind() > 0 || ss.GetEntriesBehindMore() ||
			(t == rgwlog.LogMetadata && ss.GetSourceHeadMarker() != "" && ss.GetSourceHeadMarker() != ss.GetBoundMarker()) ||
			(t == rgwlog.LogMetadataFull && ss.GetPhase() != v1.ShardPhase_SHARD_PHASE_DONE)
		if ss.GetStalledSince() != nil {
			ds.ShardsStalled++
		}
		if pending {
			ds.ShardsBehind++
		} else {
			ds.ShardsCaughtUp++
		}
		ds.EntriesApplied += ss.GetEntriesApplied()
		ds.Retries += ss.GetRetries()
		behindByLog[en.Key.Log] += float64(ss.GetEntriesBehind())
		shardLabel := strconv.FormatUint(uint64(en.Key.Shard), 10)
		shardLag := 0.0
		if o := ss.GetOldestUnapplied(); o != nil {
			shardLag = time.Since(o.AsTime()).Seconds()
		}
		e.cfg.Metrics.shardLag.WithLabelValues(name, en.Key.Log, shardLabel).Set(shardLag)
		e.cfg.Metrics.shardBehind.WithLabelValues(name, en.Key.Log, shardLabel).Set(float64(ss.GetEntriesBehind()))
		if o := ss.GetOldestUnapplied(); o != nil {
			ot := o.AsTime()
			if oldest.IsZero() || ot.Before(oldest) {
				oldest = ot
			}
			if cur := oldestByLog[en.Key.Log]; cur.IsZero() || ot.Before(cur) {
				oldestByLog[en.Key.Log] = ot
			}
		}
	}
	if !oldest.IsZero() {
		ds.OldestUnapplied = timestamppb.New(oldest)
	}
	for _, l := range []string{checkpoint.LogMetadata, checkpoint.LogMetadataFull} {
		e.cfg.Metrics.entriesBehind.WithLabelValues(name, l).Set(behindByLog[l])
		lag := 0.0
		if t := oldestByLog[l]; !t.IsZero() {
			lag = time.Since(t).Seconds()
		}
		e.cfg.Metrics.lagSeconds.WithLabelValues(name, l).Set(lag)
	}
	e.cfg.Metrics.shardsBehind.WithLabelValues(name).Set(float64(ds.ShardsBehind))
	e.cfg.Metrics.shardsStalled.WithLabelValues(name).Set(float64(ds.ShardsStalled))
	return ds, nil
}

func (e *Exporter) shardStatus(d *destination, u rgwlog.Unit, b checkpoint.Bound) *v1.ShardStatus {
	ss := &v1.ShardStatus{
		Shard:       wire.Ref(u),
		BoundMarker: b.Marker,
		Retries:     uint32(failures(b.Retries)),
		Resyncs:     b.Resyncs,
	}
	if u.Log == rgwlog.LogMetadata {
		ss.SourceHeadMarker = e.head(u.Shard)
	}
	if !b.OldestTime.IsZero() {
		ss.OldestUnapplied = timestamppb.New(b.OldestTime)
	}
	switch {
	case u.Log == rgwlog.LogMetadataFull && b.Phase == checkpoint.PhaseDone:
		ss.Phase = v1.ShardPhase_SHARD_PHASE_DONE
	case u.Log == rgwlog.LogMetadataFull:
		ss.Phase = v1.ShardPhase_SHARD_PHASE_FULL_SYNC
	case !d.isFullDone():
		ss.Phase = v1.ShardPhase_SHARD_PHASE_WAITING_FULL_SYNC
	case ss.SourceHeadMarker != "" && ss.SourceHeadMarker == b.Marker && failures(b.Retries) == 0:
		ss.Phase = v1.ShardPhase_SHARD_PHASE_CAUGHT_UP
	default:
		ss.Phase = v1.ShardPhase_SHARD_PHASE_INCREMENTAL
	}
	d.mu.Lock()
	st := d.stats[u]
	d.mu.Unlock()
	if st != nil {
		s := st.snapshot()
		if s.phase != v1.ShardPhase_SHARD_PHASE_UNSPECIFIED && s.holder != "" {
			ss.Phase = s.phase
		}
		ss.EntriesBehind, ss.EntriesBehindMore = s.behind, s.behindMore
		ss.LeaseHolder = s.holder
		if !s.leaseExpires.IsZero() && s.holder != "" {
			ss.LeaseExpires = timestamppb.New(s.leaseExpires)
		}
		ss.EntriesApplied = s.applied
		ss.InflightBatches = uint32(s.inflight)
		ss.LastError = s.lastErr
		ss.WaitingFor = s.waiting
		if since := s.stalledSince(time.Now(), e.cfg.StallAfter); !since.IsZero() {
			ss.StalledSince = timestamppb.New(since)
			e.showStall(st, d.name, u, &s, since)
		}
		if !s.oldest.IsZero() && s.holder != "" {
			ss.OldestUnapplied = timestamppb.New(s.oldest)
		}
	}
	if ss.OldestUnapplied == nil && u.Log == rgwlog.LogMetadata && ss.SourceHeadMarker != "" && ss.SourceHeadMarker != b.Marker {
		// Behind but not being served: the bound's own time is all we know.
		ss.OldestUnapplied = timestamppb.New(b.UpdatedAt)
	}
	return ss
}

// showStall logs a stall at WARN, once per stall.
func (e *Exporter) showStall(st *shardStats, dest string, u rgwlog.Unit, s *shardStats, since time.Time) {
	first := false
	st.update(func(st *shardStats) { first, st.stallShown = !st.stallShown, true })
	if first {
		e.log.Warn("shard stalled: work pending and no batch sent nor ack taken", "destination", dest, "shard", u.String(),
			"applier", s.holder, "waiting_for", s.waiting, "since", since.UTC().Format(time.RFC3339), "inflight", s.inflight,
			"last_error", s.lastErr)
	}
}

// GetBounds implements StatusService.GetBounds in the replica_log shape.
func (e *Exporter) GetBounds(ctx context.Context, req *v1.GetBoundsRequest) (*v1.GetBoundsResponse, error) {
	if req.GetDestination() == "" {
		return nil, status.Error(codes.InvalidArgument, "destination is required")
	}
	u := rgwlog.Unit{Log: wire.Log(req.GetLogType()), Shard: req.GetShard()}
	if !e.validUnit(u) {
		return nil, status.Errorf(codes.InvalidArgument, "no shard %s on this exporter", u)
	}
	b, ok, err := e.cfg.Store.Get(checkpoint.UnitKey(req.GetDestination(), u))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no bounds for %s", checkpoint.UnitKey(req.GetDestination(), u))
	}
	resp := &v1.GetBoundsResponse{Marker: b.Marker}
	if !b.OldestTime.IsZero() {
		resp.OldestTime = timestamppb.New(b.OldestTime)
	}
	pm := &v1.PositionMarker{Entity: b.Applier, PositionMarker: b.Marker, PositionTime: timestamppb.New(b.UpdatedAt)}
	for _, r := range b.Retries {
		if r.Error == recheckMark {
			continue // applied; a scheduled second look is not work in progress
		}
		pm.ItemsInProgress = append(pm.ItemsInProgress, &v1.ItemMarker{
			Name: r.Section + ":" + r.Name, Timestamp: timestamppb.New(r.Timestamp), Attempts: r.Attempts, Error: r.Error})
	}
	resp.Markers = []*v1.PositionMarker{pm}
	return resp, nil
}
