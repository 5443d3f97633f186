package applier

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Status implements StatusService.Status: the shards this applier holds
// (with their lease deadlines) and what it applied of each.
func (a *Applier) Status(ctx context.Context, req *v1.StatusRequest) (*v1.StatusResponse, error) {
	var held map[rgwlog.Unit]time.Time
	if l := a.Leases(); l != nil {
		held = l.Held()
	}
	ds := &v1.DestinationStatus{Destination: a.cfg.Destination, Appliers: []string{a.cfg.ID}}
	a.mu.Lock()
	units := map[rgwlog.Unit]bool{}
	for u := range held {
		units[u] = true
	}
	for u := range a.shards {
		units[u] = true
	}
	list := make([]rgwlog.Unit, 0, len(units))
	for u := range units {
		if req.GetLogType() == v1.LogType_LOG_TYPE_UNSPECIFIED || wire.Log(req.GetLogType()) == u.Log {
			list = append(list, u)
		}
	}
	slices.SortFunc(list, rgwlog.Unit.Compare)
	for _, u := range list {
		ss := &v1.ShardStatus{Shard: wire.Ref(u)}
		if exp, ok := held[u]; ok {
			ss.LeaseHolder = a.cfg.ID
			ss.LeaseExpires = timestamppb.New(exp)
		}
		if st := a.shards[u]; st != nil {
			ss.Phase = st.phase
			ss.EntriesApplied = st.applied
			ss.BoundMarker = st.through
			ss.SourceHeadMarker = st.head
			ss.EntriesBehindMore = st.more
			ss.LastError = st.lastErr
			ds.EntriesApplied += st.applied
		}
		if ss.LeaseHolder == "" {
			continue // history of a shard no longer held: not this applier's any more
		}
		if ss.Phase == v1.ShardPhase_SHARD_PHASE_CAUGHT_UP || ss.Phase == v1.ShardPhase_SHARD_PHASE_DONE {
			ds.ShardsCaughtUp++
		} else {
			ds.ShardsBehind++
		}
		ds.Shards = append(ds.Shards, ss)
	}
	a.mu.Unlock()
	resp := &v1.StatusResponse{Role: "applier", Id: a.cfg.ID, Gateway: a.cfg.DestEndpoint,
		Destinations: []*v1.DestinationStatus{ds}, Now: timestamppb.Now()}
	a.cfg.Gateway.Fill(resp)
	return resp, nil
}

// GetBounds is kept by the exporter, which owns the bounds.
func (a *Applier) GetBounds(context.Context, *v1.GetBoundsRequest) (*v1.GetBoundsResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "bounds are kept by the exporter: ask it (rgwsync-exporter's StatusService/GetBounds)")
}
