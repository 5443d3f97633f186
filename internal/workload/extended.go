package workload

// The operations of issue #11 (Config.Extended): tag and ACL changes of
// versions, versioning toggles and reshards.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// versionAttrs sets or removes the tags, or sets the canned ACL, of one
// version (current or older) of a key of the versioned bucket.
func (w *Workload) versionAttrs(ctx context.Context, op string) error {
	if len(w.vkeys) == 0 {
		return w.putNew(ctx)
	}
	k := w.vkeys[w.rng.IntN(len(w.vkeys))]
	id, err := w.someVersion(ctx, k)
	if err != nil {
		return err
	}
	if id == "" {
		return w.putNew(ctx)
	}
	vid := aws.String(id)
	if op == OpVersionTags {
		if w.rng.IntN(4) == 0 {
			_, err = w.owner.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: aws.String(w.versioned), Key: aws.String(k), VersionId: vid})
		} else {
			_, err = w.owner.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String(w.versioned), Key: aws.String(k), VersionId: vid,
				Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("t"), Value: aws.String(fmt.Sprintf("n%d", w.n))}}}})
		}
	} else {
		acl := types.ObjectCannedACLPublicRead
		if w.rng.IntN(2) == 0 {
			acl = types.ObjectCannedACLPrivate
		}
		_, err = w.owner.PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String(w.versioned), Key: aws.String(k), VersionId: vid, ACL: acl})
	}
	if err != nil {
		return fmt.Errorf("%s %s/%s@%s: %w", op, w.versioned, k, id, err)
	}
	w.record(Record{Op: op, Bucket: w.versioned, Key: k, Version: id})
	return nil
}

// toggleVersioning suspends the versioned bucket's versioning, or enables
// it again.
func (w *Workload) toggleVersioning(ctx context.Context, op string) error {
	status := types.BucketVersioningStatusSuspended
	if w.suspended {
		status = types.BucketVersioningStatusEnabled
	}
	if _, err := w.owner.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(w.versioned),
		VersioningConfiguration: &types.VersioningConfiguration{Status: status}}); err != nil {
		return fmt.Errorf("versioning %s on %s: %w", status, w.versioned, err)
	}
	w.suspended = !w.suspended
	w.record(Record{Op: op, Bucket: w.versioned, Key: string(status)})
	return nil
}

// reshard reshards a plain bucket to 2..23 index shards (radosgw-admin).
func (w *Workload) reshard(ctx context.Context, op string) error {
	b := w.randomBucket()
	n := 2 + w.rng.IntN(22)
	cmd := exec.CommandContext(ctx, "radosgw-admin", "-c", filepath.Join(w.cfg.LabDir, "ceph.conf"), "-n", "client.admin",
		"--rgw-zone="+w.cfg.Zone, "bucket", "reshard", "--bucket="+b, fmt.Sprintf("--num-shards=%d", n), "--yes-i-really-mean-it")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("radosgw-admin bucket reshard %s: %v\n%s", b, err, out)
	}
	w.record(Record{Op: op, Bucket: b, Size: n})
	return nil
}

// someVersion picks one version (not a delete marker) of key k of the
// versioned bucket, by the seed: "" when it has none.
func (w *Workload) someVersion(ctx context.Context, k string) (string, error) {
	vs, err := w.owner.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(w.versioned), Prefix: aws.String(k)})
	if err != nil {
		return "", fmt.Errorf("list versions %s/%s: %w", w.versioned, k, err)
	}
	var ids []string
	for _, v := range vs.Versions {
		if aws.ToString(v.Key) == k {
			ids = append(ids, aws.ToString(v.VersionId))
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	sort.Strings(ids) // listing order is the zone's; the choice must be the seed's
	return ids[w.rng.IntN(len(ids))], nil
}
