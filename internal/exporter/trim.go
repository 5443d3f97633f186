package exporter

import (
	"context"
	"fmt"
	"time"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// trimLoop trims the source's mdlog, datalog and bucket-index log shards
// up to what every known destination has applied, keeping each
// destination's bound entry (see checkNotTrimmed).
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
			e.log.Warn("trim source logs", "err", err)
			e.cfg.Metrics.errors.WithLabelValues("trim").Inc()
		}
	}
}

// TrimPoints returns, per shard of log (rgwlog.LogMetadata or
// LogData), the marker up to which the source log may be trimmed: the
// lowest TrimSafe over every destination, or nothing when a destination
// has not acked past its first bound on that shard.
func (e *Exporter) TrimPoints(log rgwlog.Log) (map[int]string, error) {
	all, err := e.cfg.Store.List("")
	if err != nil {
		return nil, err
	}
	points := map[int]string{}
	blocked := map[int]bool{}
	for _, en := range all {
		if en.Key.Log != log.String() {
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
		c, err := rgwlog.CompareMarkers(log, ts, cur)
		if err != nil {
			return nil, err
		}
		if c < 0 {
			points[shard] = ts
		}
	}
	return points, nil
}

// bilogTrimMarker is the end-marker that trims a bilog's entries numbered
// below ver and keeps ver's own: the gateway compares it with the entries'
// keys as a string, and "<11 digits>" sorts before "<11 digits>.<n>.<n>"
// (FACTS.md section 21).
func bilogTrimMarker(ver uint64) string { return fmt.Sprintf("%011d", ver) }

// BILogTrimPoints returns, per bucket index shard ("[tenant/]name:instance
// [:shard]"), the end-marker up to which its bilog may be trimmed: below
// the lowest bound over the destinations that have one for it (the
// bound's own entry is kept, as for the other logs, so that a trim past
// the bound by someone else can be told apart), or nothing when one of
// them is listing the shard (full sync) or has read none of its bilog. A
// destination without a bound for the shard lists it first (full sync)
// when it meets it, and needs none of its older entries.
func (e *Exporter) BILogTrimPoints() (map[string]string, error) {
	all, err := e.cfg.Store.List("")
	if err != nil {
		return nil, err
	}
	lowest := map[string]uint64{}
	blocked := map[string]bool{}
	for _, en := range all {
		if en.Key.Log != checkpoint.LogBucketIndex {
			continue
		}
		inst := en.Key.Instance
		if blocked[inst] {
			continue
		}
		b := en.Bound
		if b.Marker == "" || b.Phase != checkpoint.PhaseIncremental {
			blocked[inst] = true
			delete(lowest, inst)
			continue
		}
		ver, err := rgwlog.BILogIndexVer(b.Marker)
		if err != nil {
			return nil, fmt.Errorf("bound of %s: %w", en.Key, err)
		}
		if cur, ok := lowest[inst]; !ok || ver < cur {
			lowest[inst] = ver
		}
	}
	points := map[string]string{}
	for inst, ver := range lowest {
		if ver > 1 {
			points[inst] = bilogTrimMarker(ver)
		}
	}
	return points, nil
}

// trimBILogs trims every bucket index shard's bilog to its trim point. One
// shard that fails does not stop the others: the first error is returned
// after all were tried, and each is counted.
func (e *Exporter) trimBILogs(ctx context.Context, done map[string]string) error {
	points, err := e.BILogTrimPoints()
	if err != nil {
		return err
	}
	var first error
	n := 0
	for inst, m := range points {
		id := checkpoint.LogBucketIndex + "/" + inst
		if done[id] == m {
			continue
		}
		if err := e.cfg.Data.TrimBILog(ctx, inst, m); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.cfg.Metrics.errors.WithLabelValues("trim").Inc()
			if first == nil {
				first = fmt.Errorf("trim bucket-index log of %s to %s: %w", inst, m, err)
			}
			continue
		}
		done[id] = m
		n++
		e.cfg.Metrics.trims.WithLabelValues(checkpoint.LogBucketIndex).Inc()
	}
	if n > 0 {
		e.log.Info("trimmed source bucket-index logs", "shards", n)
	}
	return first
}

func (e *Exporter) trimOnce(ctx context.Context, done map[string]string) error {
	logs := []rgwlog.Log{rgwlog.LogMetadata}
	if e.dataShards > 0 {
		logs = append(logs, rgwlog.LogData)
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
			if log == rgwlog.LogMetadata {
				err = e.cfg.Source.TrimMDLog(ctx, e.period, shard, m)
			} else {
				err = e.cfg.Data.TrimDataLog(ctx, shard, m)
			}
			if err != nil {
				return fmt.Errorf("trim %s shard %d to %s: %w", log, shard, m, err)
			}
			done[id] = m
			e.cfg.Metrics.trims.WithLabelValues(log.String()).Inc()
			e.log.Info("trimmed source log", "log", log, "shard", shard, "marker", m)
		}
	}
	if e.dataShards > 0 {
		return e.trimBILogs(ctx, done)
	}
	return nil
}

// resync handles a shard whose log was trimmed past its bound: the shard's
// bound jumps to the source's head and the destination's metadata full
// sync runs again (incremental shards wait for it, as at first contact), so
// whatever the trimmed entries changed is copied from the source's current
// state. It is logged and counted, never silent.
func (e *Exporter) resync(ctx context.Context, w *worker, te *rgwlog.TrimmedError) error {
	d := w.d
	e.cfg.Metrics.resyncs.WithLabelValues(d.name).Inc()
	e.log.Error("source log trimmed past the bound: re-running the metadata full sync", "destination", d.name,
		"shard", te.Unit.Shard, "bound", te.Bound, "oldest_left", te.Oldest)
	head, err := e.startPosition(ctx, int(te.Unit.Shard))
	if err != nil {
		return fmt.Errorf("%v; and reading its head for the re-sync: %w", te, err)
	}
	now := time.Now().UTC()
	nb := w.bound
	nb.Marker, nb.TrimSafe, nb.Retries, nb.OldestTime, nb.UpdatedAt = head, "", nil, time.Time{}, now
	nb.Resyncs++
	full := rgwlog.Unit{Log: rgwlog.LogMetadataFull}
	fb, _, err := e.cfg.Store.Get(checkpoint.UnitKey(d.name, full))
	if err != nil {
		return err
	}
	fb.Marker, fb.Phase, fb.UpdatedAt = fullPos{}.String(), checkpoint.PhaseFullSync, now
	if err := e.cfg.Store.Put(checkpoint.Entry{Key: w.key, Bound: nb}, checkpoint.Entry{Key: checkpoint.UnitKey(d.name, full), Bound: fb}); err != nil {
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
