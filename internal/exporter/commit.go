package exporter

// What the ack of a data batch moves: each batch carries a batchCommit (a
// value: which bound, to where), and commitOf turns it and the ack's
// failed items into the bounds to store. Ack → bound is this one function.

import (
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
)

// commitKind says which bound an ack moves.
type commitKind uint8

const (
	// commitBILog: a page of a bucket shard's bilog, read through marker.
	commitBILog commitKind = iota + 1
	// commitListing: a page of a bucket shard's full-sync listing; marker
	// is the listing's next position (fullDoneMark: the last page).
	commitListing
	// commitRetries: a bucket shard's retries sent again (resent).
	commitRetries
	// commitDatalog: every bucket shard a datalog page named is read and
	// sent: the datalog bound moves to marker.
	commitDatalog
	// commitResyncDone: the re-check of every bucket shard of the datalog
	// shard is sent: the datalog bound turns incremental.
	commitResyncDone
)

// batchCommit is what a data batch's ack moves.
type batchCommit struct {
	kind    commitKind
	key     string             // the bucket shard ("" for the datalog bound)
	marker  string             // see commitKind
	listGen int                // commitListing: the listing the page belongs to (listAgain bumps it)
	epochs  map[string]uint64  // the refs' epochs (epochsOf), for the retries of failed items
	ops     []*v1.ObjectOp     // the ops sent: their deletes are re-checked (addRechecks)
	resent  []checkpoint.Retry // commitRetries: the retries sent again
}

// commitOf applies an acked batch's commit to the worker's bounds (failed:
// the items the applier failed, and those the source could not give) and
// returns the entries to store; none when the bound is gone meanwhile (a
// removed bucket's shard) or the commit is stale (a newer listing or
// re-check began since).
func (dw *dataWorker) commitOf(c batchCommit, failed []*v1.RetryItem) []checkpoint.Entry {
	now := time.Now().UTC()
	switch c.kind {
	case commitDatalog:
		nb := dw.bound
		nb.TrimSafe, nb.Marker, nb.UpdatedAt, nb.Applier = nb.Marker, c.marker, now, dw.sub.st.applier
		dw.bound = nb
		return []checkpoint.Entry{{Key: dw.key, Bound: nb}}
	case commitResyncDone:
		nb := dw.bound
		if nb.Phase != checkpoint.PhaseResync || dw.resyncing {
			return nil // a newer re-check began meanwhile
		}
		nb.Phase, nb.UpdatedAt, nb.Applier = checkpoint.PhaseIncremental, now, dw.sub.st.applier
		dw.bound = nb
		return []checkpoint.Entry{{Key: dw.key, Bound: nb}}
	}
	cur, ok := dw.bounds[c.key]
	if !ok {
		return nil // dropped meanwhile (its bucket was removed)
	}
	nb := *cur
	nb.UpdatedAt = now
	switch c.kind {
	case commitBILog:
		if nb.Phase == checkpoint.PhaseIncremental {
			// (Back in full sync since, its log found trimmed: the
			// listing decides where the bilog is read from.)
			nb.TrimSafe, nb.Marker = nb.Marker, c.marker
		}
		nb.Retries = addRechecks(addRetries(nb.Retries, failed, dw.e, c.epochs), c.ops, failed, dw.e.cfg.RecheckDelay)
	case commitListing:
		switch {
		case dw.listGen[c.key] != c.listGen:
			// A listing started again since (listAgain): this page's
			// position is not the new listing's; only its retries count.
		case c.marker == fullDoneMark:
			nb.Phase, nb.Marker = checkpoint.PhaseIncremental, nb.FullStart
			if nb.Marker == emptyBILog {
				nb.Marker = ""
			}
			dw.readPos[c.key] = nb.Marker
		default:
			nb.Marker = c.marker
		}
		nb.Retries = addRechecks(addRetries(nb.Retries, failed, dw.e, c.epochs), c.ops, failed, dw.e.cfg.RecheckDelay)
	case commitRetries:
		sent := map[string]bool{}
		for _, r := range c.resent {
			sent[retryID(c.key, r)] = true
		}
		failedNow := map[string]bool{}
		for _, it := range failed {
			failedNow[failedID(c.key, it)] = true
		}
		var kept []checkpoint.Retry
		for _, r := range nb.Retries {
			id := retryID(c.key, r)
			if sent[id] && r.Error == ResyncError {
				if failedNow[id] {
					dw.d.resyncFailed.Add(1)
				} else {
					dw.d.resyncApplied.Add(1)
				}
			}
			if sent[id] && !failedNow[id] {
				continue // applied
			}
			kept = append(kept, r)
		}
		nb.Retries = addRetries(kept, failed, dw.e, c.epochs)
	}
	dw.bounds[c.key] = &nb
	return []checkpoint.Entry{{Key: dw.boundKey(c.key), Bound: nb}}
}
