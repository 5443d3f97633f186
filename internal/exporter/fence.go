package exporter

// The one order across the metadata log and the data log that a bucket's
// versioning needs. A write whose landing on zone-b depends on its
// bucket's versioning there (wire.DependsOnVersioning: a versionless or
// null write) is made by an applier that reads zone-b's state and then
// writes; a bucket instance change applied in between by the metadata
// sync of another applier stores the null version as another kind, for
// good ("null" listed twice: make chaos seed 1 extended, where zone-b's
// bucket was put back to Enabled 250 ms before a null write that had read
// Suspended; FACTS.md sections 15, 24). Likewise the instance a
// suspension write puts back would undo a change applied meanwhile. The
// exporter sends both logs of a destination, so it keeps them apart: per
// bucket, a versioned bucket's instance metadata and the
// versioning-dependent object ops are never in flight at once. What
// waits is kept as a retry item (nothing blocks a shard's engine, which
// must go on taking the acks that end the other side's flight), and an
// instance that waited makes the bucket's new object ops wait for it, so
// that a busy bucket cannot starve its metadata.

import (
	"fmt"
	"sync"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// FencedPrefix starts the error of a retry item that waited for the other
// log's writes of its bucket (versioningFence).
const FencedPrefix = "waits: "

// fenceWanted is how long an instance change that had to wait keeps the
// bucket's new object ops back: past the metadata retry's next attempt.
const fenceWanted = time.Minute

// versioningFence keeps one destination's versioning-dependent object ops
// and its versioned bucket instances' metadata of one bucket out of flight
// at the same time. Buckets are named as ObjectOp.bucket names them.
type versioningFence struct {
	mu     sync.Mutex
	data   map[string]int       // bucket -> dependent ops in flight
	meta   map[string]int       // bucket -> instance entries in flight
	wanted map[string]time.Time // bucket -> an instance entry waits, until
}

// fenceHold is what one batch holds of the fence: released at its ack, or
// when its shard's worker ends.
type fenceHold struct {
	data, meta map[string]int
}

func (f *versioningFence) init() {
	if f.data == nil {
		f.data, f.meta, f.wanted = map[string]int{}, map[string]int{}, map[string]time.Time{}
	}
}

// admitOps takes the fence for the ops that depend on their bucket's
// versioning: fenced[i] says op i waits (a versioned instance of its bucket
// is in flight, or waits to be); the others are held until release.
func (f *versioningFence) admitOps(ops []*v1.ObjectOp, now time.Time) (fenced []bool, h *fenceHold) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	fenced = make([]bool, len(ops))
	h = &fenceHold{}
	for i, op := range ops {
		if op == nil || !wire.DependsOnVersioning(op) {
			continue
		}
		b := op.GetBucket()
		if f.meta[b] > 0 || now.Before(f.wanted[b]) {
			fenced[i] = true
			continue
		}
		if h.data == nil {
			h.data = map[string]int{}
		}
		h.data[b]++
		f.data[b]++
	}
	return fenced, h
}

// fencedOp is the retry error of an op that waited.
func fencedOp(bucket string) string {
	return FencedPrefix + fmt.Sprintf("bucket %s: its instance's metadata is being applied, and this write lands on zone-b "+
		"by the bucket's versioning (retried after it)", bucket)
}

// admitEntries takes the fence for the entries that put a versioned bucket
// instance: why[i] is non-empty when entry i waits (object writes of its
// bucket that depend on the versioning are in flight; the bucket's new
// ones then wait for it); the others are held until release.
func (f *versioningFence) admitEntries(entries []*v1.MetadataEntry, now time.Time) (why []string, h *fenceHold) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	why = make([]string, len(entries))
	h = &fenceHold{}
	for i, en := range entries {
		b, ok := fencedInstance(en)
		if !ok {
			continue
		}
		if n := f.data[b]; n > 0 {
			why[i] = FencedPrefix + fmt.Sprintf("%d object write(s) of bucket %s that land by its versioning are in flight "+
				"(retried after them)", n, b)
			f.wanted[b] = now.Add(fenceWanted)
			continue
		}
		delete(f.wanted, b)
		if h.meta == nil {
			h.meta = map[string]int{}
		}
		h.meta[b]++
		f.meta[b]++
	}
	return why, h
}

// fencedInstance: en puts a bucket instance whose bucket is versioned (or
// becomes so); the bucket as object ops name it.
func fencedInstance(en *v1.MetadataEntry) (string, bool) {
	if en.GetSection() != rgwlog.SectionBucketInstance || en.GetOp() != v1.MetadataOp_METADATA_OP_PUT {
		return "", false
	}
	status, err := rgwlog.Versioning(en.GetBlob())
	if err == nil && status == "" {
		return "", false // never versioned: no write lands otherwise for it
	}
	return rgwlog.InstanceS3Bucket(en.GetName()), true
}

// release gives back what h holds (nil: nothing).
func (f *versioningFence) release(h *fenceHold) {
	if h == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for b, n := range h.data {
		if f.data[b] -= n; f.data[b] <= 0 {
			delete(f.data, b)
		}
	}
	for b, n := range h.meta {
		if f.meta[b] -= n; f.meta[b] <= 0 {
			delete(f.meta, b)
		}
	}
	h.data, h.meta = nil, nil
}

// errFenced: an op that waits behind the fence (admitOps).
type errFenced struct{ bucket string }

func (e errFenced) Error() string { return fencedOp(e.bucket) }

// release gives back a batch's hold of the destination's fence.
func (w *worker) release(h *fenceHold) { w.d.fence.release(h) }

// fenceEntries takes the fence for rb's entries; the ones that wait leave
// the batch as retry items.
func (w *worker) fenceEntries(rb *readBatch, now time.Time) *fenceHold {
	why, hold := w.d.fence.admitEntries(rb.entries, now)
	kept := rb.entries[:0:0]
	for i, en := range rb.entries {
		if why[i] == "" {
			kept = append(kept, en)
			continue
		}
		w.log.Info("bucket instance waits for the object writes of its bucket in flight", "key", en.GetName(), "why", why[i])
		rb.srcFailed = append(rb.srcFailed, &v1.RetryItem{Section: en.GetSection(), Name: en.GetName(), Error: why[i],
			Timestamp: en.GetTimestamp()})
	}
	rb.entries = kept
	return hold
}
