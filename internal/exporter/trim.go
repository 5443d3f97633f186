package exporter

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// trimLoop trims the source's mdlog shards up to what every known
// destination has applied, keeping each destination's bound entry (see
// checkNotTrimmed).
func (e *Exporter) trimLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.TrimInterval)
	defer t.Stop()
	trimmed := map[string]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.trimOnce(ctx, trimmed); err != nil && ctx.Err() == nil {
			e.log.Warn("trim source mdlog", "err", err)
			e.cfg.Metrics.errors.WithLabelValues("trim").Inc()
		}
	}
}

// TrimPoints returns, per shard of log (checkpoint.LogMetadata or
// LogData), the marker up to which the source log may be trimmed: the
// lowest TrimSafe over every destination, or nothing when a destination
// has not acked past its first bound on that shard.
func (e *Exporter) TrimPoints(log string) (map[int]string, error) {
	all, err := e.cfg.Store.List("")
	if err != nil {
		return nil, err
	}
	points := map[int]string{}
	blocked := map[int]bool{}
	for _, en := range all {
		if en.Key.Log != log {
			continue
		}
		shard := int(en.Key.Shard)
		ts := en.Bound.TrimSafe
		if ts == "" || blocked[shard] {
			blocked[shard] = true
			delete(points, shard)
			continue
		}
		cur, ok := points[shard]
		if !ok {
			points[shard] = ts
			continue
		}
		c, err := compareMarkers(log, ts, cur)
		if err != nil {
			return nil, err
		}
		if c < 0 {
			points[shard] = ts
		}
	}
	return points, nil
}

// compareMarkers orders two markers of one shard of log. Datalog markers
// ("<20 digits>:<20 digits>") are fixed width: they order as strings.
func compareMarkers(log, a, b string) (int, error) {
	if log == checkpoint.LogMetadata {
		return rgwlog.CompareMDLogMarkers(a, b)
	}
	return strings.Compare(a, b), nil
}

func (e *Exporter) trimOnce(ctx context.Context, done map[string]string) error {
	logs := []string{checkpoint.LogMetadata}
	if e.dataShards > 0 {
		logs = append(logs, checkpoint.LogData)
	}
	for _, log := range logs {
		points, err := e.TrimPoints(log)
		if err != nil {
			return err
		}
		for shard, m := range points {
			id := fmt.Sprintf("%s/%d", log, shard)
			if done[id] == m {
				continue
			}
			if log == checkpoint.LogMetadata {
				err = e.cfg.Source.TrimMDLog(ctx, e.period, shard, m)
			} else {
				err = e.cfg.Data.TrimDataLog(ctx, shard, m)
			}
			if err != nil {
				return fmt.Errorf("trim %s shard %d to %s: %w", log, shard, m, err)
			}
			done[id] = m
			e.cfg.Metrics.trims.WithLabelValues(log).Inc()
			e.log.Info("trimmed source log", "log", log, "shard", shard, "marker", m)
		}
	}
	return nil
}

// resync handles a shard whose log was trimmed past its bound: the shard's
// bound jumps to the source's head and the destination's metadata full
// sync runs again (incremental shards wait for it, as at first contact), so
// whatever the trimmed entries changed is copied from the source's current
// state. It is logged and counted, never silent.
func (e *Exporter) resync(ctx context.Context, w *worker, te *trimmedError) error {
	d := w.d
	e.cfg.Metrics.resyncs.WithLabelValues(d.name).Inc()
	e.log.Error("source log trimmed past the bound: re-running the metadata full sync", "destination", d.name,
		"shard", te.shard, "bound", te.bound, "oldest_left", te.oldest)
	head, err := e.startPosition(ctx, te.shard)
	if err != nil {
		return fmt.Errorf("%v; and reading its head for the re-sync: %w", te, err)
	}
	now := time.Now().UTC()
	nb := w.bound
	nb.Marker, nb.TrimSafe, nb.Retries, nb.OldestTime, nb.UpdatedAt = head, "", nil, time.Time{}, now
	nb.Resyncs++
	full := rgwlog.Unit{Log: v1.LogType_LOG_TYPE_METADATA_FULL}
	fb, _, err := e.cfg.Store.Get(full.Key(d.name))
	if err != nil {
		return err
	}
	fb.Marker, fb.Phase, fb.UpdatedAt = fullPos{}.String(), checkpoint.PhaseFullSync, now
	if err := e.cfg.Store.Put(checkpoint.Entry{Key: w.key, Bound: nb}, checkpoint.Entry{Key: full.Key(d.name), Bound: fb}); err != nil {
		return fmt.Errorf("store the re-sync of %s: %w", w.key, err)
	}
	d.reopenFull()
	// Every other subscription of the destination restarts: incremental
	// ones must wait for the new full sync, the full one must run it.
	d.mu.Lock()
	var others []*subscription
	for _, s := range d.subs {
		if s != w.sub {
			others = append(others, s)
		}
	}
	d.mu.Unlock()
	for _, s := range others {
		// Not waiting here for the other workers to end: one of them may
		// be in its own re-sync, stopping this one (several shards trimmed
		// at once: each waited for the other, a deadlock a CI run hit).
		e.detach(s)
		s.cancel()
		go e.stopSub(s, "metadata re-sync after a trimmed log")
	}
	return fmt.Errorf("%v: re-sync started", te)
}
