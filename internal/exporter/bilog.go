package exporter

// Incremental sync of a bucket index shard: its bilog read after the
// bound, and the ops its entries stand for (opsFromBILog).

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// emptyBILog stands for "the bilog was empty" in FullStart (which is ""
// before it is read).
const emptyBILog = "\x00empty"

// sendBILog reads one page of a bucket shard's bilog after its read
// position and sends it; more says another page may follow.
func (dw *dataWorker) sendBILog(ctx context.Context, key string) (sent, more bool, err error) {
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return false, false, err
	}
	pos := dw.readPos[key]
	entries, err := dw.e.cfg.Data.ListBILog(ctx, key, pos, dw.e.cfg.BatchEntries)
	if err != nil {
		return false, false, fmt.Errorf("list bilog %s after %q: %w", key, pos, err)
	}
	entries, trimmed, err := dw.checkBILogTrim(ctx, key, pos, entries)
	if err != nil || trimmed {
		return false, trimmed, err
	}
	if len(entries) == 0 {
		return false, false, nil
	}
	dw.hadNews(key)
	refs := dw.order.hold(key, opsFromBILog(bs, entries), dw.bounds[key].Retries)
	last := opIDMarker(entries[len(entries)-1].OpID)
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return false, false, err // the page is read again once there is room
	}
	dw.readPos[key] = last
	ops, failed := dw.buildOps(ctx, refs, key, res)
	err = dw.sendBatch(ctx, ops, failed, entries[0].Timestamp, res,
		batchCommit{kind: commitBILog, key: key, marker: last, epochs: epochsOf(refs), ops: ops})
	return err == nil, len(entries) >= dw.e.cfg.BatchEntries, err
}

// objRef is an object (version) a log named, with what it asks for.
type objRef struct {
	bs      rgwlog.BucketShard
	key     string
	version string
	epoch   uint64
	kind    v1.ObjectOpKind // unspecified: reconcile with the source's current state
	ts      time.Time
	marker  string
	attempt uint32
	// held: not sent now, kept for retry behind an earlier op of its key
	// (the reason).
	held string
	// plain: an object named without a version (a plain write), looked
	// for as the null version (buildOp).
	plain bool
}

// opsFromBILog turns bilog entries into object work. An unversioned key is
// reconciled with what the source has now (its last entry in the page
// stands for all). In a versioned bucket each version is its own key:
// link_olh writes the version with its epoch, link_olh_del lays a delete
// marker with the source's id, unlink_instance / del of an instance
// removes that version. "write" entries of versioned objects are skipped:
// their epoch is the index's, not the object's; the link_olh that follows
// carries the right one.
func opsFromBILog(bs rgwlog.BucketShard, entries []rgwadmin.BILogEntry) []objRef {
	type k struct{ key, version string }
	last := map[k]int{}
	var refs []objRef
	var dead []bool
	for _, en := range entries {
		if en.State != "" && en.State != "complete" {
			continue
		}
		r := objRef{bs: bs, key: en.Object, version: en.Instance, ts: en.Timestamp, marker: en.OpID}
		olhOp := en.Op == "link_olh" || en.Op == "link_olh_del" || en.Op == "unlink_instance"
		switch {
		case r.version == "null" && !en.Versioned && !olhOp:
			r.version = "" // the object of an unversioned bucket
		case r.version == "" && olhOp:
			// An OLH op without an instance is the null version (a write
			// while versioning was suspended: "write" instance "" then
			// "link_olh" instance "" with the epoch, measured on 16.2.15).
			r.version = "null"
		}
		versioned := en.Versioned || r.version != ""
		if olhOp {
			// Only an OLH op's ver.epoch is the version's OLH epoch. A
			// "write" or "del" entry's is the head object's RADOS version
			// (measured: unlink_instance epoch 4 then del epoch 536). Sent
			// as rgwx-versioned-epoch it does harm: an unversioned object
			// becomes an OLH with a null instance that no DELETE removes
			// (TestNullVersionWithEpochIsNotDeletable: the "resurrected
			// deletes"), a version delete pushes the destination's OLH
			// epoch past the source's.
			r.epoch = en.Ver.Epoch
		}
		switch en.Op {
		case "write", "del":
			if versioned && en.Op == "write" {
				if en.Versioned || r.version == "" {
					// A new version: its link_olh follows with the epoch.
					continue
				}
				// "versioned": false on a named instance: a change of that
				// existing version's attributes (PUT/DELETE ?tagging, PUT
				// ?acl, with or without versionId; measured, FACTS.md §7).
				// Re-checked as the source has the version now (its epoch
				// from the index): the applier then sets its tags and ACL
				// in place.
				break
			}
			if versioned {
				if r.version == "" {
					// The null instance's del (measured, FACTS.md
					// section 13): it follows the unlink_instance "" or
					// link_olh_del "" that carries the removal with its
					// epoch. Taken as its own op it named no version
					// (refused on zone-b, then retried as a copy of the
					// key's current version without its id).
					continue
				}
				if _, ok := last[k{r.key, r.version}]; !ok {
					// A version delete logs unlink_instance (with the
					// OLH epoch) and then del (measured): the unlink, in
					// this page or an earlier one, carries the delete. A
					// del alone would have no epoch, and an epoch-less
					// delete of a version zone-b still has (its unlink
					// kept for retry) pushes zone-b's OLH epoch past the
					// source's (a delete marker then not current: chaos
					// seed 2).
					continue
				}
				r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
			}
		case "link_olh":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_PUT
		case "link_olh_del":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER
		case "unlink_instance":
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
		default:
			continue // cancel, syncstop, resync, ...: nothing to copy
		}
		kk := k{r.key, r.version}
		if kk.version == "" {
			// The object without a version id is the null version: a
			// later OLH op of the null instance (its removal, a delete
			// marker over it) stands for an earlier plain write.
			kk.version = "null"
		}
		if i, ok := last[kk]; ok && keepsRemoval(refs[i], r) {
			// Two ops in their order: the removal, then the write.
			delete(last, kk)
		} else if ok {
			if r.epoch == 0 && r.kind == refs[i].kind {
				// The "del" after an unlink_instance: keep the unlink's
				// epoch.
				r.epoch = refs[i].epoch
			}
			// The later entry wins, in its own place: the ops of one key
			// go in the log's (the epochs') order. (V1, V2, removal of V1
			// at the place of V1 would write V2 after an epoch above its
			// own: not current on the destination.)
			dead[i] = true
		}
		last[kk] = len(refs)
		refs = append(refs, r)
		dead = append(dead, false)
	}
	out := refs[:0]
	for i, r := range refs {
		if !dead[i] {
			out = append(out, r)
		}
	}
	return out
}

// keepsRemoval says whether prev, an earlier op of the same key and id as
// r, stays beside it instead of being folded into it: a removal of the
// null version (with its epoch) before a later op of the null version — a
// plain write (no epoch), a null delete marker, a null version. The
// removal may have emptied the key, which the source then numbers from the
// start again; folded away, zone-b's key keeps its old epoch: a write gets
// zone-b's next epoch, above the source's next version (FACTS.md section
// 30), a marker replaces zone-b's null version in place and the source's
// next versions, numbered from 2 again, are not current there (make chaos
// seed 3, v/k00002). Kept, the applier removes zone-b's null version only
// when it is older than the removal (nullRemovalDone).
func keepsRemoval(prev, r objRef) bool {
	return prev.kind == v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION && prev.version == "null" && prev.epoch > 0 &&
		r.kind != v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
}

// checkBILogTrim tells whether a bilog read after pos found entries
// trimmed unread (then the shard is back in full sync: bilogTrimmed).
// index_ver numbers a shard's entries (the number in the op id), and
// max_marker outlives a trim (FACTS.md section 8): an empty listing while
// max_marker is past the position (listed again first, to rule out a write
// in between), or a first entry past the read position's next one while
// the bound's own entry is gone, means entries were trimmed (issue #11,
// hole 7). A gap alone is not a trim: the gateway uses numbers for ops it
// does not log (FACTS.md section 31). An empty
// position is the start of a log that had no entry when the shard was
// listed: any entry since is after it, but its first number is not known
// (a reshard's new shards start at 2: FACTS.md section 10). It returns the
// entries to go on with (listed again when the first listing was empty).
func (dw *dataWorker) checkBILogTrim(ctx context.Context, key, pos string, entries []rgwadmin.BILogEntry) ([]rgwadmin.BILogEntry, bool, error) {
	n, numbered := bilogIndexVer(pos)
	fromStart := pos == ""
	if len(entries) == 0 {
		bs, err := rgwlog.ParseBucketShard(key)
		if err != nil {
			return nil, false, err
		}
		info, err := dw.e.shardInfo(ctx, bs)
		if err != nil {
			return nil, false, err
		}
		if info.LatestGen > bs.Gen {
			// A reshard closed this generation's log; max_marker is the
			// latest generation's (FACTS.md section 32).
			_, err := dw.closeGen(ctx, key, bs, info)
			return nil, false, err
		}
		if !numbered && !fromStart {
			return nil, false, nil
		}
		m, ok := bilogIndexVer(info.MaxMarker)
		if !ok || (!fromStart && m <= n) {
			return nil, false, nil
		}
		// Or written since the listing: list again to tell.
		entries, err = dw.e.cfg.Data.ListBILog(ctx, key, pos, dw.e.cfg.BatchEntries)
		if err != nil {
			return nil, false, fmt.Errorf("list bilog %s after %q: %w", key, pos, err)
		}
		if len(entries) == 0 {
			return nil, true, dw.bilogTrimmed(key, n, rgwadmin.BILogEntry{OpID: info.MaxMarker, IndexVer: m})
		}
	}
	if numbered && len(entries) > 0 && entries[0].IndexVer > n+1 {
		// A gap: trimmed, or numbers the gateway used for ops it did not
		// log (FACTS.md section 31). A trim removes a log's entries from
		// its start: while the bound's own entry is there, none after it
		// was trimmed.
		kept, err := dw.boundEntryKept(ctx, key, pos, n)
		if err != nil {
			return nil, false, err
		}
		if !kept {
			return nil, true, dw.bilogTrimmed(key, n, entries[0])
		}
	}
	return entries, false, nil
}

// boundEntryKept says whether the bilog entry at pos (index_ver n) is still
// in the log: listed from its index_ver alone, which sorts before every
// entry numbered n (FACTS.md section 21).
func (dw *dataWorker) boundEntryKept(ctx context.Context, key, pos string, n uint64) (bool, error) {
	entries, err := dw.e.cfg.Data.ListBILog(ctx, key, bilogTrimMarker(n), dw.e.cfg.BatchEntries)
	if err != nil {
		return false, fmt.Errorf("list bilog %s from the bound's entry %q (is it trimmed?): %w", key, pos, err)
	}
	for _, en := range entries {
		if en.IndexVer > n {
			break
		}
		if opIDMarker(en.OpID) == opIDMarker(pos) {
			return true, nil
		}
	}
	return false, nil
}

// opIDMarker is a bilog op id without its "N#" shard prefix (the form of
// listing markers and of the bounds).
func opIDMarker(id string) string {
	if _, m, ok := strings.Cut(id, "#"); ok {
		return m
	}
	return id
}

// bilogIndexVer is the index_ver in a bilog marker ("[N#]00000000008.14057.6"
// → 8); ok is false for "", the empty-log mark and index_ver 0.
func bilogIndexVer(marker string) (uint64, bool) {
	n, err := rgwlog.BILogIndexVer(marker)
	return n, err == nil && n > 0
}

// bilogTrimmed puts a bucket shard whose bilog was trimmed past its read
// position back into full sync: its objects are listed and copied again
// (the retries it holds stay), then its bilog is followed from the marker
// recorded when the listing starts. Deletes logged only in the trimmed
// range are not replayed: an object removed there stays on zone-b until
// it is touched again (README, known problems).
func (dw *dataWorker) bilogTrimmed(key string, at uint64, first rgwadmin.BILogEntry) error {
	dw.log.Error("bucket index log trimmed past the bound: listing the bucket shard again (full sync)",
		"bucket_shard", key, "bound_index_ver", at, "first_entry_index_ver", first.IndexVer, "first_entry", first.OpID)
	dw.e.cfg.Metrics.resyncs.WithLabelValues(dw.d.name).Inc()
	return dw.listAgain(key, "", false)
}

// listAgain puts a bucket shard back into full sync (retries kept).
// keepLog: its bilog is then read on from where it was (nothing logged
// since is skipped: a delete logged after the old position is applied
// after the listing, which only copies what exists); otherwise from the
// head when the listing starts (the log was trimmed: nothing older is
// left to read).
func (dw *dataWorker) listAgain(key, why string, keepLog bool) error {
	if why != "" {
		dw.log.Info("listing the bucket shard again (full sync)", "bucket_shard", key, "why", why)
	}
	nb := *dw.bounds[key]
	fullStart := ""
	if keepLog {
		fullStart = nb.FullStart // still in its first listing: where that one goes on from
		if nb.Phase == checkpoint.PhaseIncremental {
			fullStart = nb.Marker
			if fullStart == "" {
				fullStart = emptyBILog
			}
		}
	}
	nb.Phase, nb.FullStart, nb.Marker, nb.TrimSafe, nb.UpdatedAt = checkpoint.PhaseBucketFull, fullStart, "", "", time.Now().UTC()
	nb.Resyncs++
	if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: dw.boundKey(key), Bound: nb}); err != nil {
		return err
	}
	dw.bounds[key] = &nb
	dw.readPos[key] = ""
	dw.listGen[key]++
	return nil
}
