package rgwobj

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/stretchr/testify/require"
)

// exchange is one recorded request and answer of the lab (testdata/*.json,
// written by the integration tests with -record; never by hand).
type exchange struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Query  string            `json:"query"`
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   []byte            `json:"body"`
	Extra  map[string]any    `json:"extra,omitempty"`
}

func load(t *testing.T, name string) exchange {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	var x exchange
	require.NoError(t, json.Unmarshal(data, &x))
	return x
}

// replay serves recorded exchanges by method and path and remembers the
// requests it got.
func replay(t *testing.T, xs ...exchange) (*Client, *[]*http.Request) {
	t.Helper()
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		require.True(t, strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AK/"), "signed")
		for _, x := range xs {
			if x.Method == r.Method && x.Path == r.URL.EscapedPath() {
				for k, v := range x.Header {
					if k != "Content-Length" && k != "Connection" {
						w.Header().Set(k, v)
					}
				}
				w.WriteHeader(x.Status)
				_, _ = w.Write(x.Body)
				return
			}
		}
		t.Errorf("no recorded answer for %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK"})
	require.NoError(t, err)
	return c, &got
}

func extraString(x exchange, k string) string { s, _ := x.Extra[k].(string); return s }

func TestStatRecorded(t *testing.T) {
	x := load(t, "stat-attrs")
	c, got := replay(t, x)
	info, err := c.Stat(context.Background(), extraString(x, "bucket"), "attrs", "")
	require.NoError(t, err)
	require.Len(t, *got, 1, "one request for an object with the default ACL")
	require.Equal(t, "bytes=0-0", (*got)[0].Header.Get("Range"))
	require.Equal(t, "true", (*got)[0].URL.Query().Get("rgwx-prepend-metadata"))
	require.Equal(t, "text/x-test; charset=utf-8", info.ContentType)
	require.Equal(t, "max-age=60", info.CacheControl)
	require.Equal(t, `attachment; filename="x y.txt"`, info.ContentDisposition)
	require.Equal(t, "identity", info.ContentEncoding)
	require.Equal(t, "fr-CA", info.ContentLanguage)
	require.Equal(t, "Wed, 02 Jan 2030 03:04:05 GMT", info.Expires)
	require.Equal(t, map[string]string{"color": "red", "mixed-case": "v a l"}, info.UserMeta)
	require.Equal(t, map[string]string{"a": "1", "b": "x y", "c/d": "&"}, info.Tags)
	require.True(t, strings.HasPrefix(info.Owner, "u"), info.Owner)
	require.Nil(t, info.ACL)
	require.Nil(t, info.PartSizes)
	require.EqualValues(t, 16, info.Size)
	require.Len(t, info.ETag, 32)
	require.False(t, info.Mtime.IsZero())
	require.Equal(t, parseRgwxMtime(x.Header["Rgwx-Mtime"]), info.Mtime, "nanoseconds kept")
}

func TestStatNonDefaultACLRecorded(t *testing.T) {
	pre, acl := load(t, "stat-acl-prepend"), load(t, "stat-acl-xml")
	// Both requests have the same path; the replay tells them by query.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := pre
		if r.URL.Query().Has("acl") {
			x = acl
		}
		for k, v := range x.Header {
			if k != "Content-Length" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(x.Status)
		_, _ = w.Write(x.Body)
	}))
	defer srv.Close()
	c, err := New(Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK"})
	require.NoError(t, err)
	info, err := c.Stat(context.Background(), "b", "acl", "")
	require.NoError(t, err)
	require.Equal(t, acl.Body, info.ACL, "a non-default ACL is read as XML")
	require.Contains(t, string(info.ACL), "http://acs.amazonaws.com/groups/global/AllUsers")
	require.NotEmpty(t, info.Owner)
}

func TestStatMultipartRecorded(t *testing.T) {
	for _, name := range []string{"stat-mp4x5", "stat-mp5-6-1", "stat-mp10-10", "stat-mp5-5-3"} {
		t.Run(name, func(t *testing.T) {
			x := load(t, name)
			c, _ := replay(t, x)
			info, err := c.Stat(context.Background(), extraString(x, "bucket"), extraString(x, "key"), "")
			require.NoError(t, err)
			var want []int64
			for _, v := range x.Extra["part_sizes"].([]any) {
				want = append(want, int64(v.(float64)))
			}
			require.Equal(t, want, info.PartSizes)
			// The same rules as radosgw-admin object stat decoded.
			var rules []manifestRule
			for _, r := range x.Extra["admin_rules"].([]any) {
				v := r.(map[string]any)["val"].(map[string]any)
				rules = append(rules, manifestRule{startPartNum: uint32(v["start_part_num"].(float64)),
					startOfs: uint64(v["start_ofs"].(float64)), partSize: uint64(v["part_size"].(float64))})
			}
			fromAdmin, err := sizesFromRules(uint64(x.Extra["admin_obj_size"].(float64)), rules)
			require.NoError(t, err)
			require.Equal(t, want, fromAdmin)
			require.Equal(t, "application/x-mp", info.ContentType)
			require.Equal(t, map[string]string{"kind": "multipart"}, info.UserMeta)
		})
	}
}

func TestStatDotDotRecorded(t *testing.T) {
	x := load(t, "stat-dotdot")
	require.Equal(t, "/"+extraString(x, "bucket")+"/..", x.Path, "sent without dot-segment removal")
	c, got := replay(t, x)
	info, err := c.Stat(context.Background(), extraString(x, "bucket"), "..", "")
	require.NoError(t, err)
	require.EqualValues(t, len("awkward .."), info.Size)
	require.Equal(t, x.Path, (*got)[0].URL.EscapedPath())
}

func TestStatMissingRecorded(t *testing.T) {
	x := load(t, "stat-missing")
	c, _ := replay(t, x)
	_, err := c.Stat(context.Background(), strings.Split(x.Path, "/")[1], "no-such-key", "")
	require.ErrorIs(t, err, ErrNotFound)
	var gerr *GatewayError
	require.True(t, errors.As(err, &gerr))
	require.Equal(t, "NoSuchKey", gerr.Code)
	require.NotEmpty(t, gerr.RequestID)
}

func TestListShardRecorded(t *testing.T) {
	x := load(t, "list-versioned")
	c, got := replay(t, x)
	bs := extraString(x, "bucket_shard")
	page, err := c.ListShard(context.Background(), bs, "", "", 2)
	require.NoError(t, err)
	q := (*got)[0].URL.Query()
	require.Equal(t, bs, q.Get("rgwx-bucket-instance"))
	require.Equal(t, "json", q.Get("format"))
	require.Equal(t, "true", q.Get("objs-container"))
	require.True(t, q.Has("versions"))
	require.True(t, page.Truncated)
	require.Len(t, page.Entries, 2)
	require.NotEmpty(t, page.NextKeyMarker)
	require.NotEmpty(t, page.NextVersionMarker)
	for _, e := range page.Entries {
		require.NotZero(t, e.VersionedEpoch)
		require.NotEmpty(t, e.Owner)
		require.NotEmpty(t, e.VersionID)
		require.False(t, e.Mtime.IsZero())
	}

	x = load(t, "list-plain")
	page, err = decodeListPage(x.Body)
	require.NoError(t, err)
	require.False(t, page.Truncated)
	require.NotEmpty(t, page.Entries)
	for _, e := range page.Entries {
		require.Equal(t, "null", e.VersionID)
		require.Zero(t, e.VersionedEpoch)
		require.True(t, e.IsLatest)
	}
}

func TestDataLogShardRecorded(t *testing.T) {
	data, err := os.ReadFile("testdata/datalog-shards.json")
	require.NoError(t, err)
	var rec struct {
		NumShards int `json:"num_shards"`
		Entries   []struct {
			Key   string `json:"key"`
			Shard int    `json:"datalog_shard"`
		} `json:"entries"`
	}
	require.NoError(t, json.Unmarshal(data, &rec))
	require.NotEmpty(t, rec.Entries)
	for _, e := range rec.Entries {
		parts := strings.Split(e.Key, ":")
		var idx int
		_, err := fmt.Sscan(parts[2], &idx)
		require.NoError(t, err)
		require.Equal(t, e.Shard, DataLogShard(parts[0], idx, rec.NumShards), e.Key)
	}
}

// Seen on the lab while exploring (FACTS.md §2).
func TestShardFunctions(t *testing.T) {
	for _, c := range []struct {
		bucket       string
		shard, want  int
		key          string
		indexShard11 int
	}{
		{"pb1", 4, 48, "obj1", 4},
		{"vb1", 3, 79, "k2", 3},
		{"vb1", 6, 82, "k", 6},
	} {
		require.Equal(t, c.want, DataLogShard(c.bucket, c.shard, 128))
		require.Equal(t, c.indexShard11, IndexShard(c.key, 11))
	}
	require.Equal(t, DataLogShard("b", 0, 128), DataLogShard("b", -1, 128))
	require.Equal(t, DataLogShard("b", 2, 128), DataLogShard("tenant/b", 2, 128))
	require.Equal(t, -1, IndexShard("x", 0))
}

func TestObjectPath(t *testing.T) {
	for key, want := range map[string]string{
		"plain":     "/b/plain",
		".":         "/b/.",
		"..":        "/b/..",
		"dir/./x":   "/b/dir/./x",
		"a b":       "/b/a%20b",
		"100%":      "/b/100%25",
		"a+b":       "/b/a%2Bb",
		"a:b&c=d":   "/b/a%3Ab%26c%3Dd",
		"x?y#z":     "/b/x%3Fy%23z",
		"ü":         "/b/%C3%BC",
		"a/b/c/":    "/b/a/b/c/",
		"tilde~_-.": "/b/tilde~_-.",
	} {
		require.Equal(t, want, objectPath("b", key), key)
	}
	require.Equal(t, "/t%3Ab", objectPath("t/b", ""))
}

func TestPutRequest(t *testing.T) {
	x := load(t, "put-attrs")
	c, got := replay(t, x)
	bucket := strings.Split(x.Path, "/")[1]
	info := ObjectInfo{Bucket: bucket, Key: "attrs", Owner: "alice", Size: 3, ETag: "acbd18db4cc2f85cedef654fccc4a4d8",
		ContentType: "text/plain", CacheControl: "no-cache", Expires: "Wed, 02 Jan 2030 03:04:05 GMT",
		UserMeta: map[string]string{"color": "red"}, Tags: map[string]string{"b": "x y", "a": "1&2"}}
	_, err := c.Put(context.Background(), info, strings.NewReader("foo"), 7)
	require.NoError(t, err)
	r := (*got)[0]
	require.Equal(t, "alice", r.URL.Query().Get("rgwx-uid"))
	require.False(t, r.URL.Query().Has("rgwx-version-id"), "no version id for an unversioned object")
	require.Equal(t, "a=1%262&b=x%20y", r.Header.Get("X-Amz-Tagging"))
	require.Equal(t, "red", r.Header.Get("X-Amz-Meta-Color"))
	require.Equal(t, "rL0Y20zC+Fzt72VPzMSk2A==", r.Header.Get("Content-MD5"))
	require.EqualValues(t, 3, r.ContentLength)
	require.Equal(t, "UNSIGNED-PAYLOAD", r.Header.Get("X-Amz-Content-Sha256"))

	info.VersionID = "v1"
	_, err = c.Put(context.Background(), info, strings.NewReader("foo"), 7)
	require.NoError(t, err)
	q := (*got)[1].URL.Query()
	require.Equal(t, "v1", q.Get("rgwx-version-id"))
	require.Equal(t, "7", q.Get("rgwx-versioned-epoch"))
}

func TestPutDeleteMarkerRecorded(t *testing.T) {
	x := load(t, "put-delete-marker")
	c, _ := replay(t, x)
	bucket := strings.Split(x.Path, "/")[1]
	require.NoError(t, c.PutDeleteMarker(context.Background(), bucket, "k", "u", "markerXYZ0123456789abcdefghijkl", 1000))
	err := c.PutDeleteMarker(context.Background(), bucket, "k", "u", "other-id", 1000)
	require.Error(t, err, "the gateway's answer names another version")
}

func TestCompleteAnswersEmptyETag(t *testing.T) {
	x := load(t, "complete-mp5-6-1")
	require.Contains(t, string(x.Body), "<ETag></ETag>")
}

func TestGetRange(t *testing.T) {
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		_, _ = io.WriteString(w, "data")
	}))
	defer srv.Close()
	c, err := New(Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK", Timeout: time.Second})
	require.NoError(t, err)
	for _, r := range [][2]int64{{0, -1}, {5, -1}, {5, 10}} {
		rc, err := c.Get(context.Background(), "b", "k", "", r[0], r[1])
		require.NoError(t, err)
		_, _ = io.ReadAll(rc)
		require.NoError(t, rc.Close())
	}
	require.Equal(t, []string{"", "bytes=5-", "bytes=5-14"}, ranges)
}

func TestConfig(t *testing.T) {
	for _, ep := range []string{"", "ftp://x", "http://h/path", "http://h?q", "http://"} {
		_, err := New(Config{Endpoint: ep, AccessKey: "a", SecretKey: "s"})
		require.Error(t, err, ep)
	}
	_, err := New(Config{Endpoint: "http://h:1"})
	require.Error(t, err)
}

func TestDecodersRefuseGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {7}, {7, 6, 0xff, 0xff, 0xff, 0x7f}, {7, 6, 4, 0, 0, 0, 1, 2, 3, 4}} {
		_, err := partSizes(b)
		require.Error(t, err)
		_, err = decodeTags(b)
		require.Error(t, err)
		_, _, err = aclSummary(b)
		require.Error(t, err)
	}
}

// A tenant's bucket shard is listed at /tenant:name with
// rgwx-bucket-instance=name:instance:shard: the gateway answers 404
// NoSuchBucket when the tenant is in the parameter (issue #11, hole 1).
func TestShardBucketOfTenant(t *testing.T) {
	for _, c := range []struct{ in, bucket, inst string }{
		{"b:inst.1:3", "b", "b:inst.1:3"},
		{"b:inst.1", "b", "b:inst.1"},
		{"acme/b:inst.1:3", "acme/b", "b:inst.1:3"},
	} {
		b, inst, err := shardBucket("list", c.in)
		require.NoError(t, err)
		require.Equal(t, c.bucket, b, c.in)
		require.Equal(t, c.inst, inst, c.in)
	}
	for _, bad := range []string{"", "b", ":inst", "acme/:inst"} {
		_, _, err := shardBucket("list", bad)
		require.Error(t, err, bad)
	}
}

// One error type for both gateway clients, two 404s: an object's 404 is
// rgwobj.ErrNotFound and never rgwadmin.ErrNotFound (which callers of the
// metadata API read as "that key is gone"), and the other way round.
func TestGatewayErrorKeepsTheTwoNotFoundsApart(t *testing.T) {
	s3 := rgwadmin.NewGatewayError("stat b/k", "GET", "/b/k", "", 404, "tx1", []byte("<Error><Code>NoSuchKey</Code></Error>"), 1, ErrNotFound)
	require.ErrorIs(t, s3, ErrNotFound)
	require.NotErrorIs(t, s3, rgwadmin.ErrNotFound)
	require.Equal(t, "NoSuchKey", s3.Code)
	admin := rgwadmin.NewGatewayError("get metadata", "GET", "/admin/metadata/user", "key=u", 404, "", []byte(`{"Code":"NoSuchKey"}`), 1, nil)
	require.ErrorIs(t, admin, rgwadmin.ErrNotFound)
	require.NotErrorIs(t, admin, ErrNotFound)
	var ge *GatewayError
	require.ErrorAs(t, fmt.Errorf("wrapped: %w", s3), &ge)
	auth := rgwadmin.NewGatewayError("put b/k", "PUT", "/b/k", "", 403, "", []byte("<Error><Code>SignatureDoesNotMatch</Code></Error>"), 1, ErrNotFound)
	require.ErrorIs(t, auth, rgwadmin.ErrAuth, "a wrong key is named the same way on both APIs")
	page := rgwadmin.NewGatewayError("put b/k", "PUT", "/b/k", "", 502, "", []byte("<html><body>Bad Gateway</body></html>"), 1, ErrNotFound)
	require.Contains(t, page.Error(), "Bad Gateway", "a proxy's page is shown")
}
