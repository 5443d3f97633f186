package exporter

// Full sync of a bucket index shard: its listing, page by page, sent as
// copies, then the shard follows its bilog from the marker read before.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// nextFull is a bucket shard still in full sync with listing left. A
// later index log generation's shard is listed only once no older shard of
// its instance is open: until gateGen says so, it is polled (genWait).
func (dw *dataWorker) nextFull() (string, bool) {
	var keys []string
	for k, bd := range dw.bounds {
		if bd.Phase == checkpoint.PhaseBucketFull && dw.readPos[k] != fullDoneMark {
			if rgwlog.LaterGen(k) && !dw.genClear[k] {
				dw.genWait[k] = true
				continue
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	sort.Strings(keys)
	return keys[0], true
}

// fullDoneMark: the read position of a bucket shard whose listing is all
// sent (its last page not yet acked).
const fullDoneMark = "\x00listed"

// sendFullPage lists one page of a bucket shard in full sync and sends it.
// The first time, it records the bilog marker to go on from afterwards.
func (dw *dataWorker) sendFullPage(ctx context.Context, key string) error {
	bd := dw.bounds[key]
	if bd.FullStart == "" && bd.Marker == "" && dw.readPos[key] == "" {
		info, err := dw.e.cfg.Data.BILogInfo(ctx, key)
		if err != nil {
			if gone, gerr := dw.e.bucketGone(ctx, key); gerr == nil && gone {
				dw.forgetBucketShard(key, true)
				return nil
			}
			return fmt.Errorf("bilog info of %s: %w", key, err)
		}
		dw.e.learnGenerations(info)
		bd.FullStart = info.MaxMarker
		if bd.FullStart == "" {
			bd.FullStart = emptyBILog
		}
		k := dw.boundKey(key)
		if err := dw.e.cfg.Store.Put(checkpoint.Entry{Key: k, Bound: *bd}); err != nil {
			return err
		}
	}
	bs, err := rgwlog.ParseBucketShard(key)
	if err != nil {
		return err
	}
	if moved, err := dw.listingResharded(ctx, key, bs, false); err != nil || moved {
		return err
	}
	km, vm, _ := strings.Cut(dw.readPos[key], "\x00")
	page, err := dw.e.cfg.Objects.ListShard(ctx, key, km, vm, dw.e.cfg.BatchEntries)
	if err != nil || !page.Truncated {
		// Resharded in place since the last look (a shard number the new
		// layout does not have, or the last page: the whole listing must
		// have walked this generation's layout).
		if moved, rerr := dw.listingResharded(ctx, key, bs, true); rerr != nil && err == nil {
			return rerr
		} else if moved {
			return nil
		}
	}
	if errors.Is(err, rgwobj.ErrNotFound) {
		// Only the source's metadata says the bucket is gone (then there
		// is nothing to list; its deletions come by metadata sync). Any
		// other 404 is an error, retried and shown: taken as "gone", a
		// wrong address once lost every object of tenants' buckets
		// written before the full sync (issue #11, hole 1).
		gone, gerr := dw.e.bucketGone(ctx, key)
		switch {
		case gerr != nil:
			return fmt.Errorf("list %s after %q: %w (checking whether the bucket still exists: %v)", key, km, err, gerr)
		case !gone:
			return fmt.Errorf("list %s after %q: the source answered not found, but its metadata still has this bucket instance: %w", key, km, err)
		}
		page = rgwobj.ListPage{}
	} else if err != nil {
		return fmt.Errorf("list %s after %q: %w", key, km, err)
	}
	var refs []objRef
	for _, en := range page.Entries {
		// "null" in an unversioned bucket (no epoch) is just the object;
		// in a versioned or suspended one it is the null version.
		version := en.VersionID
		if version == "null" && en.VersionedEpoch == 0 {
			version = ""
		}
		r := objRef{bs: bs, key: en.Key, version: version, epoch: en.VersionedEpoch, ts: en.Mtime}
		if en.DeleteMarker {
			r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER
		}
		refs = append(refs, r)
	}
	refs = oldestFirst(refs)
	next := fullDoneMark
	if page.Truncated {
		next = page.NextKeyMarker + "\x00" + page.NextVersionMarker
	}
	refs = dw.order.hold(key, refs, dw.bounds[key].Retries)
	res, err := dw.reserve(ctx, refs)
	if err != nil {
		return err // the page is listed again once there is room
	}
	dw.readPos[key] = next
	ops, failed := dw.buildOps(ctx, refs, "full:"+key, res)
	return dw.sendBatch(ctx, ops, failed, time.Now().UTC(), res,
		batchCommit{kind: commitListing, key: key, marker: next, listGen: dw.listGen[key], epochs: epochsOf(refs), ops: ops})
}

// oldestFirst puts each key's entries of a listing page (newest first, as
// the gateway lists them) oldest first: the order the source wrote them,
// which zone-b needs — a delete marker laid below a delete marker it has
// already is declined for good (FACTS.md sections 22, 25).
func oldestFirst(refs []objRef) []objRef {
	for i := 0; i < len(refs); {
		j := i + 1
		for j < len(refs) && refs[j].key == refs[i].key {
			j++
		}
		slices.Reverse(refs[i:j])
		i = j
	}
	return refs
}
