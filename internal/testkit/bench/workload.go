package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

var httpClient = rgwadmin.NewHTTPClient()

// s3Client is a path-style client on endpoint with the keys (the shared
// HTTP client keeps 64 idle connections per host and quick ACKs).
func s3Client(endpoint, ak, sk string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		HTTPClient:   httpClient,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: ak, SecretAccessKey: sk}, nil
		}),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// user is an S3 user made by the benchmark on zone-a.
type user struct{ uid, ak, sk string }

func newUser(uid string) user {
	return user{uid: uid, ak: strings.ToUpper(strings.NewReplacer("-", "", "_", "").Replace(uid)) + "AK", sk: uid + "-secret"}
}

func (u user) on(endpoint string) *s3.Client { return s3Client(endpoint, u.ak, u.sk) }

// emptySHA256 is the SHA-256 of an empty body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// createUsers makes users on the master with the admin API
// (PUT /admin/user), 8 at a time.
func createUsers(ctx context.Context, endpoint string, users []user) error {
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: sysAK, SecretAccessKey: sysSK}
	return parallel(ctx, 8, len(users), func(ctx context.Context, i int) error {
		u := users[i]
		q := url.Values{"uid": {u.uid}, "display-name": {u.uid}, "access-key": {u.ak}, "secret-key": {u.sk}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, endpoint+"/admin/user?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
		if err := signer.SignHTTP(ctx, creds, req, emptySHA256, "s3", "us-east-1", time.Now().UTC()); err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("create user %s: %s: %s", u.uid, resp.Status, body)
		}
		return nil
	})
}

// parallel runs f(0..n-1) on k goroutines; the first error cancels the rest.
func parallel(ctx context.Context, k, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(k, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

func createBuckets(ctx context.Context, c func(i int) *s3.Client, names []string) error {
	return parallel(ctx, 16, len(names), func(ctx context.Context, i int) error {
		_, err := c(i).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(names[i])})
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", names[i], err)
		}
		return nil
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// putSmall writes perBucket objects of size bytes into each bucket, 16 at a time.
func putSmall(ctx context.Context, c *s3.Client, buckets []string, perBucket, size int) error {
	n := len(buckets) * perBucket
	return parallel(ctx, 16, n, func(ctx context.Context, i int) error {
		b, k := buckets[i%len(buckets)], fmt.Sprintf("o/%05d", i/len(buckets))
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k),
			Body: bytes.NewReader(randomBytes(size)), ContentLength: aws.Int64(int64(size))})
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", b, k, err)
		}
		return nil
	})
}

// putMultipart writes a size-byte object in partSize parts, 4 parts at a time.
func putMultipart(ctx context.Context, c *s3.Client, bucket, key string, size, partSize int64) error {
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("create upload %s/%s: %w", bucket, key, err)
	}
	nparts := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)
	err = parallel(ctx, 4, nparts, func(ctx context.Context, i int) error {
		n := min(partSize, size-int64(i)*partSize)
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(randomBytes(int(n))), ContentLength: aws.Int64(n)})
		if err != nil {
			return fmt.Errorf("upload part %d of %s/%s: %w", i+1, bucket, key, err)
		}
		parts[i] = types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(int32(i + 1))}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return fmt.Errorf("complete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// objInfo is what a listing says of an object.
type objInfo struct {
	Size int64
	ETag string
}

// list returns every object of the bucket (an error when the bucket or
// the user is not there yet).
func list(ctx context.Context, c *s3.Client, bucket string) (map[string]objInfo, error) {
	out := map[string]objInfo{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1000)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = objInfo{Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag)}
		}
	}
	return out, nil
}

// waitListed polls the destination's listings until every bucket holds
// want[bucket] objects of the expected sizes (a multipart object shows in
// a listing only once complete). It returns when they match: the sync is
// timed, not the verification.
func waitListed(ctx context.Context, dst *s3.Client, want map[string]map[string]objInfo, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := map[string]bool{}
	for b := range want {
		pending[b] = true
	}
	var lastErr error
	for {
		for b := range pending {
			got, err := list(ctx, dst, b)
			if err != nil {
				lastErr = err
				continue
			}
			ok := len(got) == len(want[b])
			for k, w := range want[b] {
				if g, found := got[k]; !ok || !found || g.Size != w.Size {
					ok = false
					break
				}
			}
			if ok {
				delete(pending, b)
			} else {
				lastErr = fmt.Errorf("bucket %s: %d of %d objects listed", b, len(got), len(want[b]))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destination not complete after %s (%d buckets pending): %v", timeout, len(pending), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkSample compares size and ETag of up to n objects of want (all when
// n <= 0) with HEAD on the destination. A difference is an error.
func checkSample(ctx context.Context, dst *s3.Client, want map[string]map[string]objInfo, n int) (int, error) {
	type bk struct{ b, k string }
	var all []bk
	for b, objs := range want {
		for k := range objs {
			all = append(all, bk{b, k})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].b+"/"+all[i].k < all[j].b+"/"+all[j].k })
	if n > 0 && n < len(all) {
		for i := range n { // a random sample: Fisher-Yates on the first n
			j, _ := rand.Int(rand.Reader, big.NewInt(int64(len(all)-i)))
			all[i], all[i+int(j.Int64())] = all[i+int(j.Int64())], all[i]
		}
		all = all[:n]
	}
	err := parallel(ctx, 16, len(all), func(ctx context.Context, i int) error {
		x := all[i]
		h, err := dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(x.b), Key: aws.String(x.k)})
		if err != nil {
			return fmt.Errorf("verify: HEAD %s/%s on the destination: %w", x.b, x.k, err)
		}
		w := want[x.b][x.k]
		if aws.ToInt64(h.ContentLength) != w.Size || aws.ToString(h.ETag) != w.ETag {
			return fmt.Errorf("verify: %s/%s: destination size %d ETag %s, source size %d ETag %s",
				x.b, x.k, aws.ToInt64(h.ContentLength), aws.ToString(h.ETag), w.Size, w.ETag)
		}
		return nil
	})
	return len(all), err
}

// sourceState lists the buckets on the source.
func sourceState(ctx context.Context, src *s3.Client, buckets []string) (map[string]map[string]objInfo, error) {
	out := map[string]map[string]objInfo{}
	for _, b := range buckets {
		objs, err := list(ctx, src, b)
		if err != nil {
			return nil, fmt.Errorf("list source %s: %w", b, err)
		}
		out[b] = objs
	}
	return out, nil
}

// metadataKeys lists the metadata keys of section.
func metadataKeys(ctx context.Context, c *rgwadmin.Client, section string) ([]string, error) {
	var out []string
	marker := ""
	for {
		page, err := c.ListMetadataKeys(ctx, section, marker, 1000)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Keys...)
		if !page.Truncated || page.Marker == "" {
			return out, nil
		}
		marker = page.Marker
	}
}

// probeFew: with at most this many items missing, waitMetadata asks for
// each of them instead of listing every key of the zone.
const probeFew = 64

// waitMetadata polls the destination until it holds every user of uids,
// and every bucket of buckets with a bucket instance. Listing a zone's
// keys costs in proportion to its size: polled every 250 ms at 12,000
// items it loaded zone-b (and the OSD both zones share) more and more as
// the run grew, which is what the scale row measures. So while many items
// are missing the keys are listed at most a third of the time, and the
// last few are asked for one by one, every 250 ms, for the end time.
func waitMetadata(ctx context.Context, dst *rgwadmin.Client, uids, buckets []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	users, eps, insts := setOf(uids), setOf(buckets), setOf(buckets) // missing; insts by bucket name
	for {
		missing := len(users) + len(eps) + len(insts)
		if missing == 0 {
			return nil
		}
		t := time.Now()
		var err error
		if missing > probeFew {
			err = listFound(ctx, dst, users, eps, insts)
		} else {
			err = probeFound(ctx, dst, users, eps, insts)
		}
		wait := 250 * time.Millisecond
		if missing > probeFew {
			wait = max(wait, 2*time.Since(t))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metadata not complete after %s: %d users, %d buckets, %d bucket instances missing (last error: %v)",
				timeout, len(users), len(eps), len(insts), err)
		case <-time.After(wait):
		}
	}
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// listFound lists the sections with items missing and forgets the ones found.
func listFound(ctx context.Context, dst *rgwadmin.Client, users, eps, insts map[string]bool) error {
	bucketOf := func(k string) string { // "name:instance"
		if i := strings.LastIndex(k, ":"); i > 0 {
			return k[:i]
		}
		return ""
	}
	for _, sec := range []struct {
		name    string
		missing map[string]bool
		item    func(key string) string
	}{
		{"user", users, func(k string) string { return k }},
		{"bucket", eps, func(k string) string { return k }},
		{"bucket.instance", insts, bucketOf},
	} {
		if len(sec.missing) == 0 {
			continue
		}
		keys, err := metadataKeys(ctx, dst, sec.name)
		if err != nil {
			return err
		}
		for _, k := range keys {
			delete(sec.missing, sec.item(k))
		}
	}
	return nil
}

// probeFound asks for each missing item and forgets the ones found.
func probeFound(ctx context.Context, dst *rgwadmin.Client, users, eps, insts map[string]bool) error {
	var last error
	found := func(section, key string) bool {
		_, err := dst.GetMetadata(ctx, section, key)
		if err != nil && !errors.Is(err, rgwadmin.ErrNotFound) {
			last = err
		}
		return err == nil
	}
	for u := range users {
		if found("user", u) {
			delete(users, u)
		}
	}
	for b := range eps {
		if found("bucket", b) {
			delete(eps, b)
		}
	}
	for b := range insts {
		ep, err := dst.GetMetadata(ctx, "bucket", b)
		if err != nil {
			continue // the instance is written first, but its key is read from the entry point
		}
		id, err := rgwlog.BucketID(ep)
		if err != nil || id == "" {
			continue
		}
		if found("bucket.instance", b+":"+id) {
			delete(insts, b)
		}
	}
	return last
}

func shortHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
