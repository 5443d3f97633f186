package main

// The copy floor: a plain copier's metadata and object copies, and the lag
// probe.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// copyBucketMetadata makes the source bucket exist on the destination the
// way metadata sync does: PUT its bucket.instance, then its bucket entry.
func copyBucketMetadata(ctx context.Context, src, dst *rgwadmin.Client, bucket string) error {
	blob, err := src.GetMetadata(ctx, "bucket", bucket)
	if err != nil {
		return err
	}
	id, err := rgwlog.BucketID(blob)
	if err != nil || id == "" {
		return fmt.Errorf("bucket %s: no bucket_id in its metadata (%v)", bucket, err)
	}
	inst := bucket + ":" + id
	ib, err := src.GetMetadata(ctx, "bucket.instance", inst)
	if err != nil {
		return err
	}
	if _, err := dst.PutMetadata(ctx, "bucket.instance", inst, ib, ""); err != nil {
		return fmt.Errorf("put bucket.instance %s: %w", inst, err)
	}
	if _, err := dst.PutMetadata(ctx, "bucket", bucket, blob, ""); err != nil {
		return fmt.Errorf("put bucket %s: %w", bucket, err)
	}
	return nil
}

func copyUserMetadata(ctx context.Context, src, dst *rgwadmin.Client, uid string) error {
	blob, err := src.GetMetadata(ctx, "user", uid)
	if err != nil {
		return err
	}
	_, err = dst.PutMetadata(ctx, "user", uid, blob, "")
	return err
}

// copyFloorSmall is the plain copier: list each source bucket, then 16
// goroutines GET from the source and PUT to the destination bucket.
func copyFloorSmall(ctx context.Context, src, dst *s3.Client, pairs [][2]string, workers int) (int, error) {
	type job struct{ from, to, key string }
	var jobs []job
	for _, p := range pairs {
		objs, err := list(ctx, src, p[0])
		if err != nil {
			return 0, err
		}
		for k := range objs {
			jobs = append(jobs, job{p[0], p[1], k})
		}
	}
	err := parallel(ctx, workers, len(jobs), func(ctx context.Context, i int) error {
		j := jobs[i]
		g, err := src.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(j.from), Key: aws.String(j.key)})
		if err != nil {
			return fmt.Errorf("copy floor: GET %s/%s: %w", j.from, j.key, err)
		}
		body, err := io.ReadAll(g.Body)
		g.Body.Close()
		if err != nil {
			return err
		}
		_, err = dst.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(j.to), Key: aws.String(j.key),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))})
		if err != nil {
			return fmt.Errorf("copy floor: PUT %s/%s: %w", j.to, j.key, err)
		}
		return nil
	})
	return len(jobs), err
}

// copyFloorLarge copies large objects part by part: ranged GETs of
// partSize from the source, UploadPart to the destination, workers parts
// at a time over all objects.
func copyFloorLarge(ctx context.Context, src, dst *s3.Client, from, to string, objs map[string]objInfo, partSize int64, workers int) (int64, error) {
	type part struct {
		key      string
		n        int32
		off, len int64
	}
	var parts []part
	uploads := map[string]*string{}
	done := map[string][]types.CompletedPart{}
	var mu sync.Mutex
	var total int64
	for k, o := range objs {
		up, err := dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(to), Key: aws.String(k)})
		if err != nil {
			return 0, fmt.Errorf("copy floor: create upload %s/%s: %w", to, k, err)
		}
		uploads[k] = up.UploadId
		np := int((o.Size + partSize - 1) / partSize)
		done[k] = make([]types.CompletedPart, np)
		for i := range np {
			parts = append(parts, part{k, int32(i + 1), int64(i) * partSize, min(partSize, o.Size-int64(i)*partSize)})
		}
		total += o.Size
	}
	err := parallel(ctx, workers, len(parts), func(ctx context.Context, i int) error {
		p := parts[i]
		g, err := src.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(from), Key: aws.String(p.key),
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", p.off, p.off+p.len-1))})
		if err != nil {
			return fmt.Errorf("copy floor: GET %s/%s part %d: %w", from, p.key, p.n, err)
		}
		body, err := io.ReadAll(g.Body)
		g.Body.Close()
		if err != nil {
			return err
		}
		if int64(len(body)) != p.len {
			return fmt.Errorf("copy floor: short read of %s part %d", p.key, p.n)
		}
		up, err := dst.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(to), Key: aws.String(p.key), UploadId: uploads[p.key],
			PartNumber: aws.Int32(p.n), Body: bytes.NewReader(body), ContentLength: aws.Int64(p.len)})
		if err != nil {
			return fmt.Errorf("copy floor: upload part %d of %s/%s: %w", p.n, to, p.key, err)
		}
		mu.Lock()
		done[p.key][p.n-1] = types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(p.n)}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, err
	}
	for k, ps := range done {
		_, err := dst.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(to), Key: aws.String(k),
			UploadId: uploads[k], MultipartUpload: &types.CompletedMultipartUpload{Parts: ps}})
		if err != nil {
			return 0, fmt.Errorf("copy floor: complete %s/%s: %w", to, k, err)
		}
	}
	return total, nil
}

// lag writes one object of size bytes every interval for dur into bucket,
// and measures for each the time from the end of its PUT until a HEAD on
// the destination finds it (polled every 5 ms).
func lag(ctx context.Context, src, dst *s3.Client, bucket string, dur, interval time.Duration, size int) ([]time.Duration, error) {
	var (
		mu   sync.Mutex
		lags []time.Duration
		wg   sync.WaitGroup
		errs []error
	)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.Now().Add(dur)
	for i := 0; time.Now().Before(end); i++ {
		key := fmt.Sprintf("lag/%05d", i)
		_, err := src.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(randomBytes(size)), ContentLength: aws.Int64(int64(size))})
		if err != nil {
			return nil, fmt.Errorf("lag: put %s: %w", key, err)
		}
		written := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := written.Add(90 * time.Second)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				_, err := dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
				if err == nil {
					mu.Lock()
					lags = append(lags, time.Since(written))
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			errs = append(errs, fmt.Errorf("lag: %s not on the destination 90 s after its write", key))
			mu.Unlock()
		}()
		<-tick.C
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	return lags, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
