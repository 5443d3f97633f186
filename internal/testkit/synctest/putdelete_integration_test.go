//go:build integration

package synctest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// Objects written and deleted right away, while the replicator follows:
// every delete reaches the destination (no fault involved).
func TestPutThenDeleteNoFaults(t *testing.T) {
	e, uid, c, b := syncingBucket(t, "pd")
	ctx := context.Background()
	for i := range 150 {
		k := fmt.Sprintf("k%03d", i)
		PutObject(t, c, b, k, RandomBytes(200), nil)
		if i%3 != 0 {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
			require.NoError(t, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)
}

// Objects of an unversioned bucket that reached the destination through the
// bucket-index log (not the full sync, not in the same page as their
// delete), then deleted: every delete must remove them, and the destination
// index must hold plain entries only. Until session 2 the exporter sent the
// bilog entry's ver.epoch (the head object's RADOS version) as
// rgwx-versioned-epoch with version "null": zone-b then made each object an
// OLH with a null instance, which no DELETE removes — the "resurrected
// deletes" of the fault suite.
func TestDeleteAfterSyncedPut(t *testing.T) {
	e, uid, c, b := syncingBucket(t, "dp")
	ctx := context.Background()
	const n = 40
	// Round 1 may come by the bucket's full sync (it waits for the
	// metadata full sync); once it is on zone-b every index shard follows
	// its bilog, so round 2 (overwrites) comes by the bilog.
	for round := range 2 {
		for i := range n {
			PutObject(t, c, b, fmt.Sprintf("k%03d", i), RandomBytes(100+i+round), nil)
		}
		e.WaitObjectsEqual(2*time.Minute, uid, b)
	}

	var index []struct {
		Type string `json:"type"`
		Idx  string `json:"idx"`
	}
	require.NoError(t, json.Unmarshal([]byte(e.Lab.Admin(t, "zone-b", "bi", "list", "--bucket="+b)), &index))
	var versioned []string
	for _, en := range index {
		if en.Type != "plain" {
			versioned = append(versioned, en.Type+" "+strings.ToValidUTF8(en.Idx, "?"))
		}
	}
	require.Empty(t, versioned, "zone-b's index of an unversioned bucket has OLH/instance entries (objects written as versioned)")

	for i := range n {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(fmt.Sprintf("k%03d", i))})
		require.NoError(t, err)
	}
	e.WaitObjectsEqual(2*time.Minute, uid, b)
	lst, err := UserOn(e.Lab.ZoneB, uid).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b)})
	require.NoError(t, err)
	require.Empty(t, lst.Contents, "zone-b still lists deleted objects")
}

// syncingBucket is an owned env with one empty bucket (prefix-b), both
// services running and the metadata on zone-b.
func syncingBucket(t *testing.T, prefix string) (e *Env, uid string, c *s3.Client, b string) {
	t.Helper()
	e, p, uid, c := newOwnedEnv(t, prefix)
	b = p + "-b"
	e.Bucket(c, b)
	e.StartExporter(dataOn)
	e.StartApplier("a1")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	return e, uid, c, b
}
