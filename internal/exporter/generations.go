package exporter

// Index log generations (Reef and later; FACTS.md section 32). A reshard
// there keeps the bucket instance and starts a new generation of index
// shards, each with an empty log; the old generation's logs stay readable
// (generation=) and take no more writes. A key's ops of the old
// generation come before its ops of the new one, in another shard (maybe
// of another datalog shard, another worker). So:
//
//   - a generation's shard is read only once no shard of an older
//     generation of its instance has a bound (gateGen), which hands those
//     to their workers to be polled until they close;
//   - an older generation's shard whose log is read to the end, acked and
//     without retries, is closed: the next generation's shards get bounds
//     at the start of their logs, then its own bound is deleted (closeGen).
//     Nothing is listed again: every change since the reshard is in the
//     new generation's logs.
//
// Pacific has one generation, 0: none of this happens there.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// genCacheFor is how long a bucket instance's generations are taken as
// read (the gate asks at the worker's idle cadence).
const genCacheFor = 5 * time.Second

// genCache remembers bucket instances' index log generations a little
// while.
type genCache struct {
	mu sync.Mutex
	m  map[string]genInfo // instance key -> generations
}

type genInfo struct {
	at     time.Time
	latest uint64
	gens   []rgwadmin.BILogGeneration
}

// generations returns the index log generations of bs's instance (latest,
// and those kept, oldest first): one bilog info of the instance, cached
// unless fresh.
func (e *Exporter) generations(ctx context.Context, bs rgwlog.BucketShard, fresh bool) (uint64, []rgwadmin.BILogGeneration, error) {
	e.gens.mu.Lock()
	gi, ok := e.gens.m[bs.InstanceKey()]
	e.gens.mu.Unlock()
	if !fresh && ok && time.Since(gi.at) < genCacheFor && gi.latest >= bs.Gen { // a later one named: read again
		return gi.latest, gi.gens, nil
	}
	if e.cfg.Data == nil {
		return 0, nil, nil // no data sync: no index logs read
	}
	// The instance's info: a shard's fails for a shard number the current
	// generation does not have (500 on Tentacle).
	info, err := e.cfg.Data.BILogInfo(ctx, bs.InstanceKey())
	if err != nil {
		return 0, nil, fmt.Errorf("bilog info of %s: %w", bs.InstanceKey(), err)
	}
	e.rememberGens(bs, info)
	return info.LatestGen, info.Generations, nil
}

// shardInfo is the bilog info of bucket shard bs. For a shard of an older
// generation than the instance's latest, the answer is the latest
// generation's shard of that number (FACTS.md section 32), or an error
// when the latest has no such shard: then only the generations are
// returned (LatestGen > bs.Gen says the shard's log is closed).
func (e *Exporter) shardInfo(ctx context.Context, bs rgwlog.BucketShard) (rgwadmin.BILogInfo, error) {
	info, err := e.cfg.Data.BILogInfo(ctx, bs.Key)
	if err == nil {
		e.rememberGens(bs, info)
		return info, nil
	}
	if latest, gens, gerr := e.generations(ctx, bs, false); gerr == nil && latest > bs.Gen {
		return rgwadmin.BILogInfo{LatestGen: latest, Generations: gens}, nil
	}
	return info, fmt.Errorf("bilog info of %s: %w", bs.Key, err)
}

func (e *Exporter) rememberGens(bs rgwlog.BucketShard, info rgwadmin.BILogInfo) {
	e.learnGenerations(info)
	e.gens.mu.Lock()
	defer e.gens.mu.Unlock()
	if e.gens.m == nil {
		e.gens.m = map[string]genInfo{}
	}
	e.gens.m[bs.InstanceKey()] = genInfo{at: time.Now(), latest: info.LatestGen, gens: slices.Clone(info.Generations)}
}

// noGensFor is how long a source whose bilog info named no generations
// (Pacific) is taken to have none: lookups only a reshard in place needs
// are spared meanwhile, and asked again after (an upgraded gateway).
const noGensFor = 10 * time.Minute

// learnGenerations notes whether the source's bilog info names index log
// generations (mayHaveGenerations).
func (e *Exporter) learnGenerations(info rgwadmin.BILogInfo) {
	if info.HasGenerations {
		e.noGensAt.Store(0)
	} else {
		e.noGensAt.Store(time.Now().UnixNano())
	}
}

// mayHaveGenerations says whether the source may reshard in place (Reef
// and later): false while its last bilog info, less than noGensFor ago,
// named no generations.
func (e *Exporter) mayHaveGenerations() bool {
	at := e.noGensAt.Load()
	return at == 0 || time.Since(time.Unix(0, at)) > noGensFor
}

// genShards are the index shards of bs's instance in generation gen, of
// numShards (0: an unsharded index).
func genShards(bs rgwlog.BucketShard, gen uint64, numShards int) []rgwlog.BucketShard {
	if numShards <= 0 {
		return []rgwlog.BucketShard{bs.InGen(-1, gen)}
	}
	out := make([]rgwlog.BucketShard, numShards)
	for i := range numShards {
		out[i] = bs.InGen(i, gen)
	}
	return out
}

// olderGenBounds are the store keys of the bounds of bs's instance's shards
// in generations older than bs's.
func (e *Exporter) olderGenBounds(d *destination, bs rgwlog.BucketShard, gens []rgwadmin.BILogGeneration) ([]checkpoint.Key, error) {
	var open []checkpoint.Key
	for _, g := range gens {
		if g.Gen >= bs.Gen {
			continue
		}
		for _, old := range genShards(bs, g.Gen, g.NumShards) {
			k := e.bucketShardKey(d.name, old)
			if _, ok, err := e.cfg.Store.Get(k); err != nil {
				return nil, err
			} else if ok {
				open = append(open, k)
			}
		}
	}
	return open, nil
}

// gateGen says whether the bucket shard key, of a generation after the
// first, waits for older generations of its instance to close. While it
// waits, its generation's shards get bounds at the start of their logs
// (so no datalog entry of theirs is needed again) and the older shards
// still open are handed to their workers to be polled until they close.
func (dw *dataWorker) gateGen(ctx context.Context, key string) (bool, error) {
	if dw.genClear[key] {
		return false, nil
	}
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil || bs.Gen == 0 {
		return false, err
	}
	_, gens, err := dw.e.generations(ctx, bs, false)
	if err != nil {
		return false, err
	}
	open, err := dw.e.olderGenBounds(dw.d, bs, gens)
	if err != nil {
		return false, err
	}
	if len(open) == 0 {
		dw.genClear[key] = true
		return false, nil
	}
	if _, ok := dw.bounds[key]; !ok {
		n := -1
		for _, g := range gens {
			if g.Gen == bs.Gen {
				n = g.NumShards
			}
		}
		if n < 0 {
			return false, fmt.Errorf("%s: generation %d is not among the instance's %v", key, bs.Gen, gens)
		}
		if _, _, err := dw.e.queueUnlisted(dw.d, genShards(bs, bs.Gen, n), true); err != nil {
			return false, err
		}
		if err := dw.takeNews(); err != nil {
			return false, err
		}
	}
	dw.d.news.poll(open)
	dw.d.shardsAdded.Add(1)
	dw.genWait[key] = true
	return true, nil
}

// closeGen closes the bucket shard key of an older generation than the
// instance's latest once its log is read to the end (the caller found it
// empty after the read position), everything read is acked and it has no
// retry: the next generation's shards get bounds at the start of their
// logs (kept if they have some), then this bound is deleted. It says
// whether it closed; not yet, the shard stays polled.
func (dw *dataWorker) closeGen(ctx context.Context, key string, bs rgwlog.BucketShard, info rgwadmin.BILogInfo) (bool, error) {
	dw.e.rememberGens(bs, info)
	bd := dw.bounds[key]
	if bd == nil || bd.Phase != checkpoint.PhaseIncremental || bd.Marker != dw.readPos[key] || len(bd.Retries) > 0 {
		dw.genWait[key] = true
		return false, nil
	}
	next, err := nextGeneration(bs, info.LatestGen, info.Generations)
	if err != nil {
		return false, err
	}
	if _, added, err := dw.e.queueUnlisted(dw.d, genShards(bs, next.Gen, next.NumShards), true); err != nil {
		return false, err
	} else if added > 0 {
		dw.log.Info("index log generation: the bucket's shards of the next generation are followed from the start of their logs",
			"instance", bs.InstanceKey(), "generation", next.Gen, "shards", next.NumShards)
	}
	dw.log.Info("index log generation read to its end: the bucket shard is closed", "bucket_shard", key,
		"latest_generation", info.LatestGen)
	dw.forgetBucketShard(key, false)
	return true, nil
}

// oldGenUnbound handles a bucket shard key of an older generation than its
// instance's latest that has no bound (a datalog entry named it): closed
// already, or the bucket was never followed — then its latest generation's
// shards are queued for full sync. The key is not followed.
func (dw *dataWorker) oldGenUnbound(ctx context.Context, bs rgwlog.BucketShard, info rgwadmin.BILogInfo) error {
	dw.e.rememberGens(bs, info)
	latest := bs.InGen(bs.Shard, info.LatestGen)
	followed, err := dw.e.olderGenBounds(dw.d, latest, info.Generations)
	if err != nil || len(followed) > 0 {
		return err
	}
	for _, g := range info.Generations {
		if g.Gen != info.LatestGen {
			continue
		}
		_, added, err := dw.e.queueUnlisted(dw.d, genShards(bs, g.Gen, g.NumShards), false)
		if added > 0 {
			dw.log.Info("bucket met in an older index log generation: its latest generation's shards queued for full sync",
				"instance", bs.InstanceKey(), "generation", g.Gen)
		}
		return err
	}
	return fmt.Errorf("%s: the latest generation %d is not among the instance's %v", bs.Key, info.LatestGen, info.Generations)
}

// listingResharded handles a reshard in place of key's instance while key,
// a shard of an older generation, is still in its first listing. A listing
// names a shard by its number in the current layout only: it would go on
// through another generation's shard (other keys) or one that does not
// exist, and the keys of key's own never listed would be lost. Instead:
// the next generation's shards are listed in full (those the gate gave
// bounds at the start of their logs are listed again), once no older shard
// of the instance is open; and key reads its own log from where its
// listing began (FullStart: every change since, up to the reshard), then
// closes (closeGen). It says whether it did this. fresh: the generations
// are read now (not from the cache).
func (dw *dataWorker) listingResharded(ctx context.Context, key string, bs rgwlog.BucketShard, fresh bool) (bool, error) {
	if bs.Gen == 0 && !dw.e.mayHaveGenerations() {
		return false, nil // Pacific: one generation
	}
	latest, gens, err := dw.e.generations(ctx, bs, fresh)
	if err != nil || latest <= bs.Gen {
		return false, err
	}
	next, err := nextGeneration(bs, latest, gens)
	if err != nil {
		return false, err
	}
	existing, added, err := dw.e.queueUnlisted(dw.d, genShards(bs, next.Gen, next.NumShards), false)
	if err != nil {
		return false, err
	}
	if err := dw.e.relistShards(dw.d, existing); err != nil {
		return false, err
	}
	nb := *dw.bounds[key]
	nb.Phase, nb.Marker, nb.FullStart, nb.UpdatedAt = checkpoint.PhaseIncremental, nb.FullStart, "", time.Now().UTC()
	if nb.Marker == emptyBILog {
		nb.Marker = ""
	}
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: dw.boundKey(key), Bound: nb}); err != nil {
		return false, err
	}
	dw.bounds[key], dw.readPos[key] = &nb, nb.Marker
	dw.listGen[key]++ // pages in flight move no position now
	dw.genWait[key] = true
	dw.d.shardsAdded.Add(1)
	dw.log.Info("bucket resharded while listed: the shard reads its log from where its listing began, "+
		"the next generation's shards are listed in full", "bucket_shard", key, "generation", next.Gen,
		"shards", next.NumShards, "queued", added, "listed_again", len(existing))
	return true, dw.takeNews()
}

// nextGeneration is the generation after bs's among gens (latest, the
// instance's latest, at most).
func nextGeneration(bs rgwlog.BucketShard, latest uint64, gens []rgwadmin.BILogGeneration) (rgwadmin.BILogGeneration, error) {
	next := rgwadmin.BILogGeneration{Gen: latest, NumShards: -1}
	for _, g := range gens {
		if g.Gen > bs.Gen && g.Gen <= next.Gen {
			next = g
		}
	}
	if next.NumShards < 0 {
		return next, fmt.Errorf("%s: the latest generation %d is not among the instance's %v", bs.Key, latest, gens)
	}
	return next, nil
}
