package workload

// The operations of issue #11 (Config.Extended): tag and ACL changes of
// versions, versioning toggles, reshards and a tenant's bucket.

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
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
	cmd := exec.CommandContext(ctx, (&labtest.Lab{Dir: w.cfg.LabDir}).RadosgwAdmin(), "-c", filepath.Join(w.cfg.LabDir, "ceph.conf"), "-n", "client.admin",
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

// TenantBucket is a tenant's bucket and the user ("tenant$name") that owns it.
type TenantBucket struct{ User, Bucket string }

// TenantBuckets are the tenants' buckets the workload writes (Extended).
func (w *Workload) TenantBuckets() []TenantBucket {
	if w.tenant == nil {
		return nil
	}
	return []TenantBucket{{User: w.tenantUser, Bucket: w.tenantBucket}}
}

// newTenant creates a tenant's user and its bucket (named like the plain
// ones: the tenant keeps it apart). A tenant's keys differ in every form
// the gateway's admin API takes (user "tenant$name", bucket
// "tenant/name", index shards "name:instance:shard" with the tenant in
// the path: issue #11, hole 1).
func (w *Workload) newTenant(ctx context.Context) error {
	tenant := "t" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, w.cfg.Prefix)
	w.tenantUser = tenant + "$" + w.cfg.Prefix + "-tenant"
	c, err := w.newUser(ctx, w.tenantUser)
	if err != nil {
		return err
	}
	w.tenant = c
	w.tenantBucket = w.cfg.Prefix + "-tb"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(w.tenantBucket)}); err != nil {
		return fmt.Errorf("create bucket %s of %s: %w", w.tenantBucket, w.tenantUser, err)
	}
	w.record(Record{Op: OpUser, Key: w.tenantUser})
	w.record(Record{Op: OpBucket, Bucket: tenant + "/" + w.tenantBucket})
	return nil
}

// tenantObject writes a new object to the tenant's bucket, overwrites one
// or deletes one.
func (w *Workload) tenantObject(ctx context.Context, op string) error {
	b := w.tenantBucket
	r := w.rng.IntN(10)
	if len(w.tkeys) == 0 || r < 6 {
		k := w.newKey()
		n := w.smallSize()
		if _, err := w.tenant.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: bytes.NewReader(w.body(n))}); err != nil {
			return fmt.Errorf("put %s/%s of %s: %w", b, k, w.tenantUser, err)
		}
		w.tkeys = append(w.tkeys, k)
		w.record(Record{Op: op, Bucket: b, Key: k, Size: n})
		return nil
	}
	i := w.rng.IntN(len(w.tkeys))
	k := w.tkeys[i]
	if r < 8 {
		n := w.smallSize()
		if _, err := w.tenant.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: bytes.NewReader(w.body(n))}); err != nil {
			return fmt.Errorf("overwrite %s/%s of %s: %w", b, k, w.tenantUser, err)
		}
		w.record(Record{Op: op, Bucket: b, Key: k, Size: n})
		return nil
	}
	if _, err := w.tenant.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)}); err != nil {
		return fmt.Errorf("delete %s/%s of %s: %w", b, k, w.tenantUser, err)
	}
	w.tkeys = slices.Delete(w.tkeys, i, i+1)
	w.record(Record{Op: op, Bucket: b, Key: k})
	return nil
}
