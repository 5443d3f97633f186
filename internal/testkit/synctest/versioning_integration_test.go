//go:build integration

package synctest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
)

// setVersioning sets bucket b's versioning on the zone c talks to.
func setVersioning(t *testing.T, c *s3.Client, b string, s types.BucketVersioningStatus) {
	t.Helper()
	_, err := c.PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{Bucket: aws.String(b),
		VersioningConfiguration: &types.VersioningConfiguration{Status: s}})
	require.NoError(t, err)
}

// A bucket's whole versioning history written before rgwsync starts
// (issue #11, hole 2): objects of the bucket before it was ever versioned
// (null versions), versions over some of them, a suspension with writes
// (null versions replacing others, one over a version), versioning enabled
// again and more versions. The metadata sync gives zone-b the bucket as it
// is now (Enabled), so the full sync meets null versions that zone-b
// cannot store while its bucket is enabled (FACTS.md sections 9, 20): they
// were parked, never written, and the zones differed for good.
func TestFullSyncOfAVersioningHistory(t *testing.T) {
	e, p, uid, c := newOwnedEnv(t, "vh")
	b := p + "-b"
	e.Bucket(c, b)
	put := func(k, body string) { PutObject(t, c, b, k, []byte(body), nil) }
	for i := range 3 {
		put(fmt.Sprintf("pre/%d", i), fmt.Sprintf("written before versioning %d", i))
	}
	setVersioning(t, c, b, types.BucketVersioningStatusEnabled)
	put("pre/0", "a version over the first null version")
	put("ver/a", "a version")
	setVersioning(t, c, b, types.BucketVersioningStatusSuspended)
	put("pre/1", "a null version replacing the one from before versioning")
	put("ver/a", "a null version over a version")
	put("sus/new", "a key with only a null version")
	setVersioning(t, c, b, types.BucketVersioningStatusEnabled)
	put("pre/1", "a version over the second null version")
	put("ver/b", "another version")
	// Delete markers between versions, and a null one over a named one:
	// listed newest first, they were sent so, and a marker laid below
	// the one zone-b had already was declined (FACTS.md §22, §25).
	del := func(k string) {
		_, err := c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
		require.NoError(t, err)
	}
	put("dm/k", "v1")
	del("dm/k")
	put("dm/k", "v2")
	del("dm/k")
	setVersioning(t, c, b, types.BucketVersioningStatusSuspended)
	del("dm/k") // a null marker over the named one
	setVersioning(t, c, b, types.BucketVersioningStatusEnabled)

	e.StartExporter(dataOn)
	e.StartApplier("a1")
	e.WaitObjectsEqual(3*time.Minute, uid, b)
}

// A suspension the metadata sync never sees (issue #11, hole 2): the
// source's bucket is suspended for a few milliseconds, one write in
// between, and enabled again. zone-b's bucket is enabled all along (the
// metadata sync copies the current blob), and the null version written in
// that moment was parked for good (make chaos seed 1 extended: nearly all
// of its ~30 differences).
func TestDataSyncBriefSuspension(t *testing.T) {
	e, p, uid, c := newOwnedEnv(t, "bs")
	e.StartExporter(dataOn)
	e.StartApplier("a1")
	b := p + "-b"
	e.Bucket(c, b)
	setVersioning(t, c, b, types.BucketVersioningStatusEnabled)
	PutObject(t, c, b, "k", []byte("first version"), nil)
	PutObject(t, c, b, "other", []byte("a version of another key"), nil)
	e.WaitObjectsEqual(2*time.Minute, uid, b)

	for i := range 3 {
		setVersioning(t, c, b, types.BucketVersioningStatusSuspended)
		PutObject(t, c, b, "k", []byte(fmt.Sprintf("null version %d", i)), nil)
		PutObject(t, c, b, fmt.Sprintf("fresh/%d", i), []byte("only a null version"), nil)
		if i == 2 {
			// Over the inline limit (1 MiB): its body comes in chunks.
			PutObject(t, c, b, "big", RandomBytes(1<<20+300<<10), nil)
		}
		setVersioning(t, c, b, types.BucketVersioningStatusEnabled)
		PutObject(t, c, b, "other", []byte(fmt.Sprintf("version %d of another key", i)), nil)
		if i == 1 {
			PutObject(t, c, b, "k", []byte("a version over the null version"), nil)
		}
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)
}
