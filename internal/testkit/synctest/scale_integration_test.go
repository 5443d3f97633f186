//go:build integration

package synctest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// The full sync of a zone with many filled bucket shards must finish. With
// more shards in full sync than the stream's byte window holds pages, every
// data worker used to block acquiring window bytes while it held bytes only
// it could release (by reading its own acks): the exporter stopped for good
// after ~40 batches, silently (issue #15). 7 buckets × 11 index shards = 77
// bucket shards of ~160 small objects each, written before the services
// start.
//
// A third of the way through, the destination answers the applier's lease
// renewals too late for five lease lengths while everything else goes on,
// as a loaded CI machine once did: leases expire while the applier is busy
// applying and are taken again, and the sync must pick up where it was
// (CI saw it stop for good at 12162 of 12320 objects after such a mass
// expiry).
func TestFullSyncManyFilledBucketShards(t *testing.T) {
	const buckets, perBucket, size = 7, 11 * 160, 4 << 10
	e, p, uid, c := newOwnedEnv(t, "fs")
	var names []string
	for i := range buckets {
		b := fmt.Sprintf("%s-b%d", p, i)
		e.Bucket(c, b)
		names = append(names, b)
	}
	putMany(t, c, names, perBucket, size)

	var lateLocks atomic.Bool
	e.ProxyDest(func(_ http.ResponseWriter, r *http.Request) bool {
		if lateLocks.Load() && r.URL.Path == "/admin/log" && r.URL.Query().Has("lock") {
			time.Sleep(1500 * time.Millisecond) // past the lock request's timeout
		}
		return false
	})

	metrics := FreeAddr(t)
	e.StartExporter(dataOn + "metrics_listen: " + metrics + "\n")
	a1 := e.StartApplier("a1")

	// Progress, or a stall: the object count must keep moving until the
	// zones are equal (a deadlock fails here in a minute, not at a timeout).
	total := float64(buckets * perBucket)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled := make(chan string, 1)
	go func() {
		last, since := -1.0, time.Now()
		for ctx.Err() == nil {
			v := metricValue(t, metrics, "rgwsync_exporter_objects_applied_total")
			if v != last {
				last, since = v, time.Now()
			} else if v < total && time.Since(since) > 60*time.Second {
				stalled <- fmt.Sprintf("no object applied for 60 s at %.0f of %.0f objects", v, total)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && metricValue(t, metrics, "rgwsync_exporter_objects_applied_total") < total/3 {
			time.Sleep(200 * time.Millisecond)
		}
		lateLocks.Store(true)
		t.Logf("lease renewals answered late for %s from %.0f objects", 5*e.LeaseLength,
			metricValue(t, metrics, "rgwsync_exporter_objects_applied_total"))
		time.Sleep(5 * e.LeaseLength)
		lateLocks.Store(false)
		for ctx.Err() == nil && metricValue(t, metrics, "rgwsync_exporter_objects_applied_total") < total {
			time.Sleep(time.Second)
		}
	}()
	start := time.Now()
	select {
	case msg := <-stalled:
		t.Fatalf("full sync stalled: %s", msg)
	case <-done:
	case <-time.After(8 * time.Minute):
		t.Fatalf("full sync of %.0f objects not done after 8 minutes", total)
	}
	t.Logf("full sync of %.0f objects in %d bucket shards: %s (%.0f obj/s)", total, buckets*11,
		time.Since(start).Round(time.Second), total/time.Since(start).Seconds())
	// The fault did its part: leases expired while the applier was busy.
	expired := strings.Count(a1.Log(), `reason="expired before renewal"`)
	t.Logf("leases expired before renewal: %d", expired)
	require.Positive(t, expired, "the slowed renewals expired no lease: the test did not exercise the mass expiry")
	// Every key with its size and ETag (the full verifier's per-object
	// tag and ACL reads take minutes at this size; TestDataSyncObjects
	// checks those).
	src, dst := UserOn(e.Lab.ZoneA, uid), UserOn(e.Lab.ZoneB, uid)
	for _, b := range names {
		require.Equal(t, listing(t, src, b), listing(t, dst, b), "bucket %s differs after the full sync", b)
	}
}

// listing maps every key of a bucket to its size and ETag.
func listing(t *testing.T, c *s3.Client, bucket string) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		for _, o := range page.Contents {
			out[*o.Key] = fmt.Sprintf("%d %s", *o.Size, *o.ETag)
		}
	}
	return out
}

// putMany writes n objects of size bytes into each bucket, 32 at a time.
func putMany(t *testing.T, c *s3.Client, buckets []string, n, size int) {
	t.Helper()
	type job struct{ bucket, key string }
	jobs := make(chan job)
	body := RandomBytes(size)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &j.bucket, Key: &j.key, Body: bytes.NewReader(body)})
				cancel()
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("put %s/%s: %w", j.bucket, j.key, err) })
				}
			}
		}()
	}
	for i := range n {
		for _, b := range buckets {
			jobs <- job{b, fmt.Sprintf("o/%05d", i)}
		}
	}
	close(jobs)
	wg.Wait()
	require.NoError(t, firstErr)
}
