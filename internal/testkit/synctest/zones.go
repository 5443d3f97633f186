package synctest

// What the tests do on the zones: users, buckets and objects on zone-a, and
// the waits until zone-b equals it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/verify"
)

// WaitMetadataEqual polls the verifier until the zones' metadata accepted
// by keep is equal, failing with every difference after timeout.
func (e *Env) WaitMetadataEqual(timeout time.Duration, keep func(section, key string) bool) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var diffs []verify.Diff
	var err error
	for {
		diffs, err = verify.Metadata(ctx, e.Src, e.Dst, rgwlog.DefaultSections, keep)
		if err == nil && len(diffs) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			if err != nil {
				e.T.Fatalf("verify: %v", err)
			}
			var b strings.Builder
			for _, d := range diffs {
				fmt.Fprintf(&b, "  %s\n", d)
			}
			e.T.Fatalf("metadata not equal after %s: %d differences:\n%s", timeout, len(diffs), b.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Prefix returns a keep function for keys that contain p (users, tenant
// users "tenant$uid", buckets "tenant/name", instances "name:id").
func Prefix(p string) func(section, key string) bool {
	return func(_, key string) bool { return strings.Contains(key, p) }
}

// User creates a user on zone-a with radosgw-admin and returns an S3 client
// for it. uid may be "tenant$name".
func (e *Env) User(uid, display string) *s3.Client {
	e.T.Helper()
	ak, sk := userKeys(uid)
	args := []string{"user", "create", "--display-name=" + display, "--access-key=" + ak, "--secret=" + sk}
	if tenant, name, ok := strings.Cut(uid, "$"); ok {
		args = append(args, "--tenant="+tenant, "--uid="+name)
	} else {
		args = append(args, "--uid="+uid)
	}
	e.Lab.Admin(e.T, "zone-a", args...)
	return labtest.S3(e.Lab.ZoneA, ak, sk)
}

// Bucket creates a bucket with the client.
func (e *Env) Bucket(c *s3.Client, name string) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		e.T.Fatalf("create bucket %s: %v", name, err)
	}
}

// RemoveBucket deletes an (empty) bucket.
func (e *Env) RemoveBucket(c *s3.Client, name string) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
		e.T.Fatalf("delete bucket %s: %v", name, err)
	}
}

// userKeys are the keys User gives uid.
func userKeys(uid string) (ak, sk string) {
	return strings.ToUpper(strings.NewReplacer("$", "", "-", "").Replace(uid)) + "AK", uid + "-secret-key"
}

// UserOn is an S3 client of a user made by User, on the given zone
// endpoint (the user's keys reach zone-b with the metadata sync).
func UserOn(endpoint, uid string) *s3.Client {
	ak, sk := userKeys(uid)
	return labtest.S3(endpoint, ak, sk)
}

// WaitObjectsEqual polls the object verifier on buckets (as seen by uid on
// both zones) until they are equal, failing with every difference.
func (e *Env) WaitObjectsEqual(timeout time.Duration, uid string, buckets ...string) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	src, dst := UserOn(e.Lab.ZoneA, uid), UserOn(e.Lab.ZoneB, uid)
	var diffs []verify.Diff
	var lastErr error
	lastReport := time.Now()
	for {
		diffs, lastErr = nil, nil
		for _, b := range buckets {
			d, err := verify.Objects(ctx, src, dst, b)
			if err != nil {
				lastErr = err
				break
			}
			diffs = append(diffs, d...)
		}
		if lastErr == nil && len(diffs) == 0 {
			return
		}
		if time.Since(lastReport) > 15*time.Second {
			lastReport = time.Now()
			e.T.Logf("objects not equal yet (%d differences, error %v); first: %v", len(diffs), lastErr, firstDiff(diffs))
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, d := range diffs {
				fmt.Fprintf(&b, "  %s\n", d)
			}
			e.T.Fatalf("objects not equal after %s (last error: %v): %d differences:\n%s", timeout, lastErr, len(diffs), b.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// PutObject writes an object on zone-a (mod may set headers, tags, ...).
func PutObject(t labtest.TB, c *s3.Client, bucket, key string, body []byte, mod func(*s3.PutObjectInput)) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}
	if mod != nil {
		mod(in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.PutObject(ctx, in)
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Multipart uploads an object in parts of the given sizes.
func Multipart(t labtest.TB, c *s3.Client, bucket, key string, parts ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ContentType: aws.String("application/x-test")})
	if err != nil {
		t.Fatalf("create multipart upload %s/%s: %v", bucket, key, err)
	}
	var done []types.CompletedPart
	for i, n := range parts {
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(RandomBytes(n))})
		if err != nil {
			t.Fatalf("upload part %d of %s/%s: %v", i+1, bucket, key, err)
		}
		done = append(done, types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		t.Fatalf("complete multipart upload %s/%s: %v", bucket, key, err)
	}
}

func firstDiff(d []verify.Diff) string {
	if len(d) == 0 {
		return "-"
	}
	return d[0].String()
}
