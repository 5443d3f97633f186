package workload

// The operations on the versioned bucket: versions, delete markers, version
// deletes.

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// versionedPut writes a version of a new or an existing key of the versioned bucket.
func (w *Workload) versionedPut(ctx context.Context, op string) error {
	k := fmt.Sprintf("v/k%05d", w.n)
	if op == OpVersionedOverw && len(w.vkeys) > 0 {
		k = w.vkeys[w.rng.IntN(len(w.vkeys))]
	} else {
		w.vkeys = append(w.vkeys, k)
	}
	n := w.smallSize()
	v, err := w.put(ctx, w.versioned, k, w.body(n))
	if err != nil {
		return err
	}
	w.record(Record{Op: op, Bucket: w.versioned, Key: k, Version: v, Size: n})
	return nil
}

// deleteMarker deletes a versioned key (a delete marker).
func (w *Workload) deleteMarker(ctx context.Context, op string) error {
	if len(w.vkeys) == 0 {
		return w.putNew(ctx)
	}
	k := w.vkeys[w.rng.IntN(len(w.vkeys))]
	out, err := w.owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.versioned), Key: aws.String(k)})
	if err != nil {
		return fmt.Errorf("delete marker %s/%s: %w", w.versioned, k, err)
	}
	w.record(Record{Op: op, Bucket: w.versioned, Key: k, Version: aws.ToString(out.VersionId)})
	return nil
}

// deleteVersion deletes one version or delete marker of a versioned key.
func (w *Workload) deleteVersion(ctx context.Context, op string) error {
	if len(w.vkeys) == 0 {
		return w.putNew(ctx)
	}
	k := w.vkeys[w.rng.IntN(len(w.vkeys))]
	vs, err := w.owner.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(w.versioned), Prefix: aws.String(k)})
	if err != nil {
		return fmt.Errorf("list versions %s/%s: %w", w.versioned, k, err)
	}
	var ids []string
	for _, v := range vs.Versions {
		if aws.ToString(v.Key) == k {
			ids = append(ids, aws.ToString(v.VersionId))
		}
	}
	for _, m := range vs.DeleteMarkers {
		if aws.ToString(m.Key) == k {
			ids = append(ids, aws.ToString(m.VersionId))
		}
	}
	if len(ids) == 0 {
		return w.putNew(ctx)
	}
	sort.Strings(ids) // listing order is the zone's; the choice must be the seed's
	id := ids[w.rng.IntN(len(ids))]
	if _, err := w.owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.versioned), Key: aws.String(k),
		VersionId: aws.String(id)}); err != nil {
		return fmt.Errorf("delete version %s/%s@%s: %w", w.versioned, k, id, err)
	}
	w.record(Record{Op: op, Bucket: w.versioned, Key: k, Version: id})
	return nil
}
