package applier

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// ObjectDest is what data sync needs of the destination's S3 API.
type ObjectDest interface {
	Put(ctx context.Context, info rgwobj.ObjectInfo, body io.Reader, versionedEpoch uint64) (string, error)
	PutMultipart(ctx context.Context, info rgwobj.ObjectInfo, part func(n int, offset, size int64) (io.ReadCloser, error), versionedEpoch uint64) (string, error)
	Delete(ctx context.Context, bucket, key, owner, versionID string) error
	DeleteVersion(ctx context.Context, bucket, key, owner, versionID string, epoch uint64) error
	PutDeleteMarker(ctx context.Context, bucket, key, owner, markerVersionID string, epoch uint64) error
	// Stat reads what the destination has, every attribute (tags and
	// whether the ACL is the default one included), in one request.
	Stat(ctx context.Context, bucket, key, versionID string) (rgwobj.ObjectInfo, error)
	// FindVersionInBucket reads one version's listing entry (delete
	// markers included, which Stat cannot see).
	FindVersionInBucket(ctx context.Context, bucket, key, versionID string) (rgwobj.ListEntry, bool, error)
	// LatestInBucket reads the key's current entry (a version or a
	// delete marker).
	LatestInBucket(ctx context.Context, bucket, key string) (rgwobj.ListEntry, bool, error)
	PutACL(ctx context.Context, bucket, key, versionID, owner string, acl []byte) error
	// BucketVersioning is the bucket's versioning status ("Enabled",
	// "Suspended", "").
	BucketVersioning(ctx context.Context, bucket string) (string, error)
	// PutTagging sets a version's tags in place (none: removes them).
	PutTagging(ctx context.Context, bucket, key, versionID, owner string, tags map[string]string) error
}

func infoOf(op *v1.ObjectOp) rgwobj.ObjectInfo {
	return wire.Info(op.GetBucket(), op.GetKey(), op.GetVersionId(), op.GetOwner(), op.GetAttrs())
}

// whileLeased is ctx cancelled as soon as u's lease is no longer valid.
func (a *Applier) whileLeased(ctx context.Context, u rgwlog.Unit) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-c.Done():
				return
			case <-t.C:
				if !a.leases.Valid(u) {
					return
				}
			}
		}
	}()
	return c, cancel
}

// applyObjects applies a batch's object ops: the ops of one key in the
// batch's order (the versions of a key must reach the destination in the
// source's order), different keys side by side, up to ApplyConcurrency.
// Chunked ops, and every op of a key that has one, go in one lane in
// op-index order: their bodies arrive on chunks in that order, and are
// read as they arrive (the gateway write streams them; nothing holds a
// whole large object in memory). Failed items come back in op order.
func (a *Applier) applyObjects(ctx context.Context, u rgwlog.Unit, b *v1.Batch, chunks <-chan *v1.ObjectChunk,
	ask *asker) ([]*v1.RetryItem, error) {
	ops := b.GetObjects()
	if a.cfg.Objects == nil && len(ops) > 0 {
		return nil, errors.New("batch with object operations but no object destination configured")
	}
	keyOf := func(op *v1.ObjectOp) string { return op.GetBucket() + "\x00" + op.GetKey() }
	withChunks := map[string]bool{}
	for _, op := range ops {
		if op.GetChunked() {
			withChunks[keyOf(op)] = true
		}
	}
	var chunkLane []*v1.ObjectOp
	lanes := map[string][]*v1.ObjectOp{}
	var order []string
	for _, op := range ops {
		k := keyOf(op)
		switch {
		case withChunks[k]:
			chunkLane = append(chunkLane, op)
		default:
			if _, ok := lanes[k]; !ok {
				order = append(order, k)
			}
			lanes[k] = append(lanes[k], op)
		}
	}

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var mu sync.Mutex
	failed := map[uint32]*v1.RetryItem{}
	runLane := func(lane []*v1.ObjectOp) {
		// After an op of a versioned key failed, the later ops of the key
		// wait for it (failed too, retried behind it): applied ahead of
		// it, an op with a higher epoch would make the failed one, once
		// retried, a stale write the gateway does not make current.
		held := false
		for _, op := range lane {
			item, err := a.applyOne(ctx, u, op, chunks, ask, held)
			if err != nil {
				stop(err)
				return
			}
			if item != nil {
				mu.Lock()
				failed[op.GetIndex()] = item
				mu.Unlock()
				held = held || (op.GetVersionId() != "" && !rgwlog.Parked(item.GetError()))
			}
		}
	}
	var wg sync.WaitGroup
	if len(chunkLane) > 0 {
		wg.Go(func() { runLane(chunkLane) })
	}
	sem := make(chan struct{}, max(a.cfg.ApplyConcurrency, 1))
	for _, k := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			runLane(lanes[k])
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	out := make([]*v1.RetryItem, 0, len(failed))
	for _, op := range ops {
		if it, ok := failed[op.GetIndex()]; ok {
			out = append(out, it)
		}
	}
	return out, nil
}

// applyOne applies one op (held: an earlier op of its key failed, so it is
// not tried). A failed op is a retry item; an error (fenced, cancelled)
// ends the batch.
func (a *Applier) applyOne(ctx context.Context, u rgwlog.Unit, op *v1.ObjectOp, chunks <-chan *v1.ObjectChunk,
	ask *asker, held bool) (*v1.RetryItem, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if !a.leases.Valid(u) {
		return nil, errFenced
	}
	var body *chunkReader
	if op.GetChunked() {
		body = &chunkReader{ctx: ctx, ch: chunks, index: op.GetIndex(), ask: ask}
	}
	item := func(msg string) *v1.RetryItem {
		return &v1.RetryItem{Section: "object", Name: op.GetKey(), Bucket: op.GetBucket(), Key: op.GetKey(),
			VersionId: op.GetVersionId(), Error: msg, Timestamp: op.GetTimestamp(),
			Kind: op.GetKind(), VersionedEpoch: op.GetVersionedEpoch()}
	}
	if held {
		if body != nil {
			body.drain()
		}
		return item(rgwlog.HeldPrefix + "an earlier op of this key failed"), nil
	}
	start := time.Now()
	var err error
	if op.GetChunked() {
		// A large body may outlast one lease term: bounded by the lease as
		// it is renewed (cut when the lease is lost).
		wctx, cancel := a.whileLeased(ctx, u)
		err = a.applyGated(wctx, op, body)
		cancel()
	} else {
		lctx, cancel, lerr := a.writeCtx(ctx, u)
		if lerr != nil {
			return nil, lerr
		}
		err = a.applyGated(lctx, op, body)
		cancel()
	}
	if err != nil && !a.leases.Valid(u) {
		return nil, errFenced // not a failure of the object: the next holder redoes it
	}
	if body != nil {
		body.drain()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err() // cut by another lane's end, not a failure of its own
		}
		a.cfg.Metrics.errors.WithLabelValues("object").Inc()
		if lvl, ok := parkedLevel(err); ok {
			a.log.Log(ctx, lvl, "op parked: zone-b will not take it as it is; kept for retry, later ops of the key go on",
				"shard", u.String(), "bucket", op.GetBucket(), "object", op.GetKey(), "version", op.GetVersionId(),
				"epoch", op.GetVersionedEpoch(), "err", err)
			return item(rgwlog.ParkedPrefix + err.Error()), nil
		}
		if nullVersionRefused(op, err) {
			a.log.Error("null version refused by zone-b, whose bucket never showed versioning suspended: kept for retry, later ops of the key go on",
				"shard", u.String(), "bucket", op.GetBucket(), "object", op.GetKey(), "epoch", op.GetVersionedEpoch(), "err", err)
			return item(rgwlog.ParkedPrefix + "zone-b's bucket has versioning enabled and this key has versions there: " +
				"it cannot store the null version written while the source's bucket was suspended (FACTS.md section 9): " + err.Error()), nil
		}
		a.log.Warn("object apply failed", "shard", u.String(), "bucket", op.GetBucket(), "object", op.GetKey(),
			"version", op.GetVersionId(), "op", op.GetKind().String(), "err", err)
		return item(err.Error()), nil
	}
	a.cfg.Metrics.objectSeconds.Observe(time.Since(start).Seconds())
	return nil, nil
}

// applyObject applies one object op on zone-b.
func (a *Applier) applyObject(ctx context.Context, op *v1.ObjectOp, body objectBody) error {
	dst := a.cfg.Objects
	switch op.GetKind() {
	case v1.ObjectOpKind_OBJECT_OP_KIND_DELETE:
		if err := dst.Delete(ctx, op.GetBucket(), op.GetKey(), op.GetOwner(), ""); err != nil && !errors.Is(err, rgwobj.ErrNotFound) {
			return err
		}
		a.cfg.Metrics.objects.WithLabelValues("delete").Inc()
		return nil
	case v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_VERSION:
		if op.GetVersionId() == "null" {
			if skip, err := a.nullRemovalDone(ctx, op); err != nil || skip {
				return err
			}
		}
		if err := dst.DeleteVersion(ctx, op.GetBucket(), op.GetKey(), op.GetOwner(), op.GetVersionId(), op.GetVersionedEpoch()); err != nil && !errors.Is(err, rgwobj.ErrNotFound) {
			return err
		}
		a.cfg.Metrics.objects.WithLabelValues("delete_version").Inc()
		return nil
	case v1.ObjectOpKind_OBJECT_OP_KIND_DELETE_MARKER:
		return a.applyDeleteMarker(ctx, op)
	case v1.ObjectOpKind_OBJECT_OP_KIND_PUT:
		return a.applyPut(ctx, op, body)
	}
	return fmt.Errorf("unknown object op %v", op.GetKind())
}

// applyPut writes an object or a version, unless zone-b has it as the op
// describes it already (then nothing is written, or only its tags or ACL).
func (a *Applier) applyPut(ctx context.Context, op *v1.ObjectOp, body objectBody) error {
	dst := a.cfg.Objects
	info := infoOf(op)
	// Already there, as the op describes it? Then the body need not cross
	// the link (a chunked one), and a version is not written a second time
	// (see applyDeleteMarker). An unversioned object whose body came
	// inline is written without asking: the same number of requests at
	// worst, one fewer round trip in the common case (not there yet).
	// A null version without its epoch into a bucket versioned on zone-b
	// is looked for first too: a change of its tags or ACL at the source
	// logs a plain "write" (no epoch), and a plain write is replayed after
	// a kill. Written again, zone-b gave it an epoch above the key's later
	// ops (make chaos seed 1 extended, v/k00302: a later delete marker not
	// current), and every write into a bucket whose versioning toggles
	// risks another kind of null version (seed 2 extended, v/k01410).
	nullInVersioned, err := a.nullInVersioned(ctx, op)
	if err != nil {
		return err
	}
	have, err := rgwobj.ObjectInfo{}, rgwobj.ErrNotFound
	if body != nil || op.GetVersionedEpoch() > 0 || nullInVersioned {
		have, err = dst.Stat(ctx, info.Bucket, info.Key, info.VersionID)
	}
	same := err == nil && sameCopy(have, info)
	// The null version too: its tags and ACL are set in place with
	// versionId=null in every state of zone-b's bucket (FACTS.md section
	// 16). Written again it waited for zone-b to show the bucket suspended
	// and, the source enabled again meanwhile, became a null version that
	// is not current and cannot be deleted (make chaos seed 4, v/k00604).
	attrsOnly := err == nil && !same && (op.GetVersionedEpoch() > 0 || nullInVersioned) &&
		sameCopy(withAttrs(have, info.Tags, info.ACL), info)
	if same || attrsOnly {
		// Not written on this answer alone: the index must list it too.
		if err = a.listed(ctx, info, op.GetVersionedEpoch()); err != nil {
			same, attrsOnly = false, false
		}
	}
	switch {
	case same:
		if body != nil {
			body.notWanted() // the exporter does not even read it from the source
		}
		a.cfg.Metrics.objects.WithLabelValues("skipped").Inc()
		return nil
	case attrsOnly:
		return a.setAttrsInPlace(ctx, have, info, body)
	case err != nil && !errors.Is(err, rgwobj.ErrNotFound) && op.GetVersionedEpoch() > 0:
		// Whether the destination has this version decides whether it may
		// be written (a second write with its epoch can leave it not
		// current): unknown now, so retried.
		return fmt.Errorf("look for the version on the destination: %w", err)
	}
	return a.writeObject(ctx, op, info, body)
}

// nullInVersioned: op writes the null version without an epoch, into a
// bucket that zone-b says is versioned (enabled or suspended).
func (a *Applier) nullInVersioned(ctx context.Context, op *v1.ObjectOp) (bool, error) {
	if op.GetVersionId() != "null" || op.GetVersionedEpoch() > 0 {
		return false, nil
	}
	status, err := a.bucketVersioning(ctx, op.GetBucket())
	if err != nil {
		return false, fmt.Errorf("read zone-b's versioning of the bucket before writing a null version: %w", err)
	}
	return status != "", nil
}

// setAttrsInPlace sets the tags and ACL of a version that zone-b has but
// for them (they changed at the source since — a PUT ?tagging or ?acl with
// versionId logs a "write" of that instance — or the ACL request after its
// write failed). Written again with its epoch it could stop being current
// (see applyDeleteMarker): its tags and ACL are set in place.
func (a *Applier) setAttrsInPlace(ctx context.Context, have, info rgwobj.ObjectInfo, body objectBody) error {
	dst := a.cfg.Objects
	if body != nil {
		body.notWanted()
	}
	if !maps.Equal(have.Tags, info.Tags) {
		if err := dst.PutTagging(ctx, info.Bucket, info.Key, info.VersionID, info.Owner, info.Tags); err != nil {
			return err
		}
		a.cfg.Metrics.objects.WithLabelValues("tags").Inc()
	}
	if !bytes.Equal(have.ACL, info.ACL) {
		if info.ACL == nil {
			// The default ACL is the owner's full control: the
			// source went back to it.
			info.ACL = defaultACL(info.Owner)
		}
		if err := dst.PutACL(ctx, info.Bucket, info.Key, info.VersionID, info.Owner, info.ACL); err != nil {
			return err
		}
		a.cfg.Metrics.objects.WithLabelValues("acl").Inc()
	}
	return nil
}

// writeObject writes the op's object (its body inline or read from the
// chunks as they arrive) once zone-b's bucket versioning allows it.
func (a *Applier) writeObject(ctx context.Context, op *v1.ObjectOp, info rgwobj.ObjectInfo, body objectBody) error {
	dst := a.cfg.Objects
	if info.VersionID == "" || info.VersionID == "null" {
		if err := a.nullVersionWritable(ctx, op); err != nil {
			return err
		}
	}
	if len(info.PartSizes) > 0 && info.VersionID != "" && info.VersionID != "null" {
		// A multipart version keeps its id only while zone-b's bucket is
		// versioning-enabled: suspended or not versioned, the complete
		// stores it as the null version (FACTS.md section 14).
		if err := a.versioningIs(ctx, op.GetBucket(), "Enabled", "a multipart version"); err != nil {
			return err
		}
	}
	if body != nil {
		body.want()
	}
	var r io.Reader = bytes.NewReader(op.GetBody())
	if body != nil {
		r = body
	} else if int64(len(op.GetBody())) != info.Size {
		return fmt.Errorf("inline body of %d bytes for an object of %d", len(op.GetBody()), info.Size)
	}
	var (
		etag string
		err  error
	)
	if len(info.PartSizes) > 0 {
		etag, err = dst.PutMultipart(ctx, info, func(_ int, _ int64, size int64) (io.ReadCloser, error) {
			return io.NopCloser(io.LimitReader(r, size)), nil
		}, op.GetVersionedEpoch())
	} else {
		etag, err = dst.Put(ctx, info, r, op.GetVersionedEpoch())
	}
	if err != nil {
		if body != nil && body.sourceFailed() {
			return errSourceBody
		}
		return err
	}
	if info.ETag != "" && etag != "" && etag != info.ETag {
		return fmt.Errorf("written with ETag %s, the source has %s (changed while copied?)", etag, info.ETag)
	}
	a.cfg.Metrics.objects.WithLabelValues("put").Inc()
	a.cfg.Metrics.bytes.Add(float64(info.Size))
	return nil
}

// listed: zone-b's bucket index lists this version of the key (nil), or
// not (rgwobj.ErrNotFound). A GET or HEAD reads an object's head without
// the index: after a reshard, zone-b's new index is empty while every old
// head still answers (FACTS.md section 12), and a copy skipped on that
// answer alone stayed out of zone-b's listings for good (make chaos seed 4).
// A null version listed with an epoch below epoch is an earlier one that
// this op replaces (the id "null" is reused): not there either.
func (a *Applier) listed(ctx context.Context, info rgwobj.ObjectInfo, epoch uint64) error {
	v := info.VersionID
	if v == "" {
		v = "null"
	}
	en, found, err := a.cfg.Objects.FindVersionInBucket(ctx, info.Bucket, info.Key, v)
	switch {
	case err != nil:
		return fmt.Errorf("look for the object in the destination's bucket index: %w", err)
	case !found || en.DeleteMarker || v == "null" && en.VersionedEpoch < epoch:
		return rgwobj.ErrNotFound
	}
	return nil
}

func withAttrs(info rgwobj.ObjectInfo, tags map[string]string, acl []byte) rgwobj.ObjectInfo {
	info.Tags, info.ACL = tags, acl
	return info
}

// sameCopy: the destination already has this object as the op describes
// it: body (ETag and size), owner, content headers, metadata, tags and ACL.
// (A HEAD shows neither tags nor the ACL: a chaos run found an overwrite
// that dropped the tags skipped, the destination keeping the old tags.)
func sameCopy(have, want rgwobj.ObjectInfo) bool {
	if have.ETag != want.ETag || have.Size != want.Size || have.Owner != want.Owner {
		return false
	}
	if have.ContentType != want.ContentType || have.CacheControl != want.CacheControl ||
		have.ContentDisposition != want.ContentDisposition || have.ContentEncoding != want.ContentEncoding ||
		have.ContentLanguage != want.ContentLanguage || have.Expires != want.Expires {
		return false
	}
	return maps.Equal(have.UserMeta, want.UserMeta) && maps.Equal(have.Tags, want.Tags) && bytes.Equal(have.ACL, want.ACL)
}

// defaultACL is the ACL of an object whose source ACL is the default one:
// the owner's full control, nothing else.
func defaultACL(owner string) []byte {
	var b strings.Builder
	b.WriteString(`<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>`)
	_ = xml.EscapeText(&b, []byte(owner))
	b.WriteString(`</ID></Owner><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>`)
	_ = xml.EscapeText(&b, []byte(owner))
	b.WriteString(`</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>`)
	return []byte(b.String())
}
