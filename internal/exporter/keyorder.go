package exporter

import (
	"sort"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// keyOrder keeps the ops of each versioned key of a data shard in the
// source's order, from the moment they are read to the moment they are
// applied (ARCHITECTURE.md "Version order"). The gateway orders a key's
// versions by the epoch each write carries, and one written below the
// key's epoch on zone-b is not made current there, so an op of a key must
// never reach zone-b before an earlier op of the same key is applied.
//
// The rules, all here:
//
//   - A versioned key is *busy* while any item of it — an op sent, an op
//     held, an op the source could not give — is in a batch not acked yet,
//     or is kept for retry (a re-check is not a failure, and a parked op —
//     one zone-b cannot store as it stands, rgwlog.ParkedPrefix — stays
//     below the later ops by its epoch: neither makes its key busy,
//     asideOfOrder). A held or failed item becomes a retry only when its
//     batch is acked, so until then the batch itself keeps the key busy.
//   - A new op of a busy key is *held*: sent as a failed item marked
//     "held:", kept as a retry behind the key's earlier ops.
//   - In one batch, the ops of a key after one the source could not give
//     are held too.
//   - A key's retries go together, in epoch order, once every failed one
//     of them is due and no item of the key is in flight; held ones go
//     with the failure they wait for. A re-check, a parked op, or an
//     unversioned object's retry, goes when due (an unversioned op
//     reconciles with the source's current state: it has no order to keep).
//
// Unversioned keys are never held. keyOrder is owned by one data worker's
// goroutine.
type keyOrder struct {
	flying []flight // batches not acked, in the order sent
}

// flight is what one unacked batch carries, by bucket shard.
type flight struct {
	seq   uint64
	bs    string
	keys  map[string]bool // versioned keys with any item in the batch
	items map[string]bool // every item in the batch (itemID), ops and failed
}

// itemID names an object (version) of a bucket shard.
func itemID(bs, key, version string) string { return bs + "\x00" + key + "\x00" + version }

// sent records batch seq of bucket shard bs: its ops, its failed items
// (held ones and source failures) and the retries it resends, which all
// keep their keys busy until the ack.
func (o *keyOrder) sent(seq uint64, bs string, ops []*v1.ObjectOp, failed []*v1.RetryItem, resent []checkpoint.Retry) {
	f := flight{seq: seq, bs: bs, keys: map[string]bool{}, items: map[string]bool{}}
	add := func(key, version string) {
		f.items[itemID(bs, key, version)] = true
		if version != "" {
			f.keys[key] = true
		}
	}
	for _, op := range ops {
		add(op.GetKey(), op.GetVersionId())
	}
	for _, it := range failed {
		add(it.GetKey(), it.GetVersionId())
	}
	for _, r := range resent {
		add(r.Name, r.VersionID)
	}
	o.flying = append(o.flying, f)
}

// acked forgets batch seq (its failed items are retries from now on).
func (o *keyOrder) acked(seq uint64) {
	for i, f := range o.flying {
		if f.seq == seq {
			o.flying = append(o.flying[:i:i], o.flying[i+1:]...)
			return
		}
	}
}

// keyInFlight: an item of versioned key of bucket shard bs is in a batch
// not acked yet.
func (o *keyOrder) keyInFlight(bs, key string) bool {
	for _, f := range o.flying {
		if f.bs == bs && f.keys[key] {
			return true
		}
	}
	return false
}

// itemInFlight: the object (version) is in a batch not acked yet.
func (o *keyOrder) itemInFlight(bs, key, version string) bool {
	id := itemID(bs, key, version)
	for _, f := range o.flying {
		if f.items[id] {
			return true
		}
	}
	return false
}

// busy: a new op of versioned key must wait (see keyOrder).
func (o *keyOrder) busy(bs, key string, retries []checkpoint.Retry) bool {
	if o.keyInFlight(bs, key) {
		return true
	}
	for _, r := range retries {
		if r.Name == key && r.VersionID != "" && !asideOfOrder(r) {
			return true
		}
	}
	return false
}

// asideOfOrder: a retry that keeps no order with its key's other ops — a
// re-check (not a failure) or a parked op (lands below the later ones by
// its epoch). It makes its key busy for nothing and goes when due.
func asideOfOrder(r checkpoint.Retry) bool { return r.Error == recheckMark || rgwlog.Parked(r.Error) }

// hold marks the versioned refs of bucket shard bs whose key is busy as
// held.
func (o *keyOrder) hold(bs string, refs []objRef, retries []checkpoint.Retry) []objRef {
	for i, r := range refs {
		if r.version != "" && r.held == "" && o.busy(bs, r.key, retries) {
			refs[i].held = "an earlier op of this key is not through yet"
		}
	}
	return refs
}

// holdBehindFailures marks, in one batch, the versioned refs that come
// after a ref of the same key the source could not give (failed[i]).
func holdBehindFailures(refs []objRef, failed []bool) {
	bad := map[string]bool{}
	for i, r := range refs {
		if r.version == "" {
			continue
		}
		if r.held == "" && bad[r.key] {
			refs[i].held = "an earlier op of this key could not be read from the source"
			continue
		}
		if failed[i] || r.held != "" {
			bad[r.key] = true
		}
	}
}

// ready are the retries of bucket shard bs to send now, in the order to
// apply them (see keyOrder).
func (o *keyOrder) ready(bs string, retries []checkpoint.Retry, now time.Time) []checkpoint.Retry {
	wait := map[string]bool{} // versioned key -> its retries wait
	for _, r := range retries {
		if r.VersionID == "" {
			continue
		}
		// A held one's own time does not count: it goes with the failure
		// it waits for (or, that one through, at once).
		failure := !asideOfOrder(r) && !rgwlog.Held(r.Error)
		wait[r.Name] = wait[r.Name] || (failure && r.NextAttempt.After(now))
	}
	for name, w := range wait {
		if !w && o.keyInFlight(bs, name) {
			wait[name] = true
		}
	}
	var out []checkpoint.Retry
	for _, r := range retries {
		if r.VersionID == "" {
			if !r.NextAttempt.After(now) && !o.itemInFlight(bs, r.Name, "") {
				out = append(out, r)
			}
			continue
		}
		if wait[r.Name] {
			continue
		}
		// A failed one is due (or its group would wait), a held one goes
		// with it; a re-check or a parked one goes no earlier than its time.
		if !asideOfOrder(r) || !r.NextAttempt.After(now) {
			out = append(out, r)
		}
	}
	sortRetries(out)
	return out
}

// sortRetries puts retries in the order to apply them: by key, then by
// epoch within an era of the key. A removal of the null version can empty
// the key, and the source numbers the key's next ops from 2 again
// (FACTS.md section 30): its epoch orders the ops logged before it, not
// those after. A retry's era is the number of removals of the null version
// of its key logged before it (by the log's time), so a removal goes after
// the earlier ops of its key and before every later one.
func sortRetries(rs []checkpoint.Retry) {
	if len(rs) < 2 {
		return
	}
	var removals map[string][]time.Time // key -> when its null removals were logged
	for _, r := range rs {
		if r.Removal {
			if removals == nil {
				removals = map[string][]time.Time{}
			}
			removals[r.Name] = append(removals[r.Name], r.Timestamp)
		}
	}
	type ranked struct {
		r   checkpoint.Retry
		era int
	}
	rk := make([]ranked, len(rs))
	for i, r := range rs {
		rk[i].r = r
		for _, t := range removals[r.Name] {
			if t.Before(r.Timestamp) {
				rk[i].era++
			}
		}
	}
	sort.SliceStable(rk, func(i, j int) bool {
		a, b := rk[i], rk[j]
		switch {
		case a.r.Name != b.r.Name:
			return a.r.Name < b.r.Name
		case a.era != b.era:
			return a.era < b.era
		}
		return a.r.Epoch < b.r.Epoch
	})
	for i := range rk {
		rs[i] = rk[i].r
	}
}
