package exporter

// Building object ops: each op read from the source (attributes, and the
// body of a small object), in parallel, within the stream's byte window.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/wire"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// buildOps stats every object (in parallel) and builds its op; an object
// the source cannot give is a failed item (kept for retry), not a stall.
func (dw *dataWorker) buildOps(ctx context.Context, refs []objRef, marker string, reserved int64) ([]*v1.ObjectOp, []*v1.RetryItem) {
	ops := make([]*v1.ObjectOp, len(refs))
	errs := make([]error, len(refs))
	// Inline bodies fill what the batch reserved of the stream's window
	// beyond its ops' own overhead (the rest stream as chunks), and source
	// reads are capped exporter-wide: memory does not grow with the number
	// of busy shards, and nothing is read that the window has no room for.
	var budget atomic.Int64
	budget.Store(reserved - opsOverhead(refs))
	var wg sync.WaitGroup
	for i, r := range refs {
		if r.held != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dw.e.fetchSem.Acquire(ctx, 1); err != nil {
				errs[i] = err
				return
			}
			defer dw.e.fetchSem.Release(1)
			ops[i], errs[i] = dw.e.buildOp(ctx, r, &budget)
		}()
	}
	wg.Wait()
	// Ops that land by their bucket's versioning wait while an instance
	// of the bucket is applied (fence.go); held behind, in key order.
	fenced, hold := dw.d.fence.admitOps(ops, time.Now())
	dw.release(dw.pendingFence)
	dw.pendingFence = hold
	srcFailed := make([]bool, len(refs))
	for i := range refs {
		if fenced[i] {
			ops[i], errs[i] = nil, errFenced{bucket: refs[i].bs.S3Bucket()}
		}
		srcFailed[i] = errs[i] != nil
	}
	holdBehindFailures(refs, srcFailed)
	var out []*v1.ObjectOp
	var failed []*v1.RetryItem
	var (
		settledRead, settledOK bool // of the batch: read once (settled.go)
		settledUpTo            time.Time
	)
	for i, op := range ops {
		r := refs[i]
		item := func(msg string) *v1.RetryItem {
			return &v1.RetryItem{Section: "object", Name: r.key, Bucket: r.bs.S3Bucket(), Key: r.key,
				VersionId: r.version, BucketShard: r.bs.Key, Error: msg, Timestamp: timestamppb.New(r.ts),
				Kind: r.kind, VersionedEpoch: r.epoch}
		}
		if r.held != "" {
			failed = append(failed, item(rgwlog.HeldPrefix+r.held))
			continue
		}
		var fe errFenced
		if errors.As(errs[i], &fe) {
			failed = append(failed, item(fencedOp(fe.bucket)))
			continue
		}
		if errs[i] != nil {
			if ctx.Err() == nil {
				dw.log.Warn("read object from source failed", "bucket", r.bs.Bucket, "object", r.key, "version", r.version, "err", errs[i])
			}
			failed = append(failed, item("source: "+errs[i].Error()))
			continue
		}
		if op == nil {
			continue
		}
		op.Index = uint32(len(out))
		if op.Marker == "" {
			op.Marker = marker
		}
		dw.log.Debug("object op", "bucket", op.GetBucket(), "object", op.GetKey(), "version", op.GetVersionId(),
			"op", op.GetKind().String(), "epoch", op.GetVersionedEpoch(), "size", op.GetAttrs().GetSize(), "marker", op.GetMarker())
		op.Timestamp = timestamppb.New(r.ts)
		if wire.DependsOnVersioning(op) {
			if !settledRead {
				settledUpTo, settledOK = dw.d.settled.upTo(dw.e.mdShards)
				settledOK = settledOK && dw.d.isFullDone()
				settledRead = true
			}
			op.MetadataSettled = settledOK && !r.ts.IsZero() && !r.ts.After(settledUpTo)
		}
		out = append(out, op)
	}
	return out, failed
}

// buildOp turns a reference into an op, reading the object's current state
// (and its body, when small).
func (e *Exporter) buildOp(ctx context.Context, r objRef, inlineBudget *atomic.Int64) (*v1.ObjectOp, error) {
	if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED && r.version != "" {
		var err error
		if r, err = e.resolveVersion(ctx, r); errors.Is(err, errSuperseded) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
	}
	op := &v1.ObjectOp{Bucket: r.bs.S3Bucket(), Key: r.key, VersionId: r.version, Marker: r.marker}
	if r.version != "" {
		// Only a named version has an order to keep; an unversioned
		// object written with an epoch becomes an undeletable OLH on the
		// destination (see opsFromBILog).
		op.VersionedEpoch = r.epoch
	}
	switch r.kind {
	case v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION:
		op.Kind = r.kind
		return e.withOwner(ctx, op, r)
	}
	// Small objects come whole with their attributes (one request instead
	// of a Stat and a GET: the source gateway's CPU is what a catch-up of
	// small objects waits for, BENCHMARKS.md run G).
	info, head, err := e.cfg.Objects.StatRead(ctx, op.Bucket, r.key, r.version, min(e.cfg.InlineMax, statReadAhead))
	if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_UNSPECIFIED && r.version == "" &&
		(errors.Is(err, rgwobj.ErrNotFound) || err == nil && info.VersionID != "" && info.VersionID != "null") {
		// An object without a version id is the null version. When the
		// key's current one is another version or none (a delete marker,
		// or nothing: a 404 is no proof either way), the source's index
		// says what the null version is now: copied as the current one
		// it became a new version of zone-b without its id (make chaos
		// seed 4: null versions only on zone-b), deleted plainly it
		// became a delete marker zone-b's source never had.
		r.version, r.plain = "null", true
		return e.buildOp(ctx, r, inlineBudget)
	}
	if errors.Is(err, rgwobj.ErrNotFound) {
		return e.notFoundOp(ctx, op, r, err)
	}
	if err != nil {
		return nil, err
	}
	if len(head) > 0 {
		e.cfg.Metrics.objectBytesRead.Add(float64(len(head)))
	}
	op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_PUT
	op.Owner = info.Owner
	if op.VersionId == "" && (info.VersionID == "" || info.VersionID == "null") {
		// The object without a version id is the null version: say so, or a
		// destination bucket whose versioning state has not caught up yet
		// (metadata and data travel separately) would give it a random id.
		// On an unversioned bucket the gateway stores it as it would anyway.
		op.VersionId = "null"
	}
	op.Attrs = wire.Attrs(info)
	if info.Size > e.cfg.InlineMax || inlineBudget.Add(-info.Size) < 0 {
		op.Chunked = true
		return op, nil
	}
	if info.Size == 0 {
		return op, nil
	}
	if int64(len(head)) == info.Size {
		op.Body = head
		return op, nil
	}
	rc, err := e.cfg.Objects.Get(ctx, op.Bucket, r.key, r.version, 0, info.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, info.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", op.Bucket, r.key, err)
	}
	if int64(len(body)) != info.Size {
		return nil, fmt.Errorf("read %s/%s: %d bytes, stat said %d (changed meanwhile?)", op.Bucket, r.key, len(body), info.Size)
	}
	op.Body = body
	e.cfg.Metrics.objectBytesRead.Add(float64(len(body)))
	return op, nil
}

// resolveVersion gives a retry or re-check of one version the kind the
// source's bucket index says it has now.
func (e *Exporter) resolveVersion(ctx context.Context, r objRef) (objRef, error) {
	// A retry or re-check of one version: what it must be on the
	// destination is what the source's index says now — a version
	// with its epoch (written without it, the destination would give
	// it a new one and could make it current over a later version), a
	// delete marker (Stat cannot see those), or nothing.
	le, found, err := e.findVersion(ctx, r.bs, r.key, r.version)
	if err != nil {
		return r, err
	}
	if found && nullReused(r, le) {
		return r, errSuperseded
	}
	switch {
	case !found:
		r.kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
	case le.DeleteMarker:
		r.kind, r.epoch = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER, le.VersionedEpoch
	default:
		r.kind, r.epoch = v1.ObjectOpKind_OBJECT_OP_KIND_PUT, le.VersionedEpoch
	}
	return r, nil
}

// findVersion reads the source's index entry of one version of key, from
// its bucket shard. A reshard removes the old instance's index (FACTS.md
// section 10): its listing answers 404 (NoSuchKey), which is no proof of
// anything by itself. When the source's entry point names another
// instance, the key is looked for in the bucket by its name (the current
// instance, where the reshard moved it); when it names no bucket, the
// bucket is removed, and its versions with it.
func (e *Exporter) findVersion(ctx context.Context, bs rgwlog.BucketShard, key, version string) (rgwobj.ListEntry, bool, error) {
	if bs.Gen > 0 || e.mayHaveGenerations() { // not on Pacific: one generation
		if latest, _, err := e.generations(ctx, bs, false); err == nil && latest != bs.Gen {
			// Resharded in place since (Reef and later): the shard of
			// that number lists other keys now, or answers 409 (FACTS.md
			// section 32). The bucket's listing finds the key wherever
			// it is.
			return e.cfg.Objects.FindVersionInBucket(ctx, bs.S3Bucket(), key, version)
		}
	}
	le, found, err := e.cfg.Objects.FindVersion(ctx, bs.Key, key, version)
	if err == nil || !errors.Is(err, rgwobj.ErrNotFound) {
		return le, found, err
	}
	id, cerr := e.currentInstance(ctx, bs.Bucket)
	switch {
	case errors.Is(cerr, rgwadmin.ErrNotFound):
		return rgwobj.ListEntry{}, false, nil
	case cerr != nil:
		return le, false, fmt.Errorf("%w (and the bucket's entry point: %v)", err, cerr)
	case id == bs.Instance || id == "":
		return le, false, err // the bucket's own index answered 404
	}
	return e.cfg.Objects.FindVersionInBucket(ctx, bs.S3Bucket(), key, version)
}

// nullReused says whether le, the source's index entry of the null
// version now, is a later op of r's key than r (the id "null" is reused):
// a null version or delete marker written after r, which comes in its own
// place in the key's order. Written for r, it would overtake the ops
// between (make chaos seed 2: a null marker of epoch 3 written before the
// named marker of epoch 2, which zone-b then declined). A plain write of
// the null version (no epoch: no OLH op logged it) never made a delete
// marker: one there now is a later op too.
func nullReused(r objRef, le rgwobj.ListEntry) bool {
	if le.VersionID != "null" {
		return false
	}
	return r.epoch > 0 && le.VersionedEpoch > r.epoch || r.plain && r.epoch == 0 && le.DeleteMarker
}

// errSuperseded: an op a later op of its key has replaced at the source
// (the null id reused): nothing to write in its place.
var errSuperseded = errors.New("superseded by a later op of the key")

// withOwner completes a delete op with its bucket's owner (the gateway
// writes a delete on the owner's behalf).
func (e *Exporter) withOwner(ctx context.Context, op *v1.ObjectOp, r objRef) (*v1.ObjectOp, error) {
	owner, err := e.bucketOwner(ctx, r.bs)
	if err != nil {
		return nil, err
	}
	op.Owner = owner
	return op, nil
}

// notFoundOp is the op of an object the source answered 404 for (err): a
// delete, or nothing when a written version is gone already — and an error
// when the source's bucket index does not agree that it is gone.
func (e *Exporter) notFoundOp(ctx context.Context, op *v1.ObjectOp, r objRef, err error) (*v1.ObjectOp, error) {
	if r.kind == v1.ObjectOpKind_OBJECT_OP_KIND_PUT {
		// The version is gone already (a later entry removes it) if
		// the source's bucket index agrees; a 404 alone is no proof
		// (a wrong address answers it too).
		v := r.version
		if v == "" {
			v = "null"
		}
		le, found, ferr := e.findVersion(ctx, r.bs, r.key, v)
		switch {
		case ferr != nil:
			return nil, fmt.Errorf("read %s/%s: %w (checking the source's bucket index: %v)", op.Bucket, r.key, err, ferr)
		case found && nullReused(r, le):
			return nil, nil // a later op reused the id "null": it comes in its place
		case found:
			return nil, fmt.Errorf("read %s/%s: the source answered not found, but its bucket index lists the object: %w", op.Bucket, r.key, err)
		}
		return nil, nil
	}
	op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE
	if r.version != "" {
		op.Kind = v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION
	}
	return e.withOwner(ctx, op, r)
}

// statReadAhead is how much of a body buildOp reads with the attributes:
// objects up to this size cost one request; a larger one reads this much
// more than it needs (counted in object_bytes_read).
const statReadAhead = 64 << 10

// opOverhead is what an op costs in its batch beside its inline body.
func opOverhead(key string) int64 { return int64(len(key)) + 128 }

// opsOverhead is the most the refs' ops cost beside their inline bodies.
func opsOverhead(refs []objRef) int64 {
	var n int64
	for _, r := range refs {
		if r.held == "" {
			n += opOverhead(r.key)
		}
	}
	return n
}
