package exporter

// Retries and re-checks: failed items kept with their epochs (data) or
// keys (metadata), deletes and resharded instances checked once more after
// RecheckDelay, and the due ones sent again.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/backoff"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// addRetries adds failed object items to a bucket shard's retries. An
// item's epoch is the one its ref carried (epochs), else the op's own
// (RetryItem.versioned_epoch; a removal's always). An item joins
// the retry of its object (version), which is reconciled with the source's
// state when resent — except a removal of the null version, which is kept
// as that one op (nullRemoval).
func addRetries(rs []checkpoint.Retry, failed []*v1.RetryItem, e *Exporter, epochs map[string]uint64) []checkpoint.Retry {
	now := time.Now().UTC()
	for _, f := range failed {
		removal := nullRemoval(f.GetKind(), f.GetVersionId(), f.GetVersionedEpoch())
		epoch := epochs[f.GetKey()+"\x00"+f.GetVersionId()]
		if removal || epoch == 0 {
			epoch = f.GetVersionedEpoch()
		}
		it := checkpoint.Retry{Section: "object", Name: f.GetKey(), VersionID: f.GetVersionId(), Epoch: epoch,
			Removal: removal, Error: f.GetError(),
			Attempts: 1, Timestamp: f.GetTimestamp().AsTime(), NextAttempt: now.Add(e.backoff(1)), LastAttempt: now}
		id := retryID("", it)
		i := slices.IndexFunc(rs, func(r checkpoint.Retry) bool { return retryID("", r) == id })
		if i < 0 {
			rs = append(rs, it)
			continue
		}
		r := &rs[i]
		if !rgwlog.Held(f.GetError()) {
			r.Attempts++ // held again is not a failure of its own: no longer backoff
		}
		r.Error = f.GetError()
		r.NextAttempt, r.LastAttempt = now.Add(e.backoff(r.Attempts)), now
		if epoch > 0 {
			r.Epoch = epoch
		}
		if it.Timestamp.After(r.Timestamp) && slices.ContainsFunc(rs, func(o checkpoint.Retry) bool { return o.Removal && o.Name == r.Name }) {
			// The retry stands for the key's later op now: after a
			// removal of the null version kept beside it, not before
			// (sortRetries orders by the log's time around removals).
			r.Timestamp = it.Timestamp
		}
	}
	return rs
}

// nullRemoval: an op that removes the null version at its epoch. It is
// retried as that op: the id "null" is reused, and the source's null
// version of later (what a retry would otherwise be reconciled with) is a
// later op of the key — applied in the removal's place, zone-b's key would
// never be emptied as the source's was, and the source's next versions,
// numbered from 2 again, would not be current there (FACTS.md section 30).
func nullRemoval(kind v1.ObjectOpKind, version string, epoch uint64) bool {
	return kind == v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION && version == "null" && epoch > 0
}

// retryID names a retry of bucket shard bs: its object (version) — and for
// a removal of the null version, that one op (its epoch and log time): two
// removals of a key's null version are two retries, beside the one of its
// null version.
func retryID(bs string, r checkpoint.Retry) string {
	id := itemID(bs, r.Name, r.VersionID)
	if r.Removal {
		id += fmt.Sprintf("\x00removal\x00%d\x00%d", r.Epoch, r.Timestamp.UnixNano())
	}
	return id
}

// failedID is retryID of the retry a failed item becomes.
func failedID(bs string, f *v1.RetryItem) string {
	return retryID(bs, checkpoint.Retry{Name: f.GetKey(), VersionID: f.GetVersionId(), Epoch: f.GetVersionedEpoch(),
		Removal: nullRemoval(f.GetKind(), f.GetVersionId(), f.GetVersionedEpoch()), Timestamp: f.GetTimestamp().AsTime()})
}

// epochsOf maps key+"\x00"+version to the epoch each ref carries.
func epochsOf(refs []objRef) map[string]uint64 {
	m := map[string]uint64{}
	for _, r := range refs {
		if r.epoch > 0 {
			m[r.key+"\x00"+r.version] = r.epoch
		}
	}
	return m
}

// recheckMark is the Error of a scheduled re-check (not a failure).
const recheckMark = "recheck"

// addRechecks schedules, for every delete of ops that was applied, one
// re-check of the key after delay: the key is reconciled with the source
// again (and deleted again if still gone). A write from an earlier holder
// of the shard that reached the destination late — held in a network
// buffer, or sent by a process frozen past its lease — would otherwise
// leave a deleted object there for good.
func addRechecks(rs []checkpoint.Retry, ops []*v1.ObjectOp, failed []*v1.RetryItem, delay time.Duration) []checkpoint.Retry {
	if delay <= 0 {
		return rs
	}
	bad := map[string]bool{}
	for _, f := range failed {
		bad[f.GetKey()+"\x00"+f.GetVersionId()] = true
	}
	have := map[string]bool{}
	for _, r := range rs {
		have[r.Name+"\x00"+r.VersionID] = true
	}
	now := time.Now().UTC()
	for _, op := range ops {
		k := op.GetKind()
		if k != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE && k != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION {
			continue
		}
		id := op.GetKey() + "\x00" + op.GetVersionId()
		if bad[id] || have[id] {
			continue
		}
		have[id] = true
		rs = append(rs, checkpoint.Retry{Section: "object", Name: op.GetKey(), VersionID: op.GetVersionId(),
			Epoch: op.GetVersionedEpoch(), Error: recheckMark, Timestamp: op.GetTimestamp().AsTime(), NextAttempt: now.Add(delay)})
	}
	return rs
}

// dueRetry is a bucket shard with retries to send now (readyRetries).
func (dw *dataWorker) dueRetry() (string, bool) {
	now := time.Now()
	keys := make([]string, 0)
	for k := range dw.bounds {
		if len(dw.order.ready(k, dw.bounds[k].Retries, now)) > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	sort.Strings(keys)
	return keys[0], true
}

// sendRetries resends a bucket shard's ready retries: each object is
// reconciled with the source's current state.
func (dw *dataWorker) sendRetries(ctx context.Context, key string) error {
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return err
	}
	resent := dw.order.ready(key, dw.bounds[key].Retries, time.Now())
	refs := retryObjRefs(bs, resent)
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return err
	}
	ops, failed := dw.buildOps(ctx, refs, "retry:"+key, res)
	return dw.sendBatch(ctx, ops, failed, time.Time{}, res,
		batchCommit{kind: commitRetries, key: key, epochs: epochsOf(refs), resent: resent})
}

// retryObjRefs are the refs of object retries to send again: each is reconciled with
// the source's state when its op is built (kind unspecified), except a
// removal of the null version, sent as the removal it was (the source's
// null version of now is a later op of the key: nullRemoval).
func retryObjRefs(bs rgwlog.BucketShard, rs []checkpoint.Retry) []objRef {
	refs := make([]objRef, 0, len(rs))
	for _, r := range rs {
		ref := objRef{bs: bs, key: r.Name, version: r.VersionID, epoch: r.Epoch, ts: r.Timestamp, attempt: r.Attempts}
		if r.Removal {
			ref.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		}
		refs = append(refs, ref)
	}
	return refs
}

// needsRecheck: an entry whose key is fetched once more after RecheckDelay.
//
// A delete: a metadata delete on the destination can be undone by the
// gateway itself: with object writes to a bucket in flight, a deleted
// bucket entrypoint is still served (HEAD bucket 200, GET metadata 200)
// until deleted a second time (measured on 16.2.15, about one delete in ten
// under 8 writers; chaos seed 1: a removed bucket still on zone-b).
//
// A bucket instance the source is resharding away: the source removes it
// moments after its last logged write and logs no entry for the removal
// (FACTS.md section 17), so a copy fetched in that moment would stay on
// zone-b for good; fetched again, it is found gone and deleted.
func needsRecheck(en *v1.MetadataEntry) bool {
	if en.GetOp() == v1.MetadataOp_METADATA_OP_DELETE {
		return true
	}
	if en.GetSection() != rgwlog.SectionBucketInstance {
		return false
	}
	return resharded(en.GetBlob())
}

// addMetaRechecks schedules one re-check, RecheckDelay later, of every key
// of the acked batch that needsRecheck (not the failed ones, not re-checks
// themselves): it is fetched from the source again and applied as found.
func (w *worker) addMetaRechecks(rs []checkpoint.Retry, sb *sentBatch, failed []*v1.RetryItem,
	resent map[string]checkpoint.Retry, now time.Time) []checkpoint.Retry {
	if w.e.cfg.RecheckDelay <= 0 {
		return rs
	}
	skip := map[string]bool{}
	for _, f := range failed {
		skip[retryKey(f.GetSection(), f.GetName())] = true
	}
	for _, r := range rs {
		skip[retryKey(r.Section, r.Name)] = true
	}
	for _, d := range sb.rechecks {
		k := retryKey(d.section, d.name)
		if skip[k] {
			continue
		}
		if r, ok := resent[k]; ok && r.Error == recheckMark && !d.again {
			continue // the re-check of a delete: once is enough
		}
		skip[k] = true
		rs = append(rs, checkpoint.Retry{Section: d.section, Name: d.name, Error: recheckMark, Timestamp: d.ts,
			NextAttempt: now.Add(w.e.cfg.RecheckDelay)})
	}
	return rs
}

// failures counts the retries that are failures (not scheduled re-checks).
func failures(rs []checkpoint.Retry) int {
	n := 0
	for _, r := range rs {
		if r.Error != recheckMark {
			n++
		}
	}
	return n
}

// oldestUnapplied: the first entry of the oldest unacked batch, or the
// oldest retry; zero when everything read has been applied.
func oldestUnapplied(inflight []*sentBatch, retries []checkpoint.Retry) time.Time {
	var t time.Time
	for _, sb := range inflight {
		if !sb.first.IsZero() && (t.IsZero() || sb.first.Before(t)) {
			t = sb.first
		}
	}
	for _, r := range retries {
		if r.Error == recheckMark {
			continue // applied already; only checked once more
		}
		if !r.Timestamp.IsZero() && (t.IsZero() || r.Timestamp.Before(t)) {
			t = r.Timestamp
		}
	}
	return t
}

// publish copies the worker's view into the shard's status.
func (w *worker) publish() {
	var behind uint64
	more := false
	for _, sb := range w.inflight {
		behind += uint64(sb.entries)
		more = sb.more
	}
	oldest := oldestUnapplied(w.inflight, w.bound.Retries)
	w.stats.update(func(s *shardStats) {
		s.behind, s.behindMore, s.oldest = behind, more, oldest
		s.retries = failures(w.bound.Retries)
		s.inflight = len(w.inflight)
		s.bound = w.bound.Marker
	})
}

// backoff is the wait before a failed item's next attempt (attempts ≥ 1).
func (e *Exporter) backoff(attempts uint32) time.Duration {
	return backoff.Delay(e.cfg.RetryMin, e.cfg.RetryMax, int(attempts)-1)
}

func retryKey(section, name string) string { return section + "\x00" + name }

type keyRef struct {
	section, name string
	ts            time.Time
	marker        string
	// again: a re-check that finds it as it was is followed by another
	// (a resharded instance the source has not removed yet).
	again bool
	// recheck: this fetch is a scheduled re-check.
	recheck bool
}

func retryRefs(rs []checkpoint.Retry) []keyRef {
	out := make([]keyRef, len(rs))
	for i, r := range rs {
		out[i] = keyRef{section: r.Section, name: r.Name, ts: r.Timestamp, recheck: r.Error == recheckMark}
	}
	return out
}

func attemptsOf(rs []checkpoint.Retry, section, name string) uint32 {
	for _, r := range rs {
		if r.Section == section && r.Name == name {
			return r.Attempts
		}
	}
	return 0
}

func oldestRetry(rs []checkpoint.Retry) time.Time {
	var t time.Time
	for _, r := range rs {
		if t.IsZero() || r.Timestamp.Before(t) {
			t = r.Timestamp
		}
	}
	return t
}

// countResyncs counts the outcome of the resynced keys a batch resent:
// applied, or failed (then kept with their error).
func (w *worker) countResyncs(retried []checkpoint.Retry, failed []*v1.RetryItem) {
	bad := map[string]bool{}
	for _, f := range failed {
		bad[retryKey(f.GetSection(), f.GetName())] = true
	}
	for _, r := range retried {
		if r.Error != ResyncError {
			continue
		}
		if bad[retryKey(r.Section, r.Name)] {
			w.d.resyncFailed.Add(1)
		} else {
			w.d.resyncApplied.Add(1)
		}
	}
}
