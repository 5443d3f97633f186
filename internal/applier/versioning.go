package applier

// What zone-b's bucket versioning allows: the rules for null versions and
// multipart versions, and the applier's reading of zone-b's versioning
// status. Measured: FACTS.md sections 9, 13–15, 20.

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// errNullWouldDuplicate: a null version that waited nullVersionWait for
// zone-b's bucket to show versioning suspended, while zone-b lists a null
// entry of the key already: written into the enabled bucket it would be a
// second "null" entry (FACTS.md section 20).
var errNullWouldDuplicate = errors.New("zone-b's bucket has versioning enabled and lists a null entry of this key: " +
	"the null version written while the source's bucket was suspended would be stored as a second one (FACTS.md section 20)")

// nullVersionWait bounds how long a null version waits for zone-b's bucket
// to stop being versioning-enabled (see nullVersionWritable).
const nullVersionWait = 10 * time.Minute

// nullVersionWritable: an object without a version id (a plain write, or
// the null version of a bucket whose versioning is suspended) is not
// written while zone-b's bucket still has versioning enabled — the source
// logs such a write only when its bucket is not enabled, so zone-b's
// metadata is behind — and a null version with an epoch (a write that
// replaced a versioned key's null version) waits for zone-b to show the
// bucket suspended. Still enabled there (its metadata behind), the
// gateway stores a different kind of null version for good (HEAD answers
// x-amz-version-id: null where the source answers none; an existing key
// answers 404); never enabled there, the write makes an OLH no DELETE
// removes (TestNullVersionWithEpochIsNotDeletable). Measured, FACTS.md section 9 (issue #11, hole 2). The op
// fails (retried) until the bucket's new state is applied — data does not
// overtake the metadata it depends on. If zone-b never shows it (the
// source enabled versioning again before the bucket was synced), it is
// written in a suspension of zone-b's bucket of its own
// (writeInSuspension) as soon as the exporter says the metadata logged
// before it is applied (ObjectOp.metadata_settled: waiting is useless), or
// after nullVersionWait (a body that comes in chunks is read to a file
// first: applyGated). Without zone-b's admin API (tests) it is parked once
// the metadata is settled, and written after nullVersionWait.
func (a *Applier) nullVersionWritable(ctx context.Context, op *v1.ObjectOp) error {
	status, err := a.bucketVersioning(ctx, op.GetBucket())
	if err != nil {
		return fmt.Errorf("read zone-b's versioning of the bucket before writing a null version: %w", err)
	}
	switch {
	case status == "Suspended" && a.cfg.Dest != nil && !ownSuspension(ctx, op.GetBucket()):
		// Suspended by another applier for a null version's write, it is
		// enabled again in a moment, maybe before this write lands (make
		// chaos seed 5 extended: "null" listed twice). With the metadata
		// applied past the op, written in a suspension of its own; else
		// it waits for zone-b's bucket to say what the source's did.
		marked, err := a.suspendedForAWrite(ctx, op.GetBucket())
		switch {
		case err != nil:
			return err
		case marked && (op.GetMetadataSettled() || waitedLong(op)):
			return errSuspensionNeeded
		case marked:
			return fmt.Errorf("bucket %s: %w", op.GetBucket(), errSuspensionInProgress)
		}
		return nil
	case status == "Suspended":
		return nil
	case status == "" && op.GetVersionedEpoch() == 0:
		return nil // an object of an unversioned bucket
	}
	waited := waitedLong(op)
	if (op.GetMetadataSettled() || waited) && a.cfg.Dest != nil {
		// zone-b's metadata is applied past the write (or it waited long
		// enough) and its bucket is not suspended: the suspension the
		// source wrote it in was too short for the metadata sync to
		// see. Written in a suspension of zone-b's bucket of its own
		// (writeInSuspension).
		return errSuspensionNeeded
	}
	if op.GetMetadataSettled() && !waited {
		// zone-b's metadata is applied past the write and its bucket is
		// not suspended: the suspension the source wrote it in was too
		// short for the metadata sync to see, and waiting for it is
		// useless. Written now, into the enabled bucket, it would be the
		// other kind of null version, which a later null write in a
		// suspended bucket lists twice (make chaos seed 1, 9 keys).
		// Parked: kept and shown, the key's later ops go on, retried (and
		// written once zone-b's bucket is suspended again).
		return errNullSuspensionMissed
	}
	if waited {
		// Written into an enabled bucket that lists a null entry of the
		// key already, it would be a second "null" entry that no DELETE
		// removes (FACTS.md section 20; make chaos seed 5, v/k00358):
		// parked instead, kept and shown.
		_, found, err := a.cfg.Objects.FindVersionInBucket(ctx, op.GetBucket(), op.GetKey(), "null")
		if err != nil {
			return fmt.Errorf("look for a null entry of the key on the destination before writing a null version into an enabled bucket: %w", err)
		}
		if found {
			return errNullWouldDuplicate
		}
		a.log.Warn("null version written into a bucket whose versioning zone-b never showed suspended (waited long enough for the bucket's metadata)",
			"bucket", op.GetBucket(), "object", op.GetKey(), "versioning", status, "waited", time.Since(op.GetTimestamp().AsTime()).Round(time.Second))
		return nil
	}
	a.forgetVersioning(op.GetBucket())
	return fmt.Errorf("bucket %s has versioning %q on zone-b, not Suspended yet (its metadata is behind): a null version written now would be stored as another kind (retried)", op.GetBucket(), status)
}

// versioningIs: zone-b's bucket has versioning want (read fresh when it
// does not), or an error naming what waits for it (retried).
func (a *Applier) versioningIs(ctx context.Context, bucket, want, what string) error {
	status, err := a.bucketVersioning(ctx, bucket)
	if err != nil {
		return fmt.Errorf("read zone-b's versioning of the bucket before writing %s: %w", what, err)
	}
	if status != want {
		a.forgetVersioning(bucket)
		return fmt.Errorf("bucket %s has versioning %q on zone-b, not %s: %s waits (retried)", bucket, status, want, what)
	}
	return nil
}

// waitedLong: the op was logged more than nullVersionWait ago.
func waitedLong(op *v1.ObjectOp) bool {
	ts := op.GetTimestamp()
	return ts != nil && time.Since(ts.AsTime()) > nullVersionWait
}

// errNullSuspensionMissed: see nullVersionWritable (parked).
var errNullSuspensionMissed = errors.New("the source wrote this null version while its bucket was suspended for a moment that " +
	"zone-b's metadata never showed (it is applied past the write, and zone-b's bucket is not suspended): zone-b cannot store it " +
	"faithfully while its bucket is enabled (FACTS.md sections 9, 20); kept, and written if zone-b's bucket is suspended again")

// nullVersionRefused: the write of a null version with an epoch, past
// nullVersionWait (zone-b's bucket never showed suspended), answered
// NoSuchKey — what the gateway answers for a null version of a key with
// versions while the bucket is enabled (FACTS.md section 9). Such an op is
// parked (rgwlog.ParkedPrefix): held behind it, every later op of the key,
// the current version included, stayed off zone-b for good (chaos,
// CHAOS_EXTENDED, RELIABILITY.md finding 14).
func nullVersionRefused(op *v1.ObjectOp, err error) bool {
	if op.GetKind() != v1.ObjectOpKind_OBJECT_OP_KIND_PUT || op.GetVersionId() != "null" || op.GetVersionedEpoch() == 0 {
		return false
	}
	if !waitedLong(op) {
		return false
	}
	var gerr *rgwobj.GatewayError
	return errors.As(err, &gerr) && gerr.Code == "NoSuchKey"
}

// versioningTTL is how long zone-b's answer "never versioned" ("") for a
// bucket is reused. Only that answer: a bucket leaves it only through an
// Enabled that the source logs before any write that needs it. "Enabled"
// and "Suspended" are read for every op that depends on them: a
// "Suspended" kept for 2 s let a null version through after zone-b's
// bucket was enabled again, stored as a kind no DELETE ?versionId=null
// removes (FACTS.md section 15; make chaos seed 4, v/k00598).
const versioningTTL = 2 * time.Second

type versioningSeen struct {
	status string
	at     time.Time
}

func (a *Applier) bucketVersioning(ctx context.Context, bucket string) (string, error) {
	a.verMu.Lock()
	v, ok := a.versioning[bucket]
	a.verMu.Unlock()
	if ok && v.status == "" && time.Since(v.at) < versioningTTL {
		return v.status, nil
	}
	status, err := a.cfg.Objects.BucketVersioning(ctx, bucket)
	if err != nil {
		return "", err
	}
	a.verMu.Lock()
	if a.versioning == nil || len(a.versioning) > 10000 {
		a.versioning = map[string]versioningSeen{}
	}
	a.versioning[bucket] = versioningSeen{status: status, at: time.Now()}
	a.verMu.Unlock()
	return status, nil
}

func (a *Applier) forgetVersioning(bucket string) {
	a.verMu.Lock()
	delete(a.versioning, bucket)
	a.verMu.Unlock()
}
