//go:build integration

package rgwobj

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

var record = flag.Bool("record", false, "write the lab's answers into testdata/ for the unit tests")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	labtest.Stop()
	os.Exit(code)
}

// recorder keeps the last exchanges of the clients, for testdata.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	last []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil || !*record {
		return resp, err
	}
	// Only small answers are kept whole (Stat, listings, errors).
	if resp.ContentLength > 1<<20 || resp.ContentLength < 0 && !strings.Contains(req.URL.RawQuery, "versions") {
		return resp, nil
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		return nil, rerr
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	x := exchange{Method: req.Method, Path: req.URL.Opaque, Query: req.URL.RawQuery, Status: resp.StatusCode, Body: body,
		Header: map[string]string{}}
	for k := range resp.Header {
		x.Header[k] = resp.Header.Get(k)
	}
	r.mu.Lock()
	r.last = append(r.last, x)
	r.mu.Unlock()
	return resp, nil
}

// save writes the last exchange with this method and path whose query
// contains querySub.
func (r *recorder) save(t *testing.T, name, method, path, querySub string, extra map[string]any) {
	t.Helper()
	if !*record {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.last) - 1; i >= 0; i-- {
		x := r.last[i]
		if x.Method == method && x.Path == path && strings.Contains(x.Query, querySub) {
			x.Extra = extra
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(x))
			require.NoError(t, os.WriteFile(filepath.Join("testdata", name+".json"), buf.Bytes(), 0o644))
			t.Logf("recorded %s: %s %s?%s -> %d", name, x.Method, x.Path, x.Query, x.Status)
			return
		}
	}
	t.Fatalf("recorder: no %s %s?*%s* exchange", method, path, querySub)
}

type env struct {
	t        *testing.T
	ctx      context.Context
	lab      *labtest.Lab
	a, b     *Client
	adA, adB *rgwadmin.Client
	rec      *recorder
	uid      string
	user     *s3.Client
}

// pacificOnly skips a test that pins a behaviour of Pacific's gateway which
// the lab's release does not have (why: what it does instead, measured).
func pacificOnly(t *testing.T, why string) {
	t.Helper()
	if r := labtest.Get(t).Release(); r != "pacific" {
		t.Skipf("a fact of Pacific (16.2.15); on %s: %s", r, why)
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	lab := labtest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	rec := &recorder{base: rgwadmin.NewHTTPClient().Transport}
	hc := &http.Client{Transport: rec}
	mk := func(endpoint string) *Client {
		c, err := New(Config{Endpoint: endpoint, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey, HTTPClient: hc})
		require.NoError(t, err)
		return c
	}
	mkAdmin := func(endpoint string) *rgwadmin.Client {
		c, err := rgwadmin.New(rgwadmin.Config{Endpoint: endpoint, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey})
		require.NoError(t, err)
		return c
	}
	e := &env{t: t, ctx: ctx, lab: lab, a: mk(lab.ZoneA), b: mk(lab.ZoneB), adA: mkAdmin(lab.ZoneA), adB: mkAdmin(lab.ZoneB), rec: rec}
	e.uid = labtest.RandomName("u")
	ak, sk := strings.ToUpper(e.uid)+"AK", e.uid+"-secret"
	lab.Admin(t, "zone-a", "user", "create", "--uid="+e.uid, "--display-name=User "+e.uid, "--access-key="+ak, "--secret="+sk)
	e.copyMeta("user", e.uid)
	e.user = labtest.S3(lab.ZoneA, ak, sk)
	return e
}

// copyMeta copies one metadata entry from zone-a to zone-b, as the metadata
// sync does (no update-type: write it whatever zone-b has).
func (e *env) copyMeta(section, key string) []byte {
	e.t.Helper()
	blob, err := e.adA.GetMetadata(e.ctx, section, key)
	require.NoError(e.t, err)
	_, err = e.adB.PutMetadata(e.ctx, section, key, blob, "")
	require.NoError(e.t, err)
	return blob
}

// bucket creates a bucket on zone-a as the user and copies it to zone-b;
// it returns the bucket instance ("name:id").
func (e *env) bucket(name string, versioned bool) string {
	e.t.Helper()
	_, err := e.user.CreateBucket(e.ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	require.NoError(e.t, err)
	if versioned {
		_, err = e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(name),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
		require.NoError(e.t, err)
	}
	blob, err := e.adA.GetMetadata(e.ctx, "bucket", name)
	require.NoError(e.t, err)
	id, err := rgwlog.BucketID(blob)
	require.NoError(e.t, err)
	inst := name + ":" + id
	e.copyMeta("bucket.instance", inst)
	e.copyMeta("bucket", name)
	return inst
}

type putOpt func(*s3.PutObjectInput)

func (e *env) put(bucket, key string, body []byte, opts ...putOpt) string {
	e.t.Helper()
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}
	for _, o := range opts {
		o(in)
	}
	out, err := e.user.PutObject(e.ctx, in)
	require.NoError(e.t, err, "put %s/%s", bucket, key)
	return aws.ToString(out.VersionId)
}

// multipart uploads key with the given part sizes; it returns the data.
func (e *env) multipart(bucket, key string, sizes ...int64) []byte {
	e.t.Helper()
	up, err := e.user.CreateMultipartUpload(e.ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ContentType: aws.String("application/x-mp"), Metadata: map[string]string{"kind": "multipart"}})
	require.NoError(e.t, err)
	var all []byte
	var parts []s3types.CompletedPart
	for i, s := range sizes {
		data := randomBytes(int(s), int64(i)+int64(len(key)))
		all = append(all, data...)
		out, err := e.user.UploadPart(e.ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key),
			UploadId: up.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(data)})
		require.NoError(e.t, err)
		parts = append(parts, s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = e.user.CompleteMultipartUpload(e.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}})
	require.NoError(e.t, err)
	return all
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// listAll lists every entry of every index shard of a bucket instance.
func listAll(t *testing.T, ctx context.Context, c *Client, inst string, shards int) map[int][]ListEntry {
	t.Helper()
	out := map[int][]ListEntry{}
	for s := range shards {
		km, vm := "", ""
		for {
			page, err := c.ListShard(ctx, fmt.Sprintf("%s:%d", inst, s), km, vm, 3)
			require.NoError(t, err)
			out[s] = append(out[s], page.Entries...)
			if !page.Truncated {
				break
			}
			km, vm = page.NextKeyMarker, page.NextVersionMarker
		}
	}
	return out
}

// copyEntry copies one listed entry from zone-a to zone-b with this package.
func (e *env) copyEntry(bucket string, le ListEntry) {
	e.t.Helper()
	ctx := e.ctx
	if le.DeleteMarker {
		require.NoError(e.t, e.b.PutDeleteMarker(ctx, bucket, le.Key, le.Owner, le.VersionID, le.VersionedEpoch), "delete marker %q", le.Key)
		return
	}
	info, err := e.a.Stat(ctx, bucket, le.Key, le.VersionID)
	require.NoError(e.t, err, "stat %q", le.Key)
	var etag string
	if info.Multipart() {
		etag, err = e.b.PutMultipart(ctx, info, func(_ int, off, size int64) (io.ReadCloser, error) {
			return e.a.Get(ctx, bucket, le.Key, le.VersionID, off, size)
		}, le.VersionedEpoch)
	} else {
		var body io.ReadCloser
		body, err = e.a.Get(ctx, bucket, le.Key, le.VersionID, 0, -1)
		require.NoError(e.t, err, "get %q", le.Key)
		etag, err = e.b.Put(ctx, info, body, le.VersionedEpoch)
		body.Close()
	}
	require.NoError(e.t, err, "copy %q", le.Key)
	require.Equal(e.t, info.ETag, etag, "ETag of the copy of %q", le.Key)
}

func digest(t *testing.T, ctx context.Context, c *Client, bucket, key, vid string) string {
	t.Helper()
	rc, err := c.Get(ctx, bucket, key, vid, 0, -1)
	require.NoError(t, err, "get %q", key)
	defer rc.Close()
	h := sha256.New()
	_, err = io.Copy(h, rc)
	require.NoError(t, err)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// checkSame compares both zones' listings and, for each version, Stat and
// the body digest.
func (e *env) checkSame(bucket, inst string, shards int) {
	e.t.Helper()
	la, lb := listAll(e.t, e.ctx, e.a, inst, shards), listAll(e.t, e.ctx, e.b, inst, shards)
	strip := func(m map[int][]ListEntry) map[int][]ListEntry {
		for _, es := range m {
			for i := range es {
				es[i].Mtime = time.Time{}
			}
		}
		return m
	}
	require.Equal(e.t, strip(la), strip(lb), "listings of %s", bucket)
	for _, es := range la {
		for _, le := range es {
			if le.DeleteMarker {
				continue
			}
			ia, err := e.a.Stat(e.ctx, bucket, le.Key, le.VersionID)
			require.NoError(e.t, err)
			ib, err := e.b.Stat(e.ctx, bucket, le.Key, le.VersionID)
			require.NoError(e.t, err, "stat copy of %q", le.Key)
			ia.Mtime, ib.Mtime = time.Time{}, time.Time{}
			require.Equal(e.t, ia, ib, "attributes of %q %s", le.Key, le.VersionID)
			require.Equal(e.t, digest(e.t, e.ctx, e.a, bucket, le.Key, le.VersionID),
				digest(e.t, e.ctx, e.b, bucket, le.Key, le.VersionID), "body of %q", le.Key)
		}
	}
}

var awkwardKeys = []string{":", "a:b", "&", "a&b=c", ".", "..", "...", ".o.", "a b", "100%", "%41", "a+b", "ünï©ødé/ключ",
	"a/b/c/", "x?y=z", "#frag", "semi;colon", "tilde~", "star*", `quo'te"`, "dir/./x", "dir/../y", "//lead", "=", ",", "@"}

func TestCopyUnversioned(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("plain")
	inst := e.bucket(bucket, false)

	e.put(bucket, "attrs", []byte("hello attributes"), func(in *s3.PutObjectInput) {
		in.ContentType = aws.String("text/x-test; charset=utf-8")
		in.CacheControl = aws.String("max-age=60")
		in.ContentDisposition = aws.String(`attachment; filename="x y.txt"`)
		in.ContentEncoding = aws.String("identity")
		in.ContentLanguage = aws.String("fr-CA")
		in.Expires = aws.Time(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
		in.Metadata = map[string]string{"color": "red", "Mixed-Case": "v a l"}
		in.Tagging = aws.String("a=1&b=x%20y&c%2Fd=%26")
	})
	e.put(bucket, "acl", []byte("acl object"))
	_, err := e.user.PutObjectAcl(e.ctx, &s3.PutObjectAclInput{Bucket: aws.String(bucket), Key: aws.String("acl"),
		ACL: s3types.ObjectCannedACLPublicRead})
	require.NoError(t, err)
	e.put(bucket, "empty", nil)
	mp := map[string][]int64{"mp4x5": {5 << 20, 5 << 20, 5 << 20, 5 << 20}, "mp5-6-1": {5 << 20, 6 << 20, 1 << 20},
		"mp10-10": {10 << 20, 10 << 20}, "mp5-5-3": {5 << 20, 5 << 20, 3 << 20}}
	for k, sizes := range mp {
		e.multipart(bucket, k, sizes...)
	}
	for _, k := range awkwardKeys {
		e.put(bucket, k, []byte("awkward "+k))
	}

	// Stat on the source: every attribute, in one request.
	info, err := e.a.Stat(e.ctx, bucket, "attrs", "")
	require.NoError(t, err)
	e.rec.save(t, "stat-attrs", http.MethodGet, "/"+bucket+"/attrs", "prepend", map[string]any{"bucket": bucket, "key": "attrs"})
	require.Equal(t, "text/x-test; charset=utf-8", info.ContentType)
	require.Equal(t, "max-age=60", info.CacheControl)
	require.Equal(t, `attachment; filename="x y.txt"`, info.ContentDisposition)
	require.Equal(t, "identity", info.ContentEncoding)
	require.Equal(t, "fr-CA", info.ContentLanguage)
	require.NotEmpty(t, info.Expires)
	require.Equal(t, map[string]string{"color": "red", "mixed-case": "v a l"}, info.UserMeta)
	require.Equal(t, map[string]string{"a": "1", "b": "x y", "c/d": "&"}, info.Tags)
	require.Equal(t, e.uid, info.Owner)
	require.Nil(t, info.ACL, "default ACL")
	require.Nil(t, info.PartSizes)
	require.EqualValues(t, 16, info.Size)

	info, err = e.a.Stat(e.ctx, bucket, "acl", "")
	require.NoError(t, err)
	e.rec.save(t, "stat-acl-xml", http.MethodGet, "/"+bucket+"/acl", "acl=", nil)
	e.rec.save(t, "stat-acl-prepend", http.MethodGet, "/"+bucket+"/acl", "prepend", map[string]any{"bucket": bucket, "key": "acl"})
	require.Contains(t, string(info.ACL), "AllUsers")
	require.Equal(t, e.uid, info.Owner)

	info, err = e.a.Stat(e.ctx, bucket, "empty", "")
	require.NoError(t, err)
	require.EqualValues(t, 0, info.Size)

	for k, sizes := range mp {
		info, err := e.a.Stat(e.ctx, bucket, k, "")
		require.NoError(t, err, k)
		require.Equal(t, sizes, info.PartSizes, k)
		// radosgw-admin's decoding of the same manifest.
		var st struct {
			Manifest struct {
				ObjSize int64 `json:"obj_size"`
				Rules   []struct {
					Val struct {
						StartPartNum uint32 `json:"start_part_num"`
						StartOfs     uint64 `json:"start_ofs"`
						PartSize     uint64 `json:"part_size"`
					} `json:"val"`
				} `json:"rules"`
			} `json:"manifest"`
		}
		admin := e.lab.Admin(t, "zone-a", "object", "stat", "--bucket="+bucket, "--object="+k)
		require.NoError(t, json.Unmarshal([]byte(admin), &st))
		var rules []manifestRule
		for _, r := range st.Manifest.Rules {
			rules = append(rules, manifestRule{startPartNum: r.Val.StartPartNum, startOfs: r.Val.StartOfs, partSize: r.Val.PartSize})
		}
		fromAdmin, err := sizesFromRules(uint64(st.Manifest.ObjSize), rules)
		require.NoError(t, err)
		require.Equal(t, sizes, fromAdmin, "radosgw-admin object stat rules of %s", k)
		e.rec.save(t, "stat-"+k, http.MethodGet, "/"+bucket+"/"+k, "prepend", map[string]any{"bucket": bucket, "key": k,
			"part_sizes": sizes, "admin_rules": st.Manifest.Rules, "admin_obj_size": st.Manifest.ObjSize})
	}

	// Listing the index shards and copying what they list.
	const shards = 11
	listed := listAll(t, e.ctx, e.a, inst, shards)
	n := 0
	for s, es := range listed {
		for _, le := range es {
			n++
			require.Equal(t, s, IndexShard(le.Key, shards), "index shard of %q", le.Key)
			require.Equal(t, "null", le.VersionID)
			require.Equal(t, e.uid, le.Owner)
			e.copyEntry(bucket, le)
		}
	}
	require.Equal(t, 3+len(mp)+len(awkwardKeys), n, "every object listed once")
	_, err = e.a.ListShard(e.ctx, fmt.Sprintf("%s:%d", inst, IndexShard("attrs", shards)), "", "", 1000)
	require.NoError(t, err)
	e.rec.save(t, "list-plain", http.MethodGet, "/"+bucket, "rgwx-bucket-instance", map[string]any{"bucket_shard": fmt.Sprintf("%s:%d", inst, IndexShard("attrs", shards))})
	e.rec.save(t, "put-attrs", http.MethodPut, "/"+bucket+"/attrs", "rgwx-uid", nil)
	e.rec.save(t, "complete-mp5-6-1", http.MethodPost, "/"+bucket+"/mp5-6-1", "uploadId", nil)
	e.checkSame(bucket, inst, shards)
	_, err = e.a.Stat(e.ctx, bucket, "..", "")
	require.NoError(t, err)
	e.rec.save(t, "stat-dotdot", http.MethodGet, "/"+bucket+"/..", "prepend", map[string]any{"bucket": bucket, "key": ".."})

	// Head on the destination.
	h, err := e.b.Head(e.ctx, bucket, "mp5-6-1", "")
	require.NoError(t, err)
	require.EqualValues(t, 12<<20, h.Size)
	require.True(t, strings.HasSuffix(h.ETag, "-3"), h.ETag)
	require.Equal(t, "multipart", h.UserMeta["kind"])

	// Get ranges.
	rc, err := e.a.Get(e.ctx, bucket, "attrs", "", 6, 4)
	require.NoError(t, err)
	b, _ := io.ReadAll(rc)
	rc.Close()
	require.Equal(t, "attr", string(b))
	rc, err = e.a.Get(e.ctx, bucket, "attrs", "", 6, -1)
	require.NoError(t, err)
	b, _ = io.ReadAll(rc)
	rc.Close()
	require.Equal(t, "attributes", string(b))

	// Deletes: every awkward name, then absent ones succeed too.
	for _, k := range awkwardKeys {
		require.NoError(t, e.b.Delete(e.ctx, bucket, k, e.uid, ""), k)
		_, err := e.b.Head(e.ctx, bucket, k, "")
		require.ErrorIs(t, err, ErrNotFound, k)
		require.NoError(t, e.b.Delete(e.ctx, bucket, k, e.uid, ""), k)
	}
	_, err = e.a.Stat(e.ctx, bucket, "no-such-key", "")
	require.ErrorIs(t, err, ErrNotFound)
	e.rec.save(t, "stat-missing", http.MethodGet, "/"+bucket+"/no-such-key", "prepend", nil)
	_, err = e.b.Head(e.ctx, "no-such-bucket-"+bucket, "k", "")
	require.ErrorIs(t, err, ErrNotFound)

	// An ACL change alone.
	_, err = e.user.PutObjectAcl(e.ctx, &s3.PutObjectAclInput{Bucket: aws.String(bucket), Key: aws.String("attrs"),
		ACL: s3types.ObjectCannedACLAuthenticatedRead})
	require.NoError(t, err)
	info, err = e.a.Stat(e.ctx, bucket, "attrs", "")
	require.NoError(t, err)
	require.NoError(t, e.b.PutACL(e.ctx, bucket, "attrs", "", info.Owner, info.ACL))
	ib, err := e.b.Stat(e.ctx, bucket, "attrs", "")
	require.NoError(t, err)
	require.Equal(t, string(info.ACL), string(ib.ACL))
}

func TestCopyVersioned(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("ver")
	inst := e.bucket(bucket, true)

	e.put(bucket, "k", []byte("v1"))
	e.put(bucket, "k", []byte("v2"), func(in *s3.PutObjectInput) { in.Tagging = aws.String("gen=2") })
	_, err := e.user.DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	require.NoError(t, err)
	e.put(bucket, "k", []byte("v3 after the marker"))
	e.put(bucket, "gone", []byte("x"))
	_, err = e.user.DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("gone")})
	require.NoError(t, err)
	e.multipart(bucket, "mpv", 5<<20, 1<<20)
	e.multipart(bucket, "mpv", 6<<20, 5<<20, 2<<20)
	for _, k := range []string{".", "..", "a b/..", "ü:&"} {
		e.put(bucket, k, []byte("one "+k))
		e.put(bucket, k, []byte("two "+k))
	}

	const shards = 11
	listed := listAll(t, e.ctx, e.a, inst, shards)
	_, err = e.a.ListShard(e.ctx, fmt.Sprintf("%s:%d", inst, IndexShard("k", shards)), "", "", 2)
	require.NoError(t, err)
	e.rec.save(t, "list-versioned", http.MethodGet, "/"+bucket, "rgwx-bucket-instance", map[string]any{"bucket_shard": fmt.Sprintf("%s:%d", inst, IndexShard("k", shards))})
	// Apply in reverse listing order (oldest first for each key, then the
	// other way round for some): the epochs keep the order right.
	for s, es := range listed {
		for i := range es {
			le := es[len(es)-1-i]
			if s%2 == 1 {
				le = es[i]
			}
			require.NotZero(t, le.VersionedEpoch, "epoch of %q", le.Key)
			e.copyEntry(bucket, le)
		}
	}
	e.checkSame(bucket, inst, shards)
	_, err = e.b.Head(e.ctx, bucket, "gone", "")
	require.ErrorIs(t, err, ErrNotFound, "delete marker is current")

	// A delete marker on the destination, then one version's removal.
	var vid string // the current version of k: the first listed
	for _, le := range listed[IndexShard("k", shards)] {
		if le.Key == "k" {
			vid = le.VersionID
			require.True(t, le.IsLatest)
			break
		}
	}
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "markerXYZ0123456789abcdefghijkl", 1000))
	e.rec.save(t, "put-delete-marker", http.MethodDelete, "/"+bucket+"/k", "rgwx-version-id", nil)
	_, err = e.b.Head(e.ctx, bucket, "k", "")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, e.b.Delete(e.ctx, bucket, "k", e.uid, "markerXYZ0123456789abcdefghijkl"))
	h, err := e.b.Head(e.ctx, bucket, "k", "")
	require.NoError(t, err)
	require.Equal(t, vid, h.VersionID)
	require.NoError(t, e.b.Delete(e.ctx, bucket, "k", e.uid, vid))
	_, err = e.b.Head(e.ctx, bucket, "k", vid)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, e.b.Delete(e.ctx, bucket, "k", e.uid, vid), "absent version")
}

// TestDataLogShard checks DataLogShard against the shards where zone-a's
// data log really records bucket index shards.
func TestDataLogShard(t *testing.T) {
	e := newEnv(t)
	var buckets []string
	for i := range 6 {
		b := labtest.RandomName(fmt.Sprintf("dl%d-", i))
		e.bucket(b, false)
		for j := range 8 {
			e.put(b, fmt.Sprintf("obj-%d", j), []byte("x"))
		}
		buckets = append(buckets, b)
	}
	info, err := e.adA.DataLogInfo(e.ctx)
	require.NoError(t, err)
	found := map[string]bool{}
	type seen struct {
		Key   string `json:"key"`
		Shard int    `json:"datalog_shard"`
	}
	var rec []seen
	for shard := range info.NumShards {
		marker := ""
		for {
			page, err := e.adA.ListDataLog(e.ctx, shard, marker, 1000)
			require.NoError(t, err)
			for _, en := range page.Entries {
				parts := strings.Split(en.Key, ":")
				if len(parts) != 3 || !strings.HasPrefix(parts[0], "dl") {
					continue
				}
				var idx int
				fmt.Sscan(parts[2], &idx)
				require.Equal(t, shard, DataLogShard(parts[0], idx, info.NumShards), "datalog shard of %s", en.Key)
				if !found[en.Key] {
					rec = append(rec, seen{Key: en.Key, Shard: shard})
				}
				found[en.Key] = true
			}
			if !page.Truncated {
				break
			}
			marker = page.Marker
		}
	}
	for _, b := range buckets {
		n := 0
		for k := range found {
			if strings.HasPrefix(k, b+":") {
				n++
			}
		}
		require.NotZero(t, n, "no datalog entry for %s", b)
	}
	if *record {
		data, _ := json.MarshalIndent(map[string]any{"num_shards": info.NumShards, "entries": rec}, "", "  ")
		require.NoError(t, os.WriteFile("testdata/datalog-shards.json", append(data, '\n'), 0o644))
	}
}

// TestNullVersionWithEpochIsNotDeletable pins the gateway fact behind the
// exporter's rule "an unversioned object is written without an epoch"
// (16.2.15): on an unversioned bucket a system PUT with rgwx-version-id=null
// and no epoch is a plain object that a DELETE removes, but with
// rgwx-versioned-epoch it becomes an OLH with a null instance that neither
// a plain DELETE nor a DELETE of version "null" removes. Should a later Ceph
// change the second half, this test says so.
func TestNullVersionWithEpochIsNotDeletable(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("plain")
	e.bucket(bucket, false)
	put := func(key string, epoch uint64) {
		_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: key, Owner: e.uid, VersionID: "null", Size: 3},
			bytes.NewReader([]byte("abc")), epoch)
		require.NoError(t, err)
	}
	exists := func(key string) bool {
		_, err := e.b.Head(e.ctx, bucket, key, "")
		if errors.Is(err, ErrNotFound) {
			return false
		}
		require.NoError(t, err)
		return true
	}

	put("no-epoch", 0)
	require.NoError(t, e.b.Delete(e.ctx, bucket, "no-epoch", e.uid, ""))
	require.False(t, exists("no-epoch"), "a null-version write without epoch is a plain object: DELETE removes it")

	put("epoch", 7)
	require.NoError(t, e.b.Delete(e.ctx, bucket, "epoch", e.uid, ""))
	require.True(t, exists("epoch"), "expected the gateway to keep an OLH'd null version after a plain DELETE")
	require.NoError(t, e.b.Delete(e.ctx, bucket, "epoch", e.uid, "null"))
	require.True(t, exists("epoch"), "expected the gateway to keep an OLH'd null version after DELETE ?versionId=null")
}

// TestFindVersion: a version's listing entry, delete markers included, and
// no false hit on a key the wanted one prefixes.
func TestFindVersion(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("fv")
	inst := e.bucket(bucket, true)
	v1 := e.put(bucket, "k", []byte("one"))
	v2 := e.put(bucket, "k", []byte("two"))
	del, err := e.user.DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	require.NoError(t, err)
	marker := aws.ToString(del.VersionId)
	other := e.put(bucket, "k2", []byte("other key")) // in the listing with prefix=k (if in the same shard)
	plain := labtest.RandomName("fvp")
	plainInst := e.bucket(plain, false)
	e.put(plain, "p", []byte("plain"))

	const shards = 11
	shardOf := func(inst, key string) string { return fmt.Sprintf("%s:%d", inst, IndexShard(key, shards)) }
	for _, c := range []struct {
		key, version string
		found, dm    bool
		epoch        uint64
	}{
		{"k", v1, true, false, 2}, {"k", v2, true, false, 3}, {"k", marker, true, true, 4},
		{"k", "nosuchversion0000000000000000000", false, false, 0},
		{"k", other, false, false, 0}, // k2's version is not a version of k
	} {
		en, found, err := e.a.FindVersion(e.ctx, shardOf(inst, c.key), c.key, c.version)
		require.NoError(t, err)
		require.Equal(t, c.found, found, "version %s of %s", c.version, c.key)
		if found {
			require.Equal(t, c.dm, en.DeleteMarker, "delete marker %s", c.version)
			require.Equal(t, c.epoch, en.VersionedEpoch, "epoch of %s", c.version)
		}
	}
	en, found, err := e.a.FindVersion(e.ctx, shardOf(plainInst, "p"), "p", "null")
	require.NoError(t, err)
	require.True(t, found)
	require.Zero(t, en.VersionedEpoch)
	_, found, err = e.a.FindVersion(e.ctx, shardOf(plainInst, "p"), "p", "other")
	require.NoError(t, err)
	require.False(t, found)
}

// TestVersionDeleteKeepsSourceEpoch pins why version deletes carry the
// source's OLH epoch (16.2.15). The source did: V1 (epoch 2), V2 (3),
// delete of V1 (4), V3 (5). The destination gets V2 and V3 first and the
// delete of V1 late: without an epoch the delete takes the destination's
// next epoch (6), and a later version written with the source's epoch 6
// does not become current; with the source's epoch 4 it does.
func TestVersionDeleteKeepsSourceEpoch(t *testing.T) {
	e := newEnv(t)
	for _, withEpoch := range []bool{false, true} {
		bucket := labtest.RandomName("ve")
		e.bucket(bucket, true)
		put := func(v string, epoch uint64) {
			_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v, Size: 1},
				bytes.NewReader([]byte("x")), epoch)
			require.NoError(t, err)
		}
		const v1, v2, v3, v4 = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "V2xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
			"V3xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "V4xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		put(v1, 2)
		put(v2, 3)
		put(v3, 5)
		var epoch uint64
		if withEpoch {
			epoch = 4
		}
		require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, v1, epoch))
		require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, v1, epoch), "absent version")
		put(v4, 6) // the source's next version
		h, err := e.b.Head(e.ctx, bucket, "k", "")
		require.NoError(t, err)
		if withEpoch {
			require.Equal(t, v4, h.VersionID, "with the source's epoch the next version is current")
		} else {
			require.Equal(t, v3, h.VersionID, "expected the gateway to number an epoch-less delete itself (then V4 is not current)")
		}
	}
}

// TestReplayedLinkWithOlderEpochIsNotCurrent pins why a version or delete
// marker the destination already has must not be written again (16.2.15).
// The source did V1 (epoch 2), V2 (3), a delete marker (4), then removed V1
// (5); the destination applied all four. When the delete marker is applied
// once more (a batch re-sent after a kill between apply and ack), the
// gateway rewrites its index entry as not current — its epoch 4 is below
// the OLH's 5 — and nothing is current any more: the listing no longer
// matches the source's (chaos seed 2, `v/k01454`). A version written again
// the same way loses its "latest" flag too.
func TestReplayedLinkWithOlderEpochIsNotCurrent(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("rl")
	inst := e.bucket(bucket, true)
	const v1, v2, v3, dm = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "V2xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"V3xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "DMxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	put := func(key, v string, epoch uint64) {
		_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: key, Owner: e.uid, VersionID: v, Size: 1},
			bytes.NewReader([]byte("x")), epoch)
		require.NoError(t, err)
	}
	latest := func(key, v string) bool {
		t.Helper()
		en, found, err := e.b.FindVersion(e.ctx, fmt.Sprintf("%s:%d", inst, IndexShard(key, 11)), key, v)
		require.NoError(t, err)
		require.True(t, found, "%s of %s is listed", v, key)
		return en.IsLatest
	}

	put("k", v1, 2)
	put("k", v2, 3)
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, dm, 4))
	require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, v1, 5))
	require.True(t, latest("k", dm), "the delete marker is current after the removal of an older version")
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, dm, 4)) // the replay
	require.False(t, latest("k", dm), "expected the gateway to list a replayed delete marker with an older epoch as not current")
	require.False(t, latest("k", v2), "nothing else became current")

	put("j", v1, 2)
	put("j", v2, 3)
	put("j", v3, 4)
	require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "j", e.uid, v1, 5))
	require.True(t, latest("j", v3))
	put("j", v3, 4) // the replay
	require.False(t, latest("j", v3), "expected the gateway to list a replayed version with an older epoch as not current")
}

// TestNullDeleteMarker: a DELETE in a suspended bucket lays a delete marker
// whose id is "null" (link_olh_del ""); zone-b takes it with
// rgwx-version-id=null and the epoch, whether its bucket says Enabled or
// Suspended (FACTS.md section 13). Failed before: PutDeleteMarker refused
// "null", and the key's later ops waited behind it for good.
func TestNullDeleteMarker(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("nd")
	inst := e.bucket(bucket, true)
	const v1 = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v1, Size: 1}, bytes.NewReader([]byte("x")), 2)
	require.NoError(t, err)
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 3))
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 3)) // a replay
	shard := fmt.Sprintf("%s:%d", inst, IndexShard("k", 11))
	dm, found, err := e.b.FindVersion(e.ctx, shard, "k", "null")
	require.NoError(t, err)
	require.True(t, found, "the null delete marker is listed")
	require.True(t, dm.DeleteMarker && dm.IsLatest, "the null delete marker is current: %+v", dm)
	require.EqualValues(t, 3, dm.VersionedEpoch)
	en, found, err := e.b.FindVersion(e.ctx, shard, "k", v1)
	require.NoError(t, err)
	require.True(t, found && !en.IsLatest, "V1 is kept, not current: %+v", en)
}

// TestNamedVersionIntoSuspendedBucket: a version written while the source
// bucket was enabled reaches zone-b after the bucket's suspension did
// (metadata and data travel apart; the chaos workload toggles versioning).
// With rgwx-version-id alone the gateway stores it as the null version,
// its id lost and zone-b's null version overwritten; with versionId= it
// keeps its id and epoch in every state (FACTS.md section 14). Failed
// before (listed "null").
func TestNamedVersionIntoSuspendedBucket(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("ns")
	inst := e.bucket(bucket, true)
	_, err := e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}})
	require.NoError(t, err)
	e.copyMeta("bucket.instance", inst)
	st, err := e.b.BucketVersioning(e.ctx, bucket)
	require.NoError(t, err)
	require.Equal(t, "Suspended", st)
	const v1, v2 = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "V2xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	for i, v := range []string{v1, v2} {
		_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v, Size: 1}, bytes.NewReader([]byte("x")), uint64(2+i))
		require.NoError(t, err)
	}
	shard := fmt.Sprintf("%s:%d", inst, IndexShard("k", 11))
	for i, v := range []string{v1, v2} {
		en, found, err := e.b.FindVersion(e.ctx, shard, "k", v)
		require.NoError(t, err)
		require.True(t, found, "%s is listed with its id", v)
		require.EqualValues(t, 2+i, en.VersionedEpoch)
		require.Equal(t, v == v2, en.IsLatest)
	}
	_, found, err := e.b.FindVersion(e.ctx, shard, "k", "null")
	require.NoError(t, err)
	require.False(t, found, "no null version made of them")
}

// TestStatRead: the attributes and the first n bytes of the body in one
// request — the whole body of an object up to n bytes (empty included),
// the first n bytes of a larger or multipart one — the same attributes
// as Stat.
func TestStatRead(t *testing.T) {
	e := newEnv(t)
	bucket := labtest.RandomName("sr")
	e.bucket(bucket, false)
	small, mid := randomBytes(10, 1), randomBytes(100<<10, 2)
	e.put(bucket, "small", small)
	e.put(bucket, "mid", mid)
	e.put(bucket, "empty", nil)
	mp := e.multipart(bucket, "mp", 5<<20, 1<<20)
	for _, c := range []struct {
		key  string
		want []byte
	}{{"small", small}, {"mid", mid[:64<<10]}, {"empty", nil}, {"mp", mp[:64<<10]}} {
		info, body, err := e.a.StatRead(e.ctx, bucket, c.key, "", 64<<10)
		require.NoError(t, err, c.key)
		require.Equal(t, len(c.want), len(body), c.key)
		require.True(t, bytes.Equal(c.want, body), "body of %s", c.key)
		st, err := e.a.Stat(e.ctx, bucket, c.key, "")
		require.NoError(t, err)
		require.Equal(t, st, info, "attributes of %s", c.key)
	}
	_, _, err := e.a.StatRead(e.ctx, bucket, "small", "", 0)
	require.Error(t, err)
}

// TestListInstanceWhole pins the fact the exporter's check for a new,
// empty bucket stands on (FACTS.md section 11): rgwx-bucket-instance
// without a shard number ("name:instance") lists every index shard of
// that instance, merged — one request instead of one per shard — and an
// instance whose only entry is a delete marker is not empty.
func TestListInstanceWhole(t *testing.T) {
	e := newEnv(t)
	empty := e.bucket(labtest.RandomName("whole-empty-"), false)
	page, err := e.a.ListShard(e.ctx, empty, "", "", 1)
	require.NoError(t, err)
	require.Empty(t, page.Entries, "a new bucket")
	require.False(t, page.Truncated)

	name := labtest.RandomName("whole-")
	inst := e.bucket(name, false)
	blob, err := e.adA.GetMetadata(e.ctx, "bucket.instance", inst)
	require.NoError(t, err)
	var info struct {
		Data struct {
			BucketInfo struct {
				NumShards int `json:"num_shards"`
			} `json:"bucket_info"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(blob, &info))
	require.Greater(t, info.Data.BucketInfo.NumShards, 1, "the lab's buckets are sharded")
	want := map[string]bool{}
	for i := range 20 {
		k := fmt.Sprintf("obj-%02d", i)
		e.put(name, k, []byte("x"))
		want[k] = true
	}
	got := map[string]bool{}
	km, vm := "", ""
	for {
		page, err := e.a.ListShard(e.ctx, inst, km, vm, 7)
		require.NoError(t, err)
		for _, le := range page.Entries {
			got[le.Key] = true
		}
		if !page.Truncated {
			break
		}
		km, vm = page.NextKeyMarker, page.NextVersionMarker
	}
	require.Equal(t, want, got, "every shard of the instance, listed whole")
	perShard := listAll(t, e.ctx, e.a, inst, info.Data.BucketInfo.NumShards)
	n, used := 0, 0
	for _, es := range perShard {
		n += len(es)
		if len(es) > 0 {
			used++
		}
	}
	require.Equal(t, 20, n)
	require.Greater(t, used, 1, "the objects are spread over several shards")

	vname := labtest.RandomName("whole-dm-")
	vinst := e.bucket(vname, true)
	_, err = e.user.DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: aws.String(vname), Key: aws.String("gone")})
	require.NoError(t, err)
	page, err = e.a.ListShard(e.ctx, vinst, "", "", 1)
	require.NoError(t, err)
	require.Len(t, page.Entries, 1, "a delete marker alone")
	require.True(t, page.Entries[0].DeleteMarker)
}

// TestNullVersionAttrsInPlace: the tags and ACL of a key's null version are
// set in place with versionId=null in every state of zone-b's bucket —
// never versioned, suspended, and enabled with a named version current
// above it — without touching the current version or moving the null
// version's epoch (FACTS.md section 16). Failed before: "null" was sent
// as no version id, and the request changed the current version instead.
func TestNullVersionAttrsInPlace(t *testing.T) {
	e := newEnv(t)
	// A non-default ACL, as the source gives it.
	src := labtest.RandomName("na")
	e.bucket(src, false)
	e.put(src, "acl", []byte("x"), func(in *s3.PutObjectInput) { in.ACL = s3types.ObjectCannedACLPublicRead })
	pub, err := e.a.Stat(e.ctx, src, "acl", "")
	require.NoError(t, err)
	require.Contains(t, string(pub.ACL), "AllUsers")

	versioning := func(bucket, inst string, s s3types.BucketVersioningStatus) {
		_, err := e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s}})
		require.NoError(t, err)
		e.copyMeta("bucket.instance", inst)
	}
	const v1 = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	for _, state := range []string{"never", "Suspended", "Enabled"} {
		t.Run(state, func(t *testing.T) {
			bucket := labtest.RandomName("na")
			inst := e.bucket(bucket, false)
			var epoch uint64
			if state != "never" {
				versioning(bucket, inst, s3types.BucketVersioningStatusSuspended)
				epoch = 2
			}
			_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: "null", Size: 1}, bytes.NewReader([]byte("n")), epoch)
			require.NoError(t, err)
			if state == "Enabled" {
				versioning(bucket, inst, s3types.BucketVersioningStatusEnabled)
				_, err = e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v1, Size: 2}, bytes.NewReader([]byte("v1")), 3)
				require.NoError(t, err)
			}
			require.NoError(t, e.b.PutTagging(e.ctx, bucket, "k", "null", e.uid, map[string]string{"t": "1"}))
			require.NoError(t, e.b.PutACL(e.ctx, bucket, "k", "null", e.uid, pub.ACL))
			null, err := e.b.Stat(e.ctx, bucket, "k", "null")
			require.NoError(t, err)
			require.Equal(t, map[string]string{"t": "1"}, null.Tags, "the null version's tags")
			require.Contains(t, string(null.ACL), "AllUsers", "the null version's ACL")
			require.EqualValues(t, 1, null.Size)
			if state == "Enabled" {
				cur, err := e.b.Stat(e.ctx, bucket, "k", v1)
				require.NoError(t, err)
				require.Empty(t, cur.Tags, "the current version is untouched")
				require.NotContains(t, string(cur.ACL), "AllUsers")
			}
			if state != "never" {
				shard := fmt.Sprintf("%s:%d", inst, IndexShard("k", 11))
				en, found, err := e.b.FindVersion(e.ctx, shard, "k", "null")
				require.NoError(t, err)
				require.True(t, found)
				require.EqualValues(t, epoch, en.VersionedEpoch, "the null version's epoch is kept")
				require.Equal(t, state != "Enabled", en.IsLatest)
			}
			// And removing the tags.
			require.NoError(t, e.b.PutTagging(e.ctx, bucket, "k", "null", e.uid, nil))
			null, err = e.b.Stat(e.ctx, bucket, "k", "null")
			require.NoError(t, err)
			require.Empty(t, null.Tags)
		})
	}
}

// TestDeleteMarkerOverDeleteMarker: the gateway lays a delete marker over a
// key whose current entry is a delete marker only when it replaces a null
// version (FACTS.md section 22): in either order, the second of two markers
// on a key without versions is declined — 204, our version id, no
// x-amz-delete-marker, nothing stored (make chaos seed 5, v/k02081). Its
// own S3 DELETE behaves the same. PutDeleteMarker says so with
// ErrMarkerDeclined (it failed before with "is the bucket versioned?").
func TestDeleteMarkerOverDeleteMarker(t *testing.T) {
	pacificOnly(t, "Tentacle (20.2.4) lays the second marker (FACTS.md §23)")
	e := newEnv(t)
	const named = "9yZADrZa6AQ65qBNn0qb43r5-feu1Qb"
	for _, order := range [][2]string{{"null", named}, {named, "null"}} {
		bucket := labtest.RandomName("dd")
		e.bucket(bucket, true)
		epochs := map[string]uint64{"null": 3, named: 2}
		require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, order[0], epochs[order[0]]))
		err := e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, order[1], epochs[order[1]])
		require.ErrorIs(t, err, ErrMarkerDeclined, "%s over %s", order[1], order[0])
		_, found, ferr := e.b.FindVersionInBucket(e.ctx, bucket, "k", order[1])
		require.NoError(t, ferr)
		require.False(t, found, "the declined marker %s is not stored", order[1])
		cur, found, ferr := e.b.LatestInBucket(e.ctx, bucket, "k")
		require.NoError(t, ferr)
		require.True(t, found && cur.DeleteMarker && cur.VersionID == order[0], "the first marker stays current: %+v", cur)
	}
}

// TestSecondNullRemovalLeavesTheKeysOLH pins FACTS.md section 27 (16.2.15):
// a key with versions V1 (epoch 2), V2 (3) and a null version (4) written
// while suspended, all removed with the source's epochs (5, 6, 7) — the
// source then starts the key's epochs again, and its next delete marker
// has epoch 2. On zone-b that marker is current, unless the null version's
// removal was sent twice (a batch re-sent after a fault): then the key's
// OLH outlives its versions and the marker is listed as not current (make
// chaos seeds 2 and 3 at 4da48da). Why the applier never removes a null
// version zone-b does not list (TestNullVersionRemovedOnlyWhenListed).
func TestSecondNullRemovalLeavesTheKeysOLH(t *testing.T) {
	e := newEnv(t)
	for _, twice := range []bool{false, true} {
		bucket := labtest.RandomName("sn")
		inst := e.bucket(bucket, true)
		const v1, v2 = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "V2xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		put := func(v string, epoch uint64) {
			_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v, Size: 1}, bytes.NewReader([]byte("x")), epoch)
			require.NoError(t, err)
		}
		put(v1, 2)
		put(v2, 3)
		_, err := e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}})
		require.NoError(t, err)
		e.copyMeta("bucket.instance", inst)
		put("null", 4)
		require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, v1, 5))
		require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, "null", 6))
		if twice {
			require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, "null", 6))
		}
		require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, v2, 7))
		require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 2))
		dm, found, err := e.b.FindVersionInBucket(e.ctx, bucket, "k", "null")
		require.NoError(t, err)
		require.True(t, found && dm.DeleteMarker, "the marker is listed: %+v", dm)
		if twice && labtest.Get(t).Release() != "tentacle" { // Pacific, and Reef (18.2.7)
			require.False(t, dm.IsLatest, "expected the gateway to keep the emptied key's OLH after a second null removal")
		} else { // and on Tentacle (20.2.4) either way (FACTS.md §27)
			require.True(t, dm.IsLatest, "the marker of an emptied key is current")
		}
	}
}

// TestNullMarkerOverMarkerByANullVersion pins FACTS.md section 29
// (16.2.15): zone-b declines a null delete marker over a current named
// marker, and lays it when it replaces a null version written first with
// an epoch below the marker's, in a suspended bucket.
func TestNullMarkerOverMarkerByANullVersion(t *testing.T) {
	pacificOnly(t, "Tentacle (20.2.4) lays a marker over a marker: nothing to work around (FACTS.md §23)")
	e := newEnv(t)
	bucket := labtest.RandomName("nm")
	inst := e.bucket(bucket, true)
	const v1, m = "V1xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "DMxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	_, err := e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v1, Size: 1}, bytes.NewReader([]byte("x")), 2)
	require.NoError(t, err)
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, m, 6))
	_, err = e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}})
	require.NoError(t, err)
	e.copyMeta("bucket.instance", inst)
	require.ErrorIs(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 7), ErrMarkerDeclined,
		"expected zone-b to decline a null marker over a marker (section 22)")
	_, err = e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: "null"}, bytes.NewReader(nil), 5)
	require.NoError(t, err)
	cur, found, err := e.b.LatestInBucket(e.ctx, bucket, "k")
	require.NoError(t, err)
	require.True(t, found && cur.VersionID == m, "the null version below the marker is not current: %+v", cur)
	require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 7))
	cur, found, err = e.b.LatestInBucket(e.ctx, bucket, "k")
	require.NoError(t, err)
	require.True(t, found && cur.VersionID == "null" && cur.DeleteMarker && cur.VersionedEpoch == 7, "%+v", cur)
}

// TestNullWriteIntoAnEmptiedKey pins FACTS.md section 30 (16.2.15): a
// plain null write into a key whose null marker was removed (emptied) is
// numbered 1, below the next version (epoch 2, the source's); without the
// removal it is numbered above the marker's epoch, and the next version
// is not current.
func TestNullWriteIntoAnEmptiedKey(t *testing.T) {
	e := newEnv(t)
	for _, removed := range []bool{true, false} {
		bucket := labtest.RandomName("ne")
		inst := e.bucket(bucket, true)
		_, err := e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}})
		require.NoError(t, err)
		e.copyMeta("bucket.instance", inst)
		require.NoError(t, e.b.PutDeleteMarker(e.ctx, bucket, "k", e.uid, "null", 2))
		if removed {
			require.NoError(t, e.b.DeleteVersion(e.ctx, bucket, "k", e.uid, "null", 3))
		}
		_, err = e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: "null", Size: 1}, bytes.NewReader([]byte("x")), 0)
		require.NoError(t, err)
		_, err = e.user.PutBucketVersioning(e.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
		require.NoError(t, err)
		e.copyMeta("bucket.instance", inst)
		const v = "V2xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		_, err = e.b.Put(e.ctx, ObjectInfo{Bucket: bucket, Key: "k", Owner: e.uid, VersionID: v, Size: 1}, bytes.NewReader([]byte("y")), 2)
		require.NoError(t, err)
		cur, found, err := e.b.LatestInBucket(e.ctx, bucket, "k")
		require.NoError(t, err)
		require.True(t, found)
		if removed {
			require.Equal(t, v, cur.VersionID, "the version after the emptied key's null version is current")
		} else {
			require.Equal(t, "null", cur.VersionID, "expected the null write over the marker to be numbered above epoch 2")
		}
	}
}
