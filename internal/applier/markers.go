package applier

// Delete markers and null-version removals on zone-b: what its gateway
// declines or leaves behind, and how rgwsync lays them anyway (FACTS.md
// sections 13, 22, 27 and 29).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// nullRemovalDone says whether the removal of a null version has nothing
// left to do on zone-b: no null version listed there, or only a later one
// (the id "null" is reused; a removal's epoch is above the epoch of the
// version it removes). A second DELETE ?versionId=null of a key whose null
// version is gone leaves the key's OLH behind on Pacific: a delete marker
// laid once every version of the key is gone is then not current (FACTS.md
// section 27), so it is never sent blind.
func (a *Applier) nullRemovalDone(ctx context.Context, op *v1.ObjectOp) (bool, error) {
	en, found, err := a.cfg.Objects.FindVersionInBucket(ctx, op.GetBucket(), op.GetKey(), "null")
	if errors.Is(err, rgwobj.ErrNotFound) {
		// No such bucket on zone-b (its removal applied already): no
		// version to remove, as the removal itself would answer.
		found, err = false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for the null version on the destination before removing it: %w", err)
	}
	if !found || op.GetVersionedEpoch() > 0 && en.VersionedEpoch > op.GetVersionedEpoch() {
		a.cfg.Metrics.objects.WithLabelValues("skipped").Inc()
		return true, nil
	}
	return false, nil
}

// applyDeleteMarker lays a delete marker with its version id and epoch,
// unless zone-b has it already.
func (a *Applier) applyDeleteMarker(ctx context.Context, op *v1.ObjectOp) error {
	dst := a.cfg.Objects
	// Written again with its epoch (a batch re-sent after a kill
	// between apply and ack), a delete marker the destination has
	// already stops being current once a later op moved the key's
	// epoch on (TestReplayedLinkWithOlderEpochIsNotCurrent): look first.
	en, found, err := dst.FindVersionInBucket(ctx, op.GetBucket(), op.GetKey(), op.GetVersionId())
	if err != nil {
		return fmt.Errorf("look for the delete marker on the destination: %w", err)
	}
	null := op.GetVersionId() == "null"
	if found && null && en.VersionedEpoch < op.GetVersionedEpoch() {
		// The id "null" is reused: an earlier null delete marker or
		// null version, which this one replaces (make chaos seed 4:
		// the later null marker skipped as a replay of the earlier,
		// another version left current on zone-b).
		found = false
	}
	switch {
	case found && en.DeleteMarker:
		a.cfg.Metrics.objects.WithLabelValues("skipped").Inc()
		return nil
	case found && !null:
		return fmt.Errorf("version %s is a delete marker on the source, an object on the destination", op.GetVersionId())
	}
	if null {
		// A DELETE in a suspended bucket: its null delete marker
		// replaces the null version (found or not), in a bucket
		// versioned on zone-b, enabled or suspended (FACTS.md section
		// 13). Not yet versioned there (its metadata is behind), the
		// marker would turn the key of an unversioned bucket into an
		// OLH: retried.
		status, err := a.bucketVersioning(ctx, op.GetBucket())
		if err != nil {
			return fmt.Errorf("read zone-b's versioning of the bucket before laying a null delete marker: %w", err)
		}
		if status == "" {
			a.forgetVersioning(op.GetBucket())
			return fmt.Errorf("bucket %s is not versioned on zone-b yet (its metadata is behind): the null delete marker waits (retried)", op.GetBucket())
		}
	}
	err = dst.PutDeleteMarker(ctx, op.GetBucket(), op.GetKey(), op.GetOwner(), op.GetVersionId(), op.GetVersionedEpoch())
	if errors.Is(err, rgwobj.ErrMarkerDeclined) {
		return a.markerDeclined(ctx, op, err)
	}
	if err != nil {
		return err
	}
	a.cfg.Metrics.objects.WithLabelValues("delete_marker").Inc()
	return nil
}

// parkedLevel says whether err parks its op (kept for retry and shown, not
// holding the later ops of its key: the destination gateway will not take
// it as it is) and the level it is logged at: Error, but Warn for a null
// version whose suspension zone-b never showed, parked again at every retry
// until zone-b's bucket is suspended.
func parkedLevel(err error) (slog.Level, bool) {
	switch {
	case errors.Is(err, errNullSuspensionMissed):
		return slog.LevelWarn, true
	case errors.Is(err, errMarkerOverMarker), errors.Is(err, errNullWouldDuplicate):
		return slog.LevelError, true
	}
	return 0, false
}

// errMarkerOverMarker: zone-b's gateway declined a delete marker because
// the key's current entry there is a delete marker and the new one
// replaces no null version (FACTS.md section 22). Retried, it would be
// declined again while holding every later op of the key.
var errMarkerOverMarker = errors.New("zone-b's gateway lays no delete marker over a key whose current entry is a delete marker " +
	"unless it replaces a null version (FACTS.md section 22): this non-current delete marker of the source stays missing on zone-b; " +
	"the key reads as deleted on both")

// markerDeclined says why the gateway declined a delete marker (err): over
// a delete marker, errMarkerOverMarker (parked); else err, retried.
func (a *Applier) markerDeclined(ctx context.Context, op *v1.ObjectOp, err error) error {
	cur, found, lerr := a.cfg.Objects.LatestInBucket(ctx, op.GetBucket(), op.GetKey())
	switch {
	case lerr != nil:
		return fmt.Errorf("%w; and reading zone-b's current entry of the key: %v", err, lerr)
	case found && cur.DeleteMarker:
		if done, werr := a.nullMarkerOverMarker(ctx, op, cur); werr != nil || done {
			return werr
		}
		return fmt.Errorf("%w (zone-b's current entry is delete marker %q, epoch %d)", errMarkerOverMarker, cur.VersionID, cur.VersionedEpoch)
	}
	return fmt.Errorf("%w, and zone-b's current entry of the key is not a delete marker (%+v): cause unknown, retried", err, cur)
}

// nullMarkerOverMarker lays a null delete marker zone-b declined over its
// current delete marker cur: zone-b lays one only to replace a null version
// (FACTS.md section 22), so a null version is written first — empty, with
// an epoch below cur's, so it is never current — and the marker replaces
// it, as on the source (FACTS.md section 29). Only in a bucket zone-b
// shows suspended (enabled, zone-b would not store it as the null
// version); done false: not possible (parked by the caller).
func (a *Applier) nullMarkerOverMarker(ctx context.Context, op *v1.ObjectOp, cur rgwobj.ListEntry) (bool, error) {
	if op.GetVersionId() != "null" || cur.VersionedEpoch < 2 || op.GetVersionedEpoch() <= cur.VersionedEpoch {
		return false, nil
	}
	status, err := a.bucketVersioning(ctx, op.GetBucket())
	if err != nil {
		return false, fmt.Errorf("read zone-b's versioning before laying a null delete marker over a delete marker: %w", err)
	}
	if status != "Suspended" {
		return false, nil
	}
	dst := a.cfg.Objects
	info := rgwobj.ObjectInfo{Bucket: op.GetBucket(), Key: op.GetKey(), Owner: op.GetOwner(), VersionID: "null"}
	if _, err := dst.Put(ctx, info, bytes.NewReader(nil), cur.VersionedEpoch-1); err != nil {
		return false, fmt.Errorf("write the null version the null delete marker replaces (FACTS.md section 29): %w", err)
	}
	if err := dst.PutDeleteMarker(ctx, op.GetBucket(), op.GetKey(), op.GetOwner(), "null", op.GetVersionedEpoch()); err != nil {
		// The null version written stays below the current marker (not
		// current); a retry's marker replaces it.
		return false, fmt.Errorf("lay the null delete marker over the null version written for it: %w", err)
	}
	a.cfg.Metrics.objects.WithLabelValues("delete_marker").Inc()
	a.log.Info("null delete marker laid over a delete marker by way of a null version (FACTS.md section 29)",
		"bucket", op.GetBucket(), "object", op.GetKey(), "epoch", op.GetVersionedEpoch(), "below", cur.VersionID)
	return true, nil
}
