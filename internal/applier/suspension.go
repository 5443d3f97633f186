package applier

// Writing a null version whose suspension zone-b never showed: zone-b's
// bucket is suspended for that one write, with every other write of the
// bucket in this applier paused. Measured: FACTS.md sections 9, 14, 24.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// errSuspensionNeeded: see nullVersionWritable; applyGated answers it by
// writeInSuspension.
var errSuspensionNeeded = errors.New("the source wrote this null version while its bucket was suspended for a moment that " +
	"zone-b's metadata never showed: written while zone-b's bucket is suspended for it")

// bucketGates pauses the writes of one bucket: every write of an object of
// the bucket, and every metadata write of one of its instances, holds the
// bucket's gate shared; writeInSuspension holds it alone. Only this
// process's writes are paused (see FACTS.md section 24 for what another
// applier's writes would do meanwhile).
type bucketGates struct {
	mu sync.Mutex
	m  map[string]*bucketGate
}

type bucketGate struct {
	sync.RWMutex
	users  int          // under bucketGates.mu
	wanted atomic.Int32 // suspension writes waiting for the gate
}

func (g *bucketGates) get(bucket string) *bucketGate {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*bucketGate{}
	}
	b := g.m[bucket]
	if b == nil {
		b = &bucketGate{}
		g.m[bucket] = b
	}
	b.users++
	return b
}

func (g *bucketGates) put(bucket string, b *bucketGate) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.users--; b.users == 0 {
		delete(g.m, bucket)
	}
}

// sharedYield bounds how long a write lets a waiting suspension write go
// first.
const sharedYield = time.Second

// shared holds bucket's gate for one write. It waits while a suspension
// write holds the gate (milliseconds), and lets one that waits for the
// gate go first for up to sharedYield (bounded: the writes under way may
// need body chunks that come only after this one's, see alone).
func (g *bucketGates) shared(bucket string) (release func()) {
	b := g.get(bucket)
	for start := time.Now(); b.wanted.Load() > 0 && time.Since(start) < sharedYield; {
		time.Sleep(5 * time.Millisecond)
	}
	b.RLock()
	return func() { b.RUnlock(); g.put(bucket, b) }
}

// alone holds bucket's gate with no other write of the bucket under way,
// trying until wait has passed (false then). It never blocks the writes
// that come meanwhile: one of them may need the body chunks of a batch
// that come after those of the op that waits here.
func (g *bucketGates) alone(ctx context.Context, bucket string, wait time.Duration) (release func(), ok bool) {
	b := g.get(bucket)
	b.wanted.Add(1)
	defer b.wanted.Add(-1)
	deadline := time.Now().Add(wait)
	for !b.TryLock() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			g.put(bucket, b)
			return nil, false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() { b.Unlock(); g.put(bucket, b) }, true
}

// applyGated applies an object op holding its bucket's gate, and a null
// version that needs zone-b's bucket suspended by writeInSuspension.
func (a *Applier) applyGated(ctx context.Context, op *v1.ObjectOp, chunks *chunkReader) error {
	if wire.DependsOnVersioning(op) {
		if err := a.undoLeftSuspension(ctx, op.GetBucket()); err != nil {
			return err
		}
	}
	var body objectBody // nil for an inline body (not a nil *chunkReader)
	if chunks != nil {
		body = chunks
	}
	release := a.gates.shared(op.GetBucket())
	err := a.applyObject(ctx, op, body)
	release()
	if !errors.Is(err, errSuspensionNeeded) {
		return err
	}
	if chunks == nil {
		return a.writeInSuspension(ctx, op, nil)
	}
	// Its chunks come only after those of the batch's earlier ops, which
	// may wait for the bucket's gate: read to a file first, then written
	// holding the gate.
	sp, err := spoolBody(chunks, op.GetAttrs().GetSize())
	if err != nil {
		return err
	}
	defer sp.Close()
	return a.writeInSuspension(ctx, op, sp)
}

// spooledBody is a chunked body read to a temporary file (removed on
// Close).
type spooledBody struct{ f *os.File }

func (s *spooledBody) Read(p []byte) (int, error) { return s.f.Read(p) }
func (s *spooledBody) want()                      {}
func (s *spooledBody) notWanted()                 {}
func (s *spooledBody) sourceFailed() bool         { return false }
func (s *spooledBody) Close() error {
	err := s.f.Close()
	_ = os.Remove(s.f.Name())
	return err
}

// spoolBody reads a chunked body of size bytes to a temporary file.
func spoolBody(body *chunkReader, size int64) (*spooledBody, error) {
	f, err := os.CreateTemp("", "rgwsync-body-*")
	if err != nil {
		return nil, fmt.Errorf("spool a null version's body for a suspension write: %w", err)
	}
	sp := &spooledBody{f: f}
	body.want()
	n, err := io.Copy(f, body)
	if err == nil && n != size {
		err = fmt.Errorf("%d bytes of a body of %d", n, size)
	}
	if err == nil && body.sourceFailed() {
		err = errSourceBody
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("spool a null version's body for a suspension write: %w", err)
	}
	return sp, nil
}

// errSuspensionInProgress: another applier of the destination holds the
// bucket's suspension lock (it is writing a null version in a suspension).
var errSuspensionInProgress = errors.New("another applier is writing a null version of this bucket in a suspension of zone-b's bucket (retried)")

// exclusive takes the destination-wide lock of bucket's suspension writes:
// one applier at a time suspends a bucket, and a suspension marked on
// zone-b while another holds the lock is that one's, not left by a kill.
func (a *Applier) exclusive(ctx context.Context, bucket string) (unlock func(), err error) {
	unlock, err = a.leases.Exclusive(ctx, "suspension:"+bucket)
	if errors.Is(err, rgwadmin.ErrLocked) {
		return nil, fmt.Errorf("bucket %s: %w", bucket, errSuspensionInProgress)
	}
	if err != nil {
		return nil, fmt.Errorf("take the lock of bucket %s's suspension writes: %w", bucket, err)
	}
	return unlock, nil
}

// errVersioningChanged: zone-b's ?versioning said Suspended and its bucket
// instance, read just after, says otherwise (see suspendedForAWrite).
var errVersioningChanged = errors.New("zone-b's bucket versioning changed while it was read (another applier's suspension ended, " +
	"or the metadata sync applied a change): retried")

// suspendedForAWrite: zone-b's bucket says Suspended because an applier
// suspended it for a null version's write (its instance's version tag is
// marked, rgwlog.SuspensionTag), not because the source's bucket is. The
// instance read here decides: when it does not say Suspended any more
// (that applier put it back between the two reads: make chaos seed 2
// extended, a null write into the enabled bucket, "null" listed twice),
// errVersioningChanged.
func (a *Applier) suspendedForAWrite(ctx context.Context, bucket string) (bool, error) {
	key, blob, err := a.zoneBInstance(ctx, bucket)
	if err != nil {
		return false, fmt.Errorf("read zone-b's bucket instance before writing a null version into its suspended bucket: %w", err)
	}
	_, marked, err := rgwlog.WithoutSuspension(blob)
	if err != nil {
		return false, fmt.Errorf("zone-b's bucket instance %s: %w", key, err)
	}
	status, err := rgwlog.Versioning(blob)
	if err != nil {
		return false, fmt.Errorf("zone-b's bucket instance %s: %w", key, err)
	}
	if status != "Suspended" {
		a.forgetVersioning(bucket)
		return false, fmt.Errorf("bucket %s: ?versioning said Suspended, its instance says %q: %w", bucket, status, errVersioningChanged)
	}
	return marked, nil
}

// inOwnSuspension marks the context of the write that writeInSuspension
// suspended zone-b's bucket (the value) for.
type inOwnSuspension struct{}

func ownSuspension(ctx context.Context, bucket string) bool {
	b, ok := ctx.Value(inOwnSuspension{}).(string)
	return ok && b == bucket
}

// suspensionWait bounds how long a suspension write waits for the other
// writes of its bucket to end (then it fails and is retried).
const suspensionWait = 10 * time.Second

// alone holds bucket's gate alone (bucketGates.alone), or says why not:
// the context's end, or the other writes of the bucket that did not pause
// within suspensionWait (the op fails and is retried).
func (a *Applier) alone(ctx context.Context, bucket, what string) (release func(), err error) {
	release, ok := a.gates.alone(ctx, bucket, suspensionWait)
	if ok {
		return release, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("bucket %s: the other writes of the bucket did not pause within %s %s (retried)", bucket, suspensionWait, what)
}

// writeInSuspension writes a null version the source wrote while its bucket
// was suspended for a moment that the metadata sync never showed zone-b
// (it copies current blobs; the source's bucket is enabled again): alone
// among this applier's writes of the bucket, zone-b's bucket instance is
// put with versioning suspended, the null version written (as the source
// did), and the instance put back as it was (the suspended blob's version
// tag is marked, rgwlog.SuspensionTag, so that a blob left suspended by a
// kill between the two puts is put back when the op comes again). Measured,
// FACTS.md section 24:
// the null version is then stored as the source's, replaced by the next
// null write and removed by DELETE ?versionId=null — where written into
// the enabled bucket it was another kind, listed twice or never deletable
// (sections 9, 15, 20).
func (a *Applier) writeInSuspension(ctx context.Context, op *v1.ObjectOp, body objectBody) error {
	bucket := op.GetBucket()
	release, err := a.alone(ctx, bucket, "for the write of a null version in a suspension")
	if err != nil {
		return err
	}
	defer release()
	unlock, err := a.exclusive(ctx, bucket)
	if err != nil {
		return err
	}
	defer unlock()
	key, blob, err := a.zoneBInstance(ctx, bucket)
	if err != nil {
		return fmt.Errorf("read zone-b's bucket instance to write a null version in a suspension: %w", err)
	}
	orig, left, err := rgwlog.WithoutSuspension(blob)
	if err != nil {
		return fmt.Errorf("zone-b's bucket instance %s: %w", key, err)
	}
	if left {
		// Put by an applier stopped between its two puts (the op comes
		// again: its batch was not acked): put back below.
		a.log.Warn("zone-b's bucket instance left suspended by an interrupted suspension write: put back after this one",
			"bucket", bucket, "instance", key)
		blob = orig
	}
	status, err := rgwlog.Versioning(blob)
	if err != nil {
		return fmt.Errorf("zone-b's bucket instance %s: %w", key, err)
	}
	a.forgetVersioning(bucket)
	if status != "Enabled" {
		// Suspended by now (the metadata sync), or not versioned:
		// written, or waiting, by the usual rules.
		return a.applyObject(ctx, op, body)
	}
	suspended, err := rgwlog.WithVersioningSuspended(blob)
	if err != nil {
		return fmt.Errorf("zone-b's bucket instance %s: %w", key, err)
	}
	a.log.Info("null version written in a suspension of zone-b's bucket (the source's was too short for the metadata sync to show)",
		"bucket", bucket, "object", op.GetKey(), "epoch", op.GetVersionedEpoch(), "instance", key)
	_, werr := a.cfg.Dest.PutMetadata(ctx, rgwlog.SectionBucketInstance, key, suspended, "")
	if werr != nil {
		// The put may have been applied with its answer lost (a reset
		// connection, a spoiled answer): put back below all the same.
		werr = fmt.Errorf("suspend zone-b's bucket instance %s for a null version: %w", key, werr)
	} else {
		werr = a.applyObject(context.WithValue(ctx, inOwnSuspension{}, bucket), op, body)
	}
	a.forgetVersioning(bucket)
	if err := a.restoreInstance(ctx, key, blob); err != nil {
		a.log.Error("zone-b's bucket may be left suspended after a null version's write: put back by the next write "+
			"that depends on its versioning, or its next metadata change", "bucket", bucket, "instance", key, "err", err)
		a.lookAgainForLeftSuspension(bucket)
		return fmt.Errorf("put zone-b's bucket instance %s back after a null version's write: %w", key, err)
	}
	if werr != nil {
		return werr
	}
	a.cfg.Metrics.objects.WithLabelValues("suspension").Inc()
	return nil
}

// lookAgainForLeftSuspension makes the next write of bucket that depends on
// its versioning look for a suspension left on zone-b (undoLeftSuspension).
func (a *Applier) lookAgainForLeftSuspension(bucket string) {
	a.verMu.Lock()
	delete(a.leftChecked, bucket)
	a.verMu.Unlock()
}

// restoreInstance puts zone-b's bucket instance back as it was before a
// suspension write, also when the op's context ended meanwhile (a few
// tries).
func (a *Applier) restoreInstance(ctx context.Context, key string, blob []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for try := range 5 {
		if _, err = a.cfg.Dest.PutMetadata(ctx, rgwlog.SectionBucketInstance, key, blob, ""); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
		}
	}
	return err
}

// zoneBInstance reads zone-b's current instance of bucket: its metadata key
// and blob.
func (a *Applier) zoneBInstance(ctx context.Context, bucket string) (string, []byte, error) {
	name := strings.Replace(bucket, ":", "/", 1)
	ep, err := a.cfg.Dest.GetMetadata(ctx, rgwlog.SectionBucket, name)
	if err != nil {
		return "", nil, err
	}
	id, err := rgwlog.BucketID(ep)
	if err != nil {
		return "", nil, err
	}
	if id == "" {
		return "", nil, fmt.Errorf("bucket %s: zone-b's entry point names no instance", bucket)
	}
	key := name + ":" + id
	blob, err := a.cfg.Dest.GetMetadata(ctx, rgwlog.SectionBucketInstance, key)
	return key, blob, err
}

// undoLeftSuspension puts zone-b's instance of bucket back as it was if an
// interrupted suspension write (this process's predecessor, killed between
// its two puts) left it suspended: looked at once per bucket and process,
// before the first write that depends on the bucket's versioning. The op
// that was being written comes again (its batch was not acked), but zone-b
// saying Suspended, it would be written without a suspension of its own,
// and the bucket left suspended until its next metadata change.
func (a *Applier) undoLeftSuspension(ctx context.Context, bucket string) error {
	if a.cfg.Dest == nil {
		return nil
	}
	a.verMu.Lock()
	done := a.leftChecked[bucket]
	a.verMu.Unlock()
	if done {
		return nil
	}
	_, blob, err := a.zoneBInstance(ctx, bucket)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return nil // not on zone-b yet: looked at again by the next write
	}
	if err != nil {
		return fmt.Errorf("read zone-b's bucket instance for a suspension left by an interrupted write: %w", err)
	}
	if _, left, err := rgwlog.WithoutSuspension(blob); err == nil && left {
		err := a.putBackLeftSuspension(ctx, bucket)
		if errors.Is(err, errSuspensionInProgress) {
			return nil // another applier's suspension write: looked at again by the next write
		}
		if err != nil {
			return err
		}
	}
	a.verMu.Lock()
	if a.leftChecked == nil || len(a.leftChecked) > 10000 {
		a.leftChecked = map[string]bool{}
	}
	a.leftChecked[bucket] = true
	a.verMu.Unlock()
	return nil
}

func (a *Applier) putBackLeftSuspension(ctx context.Context, bucket string) error {
	release, err := a.alone(ctx, bucket, "to put back zone-b's bucket instance left suspended")
	if err != nil {
		return err
	}
	defer release()
	unlock, err := a.exclusive(ctx, bucket)
	if err != nil {
		return err // errSuspensionInProgress: another applier's, not left
	}
	defer unlock()
	key, blob, err := a.zoneBInstance(ctx, bucket)
	if err != nil {
		return fmt.Errorf("read zone-b's bucket instance left suspended: %w", err)
	}
	orig, left, err := rgwlog.WithoutSuspension(blob)
	if err != nil || !left {
		return err
	}
	a.log.Warn("zone-b's bucket instance left suspended by an interrupted suspension write: put back", "bucket", bucket, "instance", key)
	if err := a.restoreInstance(ctx, key, orig); err != nil {
		return fmt.Errorf("put back zone-b's bucket instance %s left suspended: %w", key, err)
	}
	a.forgetVersioning(bucket)
	return nil
}
