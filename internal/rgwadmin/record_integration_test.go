//go:build integration

package rgwadmin

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

var record = flag.Bool("record", false, "record the real gateway's answers into testdata/ for the unit tests")

// TestRecordAnswers captures the lab's real answers (status, headers, body)
// for the unit tests' replay servers:
//
//	go test -tags integration -run TestRecordAnswers -record ./internal/rgwadmin/
//
// Every file is one exchange of this client with the lab; nothing in
// testdata/ is written by hand.
func TestRecordAnswers(t *testing.T) {
	if !*record {
		t.Skip("recorder: run with -record to refresh testdata/")
	}
	lab := labtest.Get(t)
	ctx := testCtx(t)
	rec := &recorder{base: defaultHTTPClient().Transport}
	mk := func(endpoint, ak, sk string) *Client {
		c, err := New(Config{Endpoint: endpoint, AccessKey: ak, SecretKey: sk,
			HTTPClient: &http.Client{Transport: rec}, MaxRetries: 1, RetryBaseDelay: time.Millisecond})
		require.NoError(t, err)
		return c
	}
	a := mk(lab.ZoneA, lab.AccessKey, lab.SecretKey)
	b := mk(lab.ZoneB, lab.AccessKey, lab.SecretKey)
	write := func(name, note string, x exchange) {
		t.Helper()
		x.Note = note
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		require.NoError(t, enc.Encode(x))
		require.NoError(t, os.WriteFile(exchangePath(name), buf.Bytes(), 0o644))
		t.Logf("%s: %s %s?%s -> %d (%d bytes)", name, x.Request.Method, x.Request.Path, x.Request.Query, x.Status, len(x.Body))
	}
	// save writes the pick-th exchange since the last take (-1: the last).
	save := func(name, note string, pick int) {
		t.Helper()
		xs := rec.take()
		require.NotEmpty(t, xs, name)
		if pick < 0 {
			pick = len(xs) - 1
		}
		write(name, note, xs[pick])
	}
	discard := func() { rec.take() }

	// Metadata log: users created on zone-a (the metadata master).
	info, err := a.MDLogInfo(ctx)
	require.NoError(t, err)
	save("mdlog-info", "GET /admin/log?type=metadata on zone-a", -1)
	before := mdlogMarkers(t, a, info.Period, info.NumShards)
	tenant := labtest.RandomName("t")
	tuid, tak, tsk := labUser(t, tenant)
	uid, uak, usk := labUser(t, "")
	uid2, _, _ := labUser(t, "")
	discard()
	shard := -1
	for i := range info.NumShards {
		si, err := a.MDLogShardInfo(ctx, info.Period, i)
		require.NoError(t, err)
		if si.Marker != before[i] {
			shard = i
			save("mdlog-shard-info", "shard with entries", -1)
			break
		}
	}
	require.GreaterOrEqual(t, shard, 0)
	discard()
	_, err = b.MDLogShardInfo(ctx, "", 0)
	require.NoError(t, err)
	save("mdlog-shard-info-empty", "zone-b (not the metadata master) never writes its mdlog", -1)
	page, err := a.ListMDLog(ctx, info.Period, shard, before[shard], 1)
	require.NoError(t, err)
	require.True(t, page.Truncated)
	save("mdlog-list-page", "max-entries=1, truncated", -1)
	_, err = a.ListMDLog(ctx, info.Period, shard, page.Marker, 100)
	require.NoError(t, err)
	save("mdlog-list-last", "the rest of the shard", -1)

	// Data log and bucket-index log: a bucket with objects on zone-a.
	dinfo, err := a.DataLogInfo(ctx)
	require.NoError(t, err)
	save("datalog-info", "GET /admin/log?type=data", -1)
	dbefore := make([]string, dinfo.NumShards)
	for i := range dbefore {
		si, err := a.DataLogShardInfo(ctx, i)
		require.NoError(t, err)
		dbefore[i] = si.Marker
	}
	_, inst := labBucket(t, a, a, "", 12)
	discard()
	for i := range dinfo.NumShards {
		si, err := a.DataLogShardInfo(ctx, i)
		require.NoError(t, err)
		if si.Marker != dbefore[i] {
			save("datalog-shard-info", "shard with entries", -1)
			_, err := a.ListDataLog(ctx, i, dbefore[i], 100)
			require.NoError(t, err)
			save("datalog-list", "extra-info=true", -1)
			break
		}
	}
	_, err = a.BILogInfo(ctx, inst)
	require.NoError(t, err)
	save("bilog-info-bucket", "whole bucket: shard#value lists", -1)
	full, err := a.ListBILog(ctx, inst, "", 0)
	require.NoError(t, err)
	discard()
	sh, _, _ := strings.Cut(full[0].OpID, "#")
	_, err = a.BILogInfo(ctx, inst+":"+sh)
	require.NoError(t, err)
	save("bilog-info-shard", "one index shard", -1)
	entries, err := a.ListBILog(ctx, inst+":"+sh, "", 100)
	require.NoError(t, err)
	save("bilog-list", "one index shard", -1)

	// Metadata.
	_, err = a.ListMetadataSections(ctx)
	require.NoError(t, err)
	save("metadata-sections", "GET /admin/metadata", -1)
	_, err = a.ListMetadataKeys(ctx, "user", "", 1)
	require.NoError(t, err)
	save("metadata-keys-page", `max-entries=1: "truncated" is the string "true"`, -1)
	_, err = a.ListMetadataKeys(ctx, "user", "", 100000)
	require.NoError(t, err)
	save("metadata-keys-last", "everything in one page", -1)
	ublob, err := a.GetMetadata(ctx, "user", tuid)
	require.NoError(t, err)
	save("metadata-get-user", "a tenant's user: '$' in the key", -1)
	_, err = a.GetMetadata(ctx, "user", labtest.RandomName("nosuch-"))
	require.ErrorIs(t, err, ErrNotFound)
	save("metadata-get-notfound", "404 NoSuchKey", -1)
	tc := mk(lab.ZoneA, tak, tsk)
	bkey, tinst := labBucket(t, tc, a, tenant, 1)
	discard()
	iblob, err := a.GetMetadata(ctx, "bucket.instance", tinst)
	require.NoError(t, err)
	save("metadata-get-bucket-instance", "a tenant's bucket instance: '/' and ':' in the key", -1)
	eblob, err := a.GetMetadata(ctx, "bucket", bkey)
	require.NoError(t, err)
	discard()
	_, err = b.PutMetadata(ctx, "user", tuid, ublob, "")
	require.NoError(t, err)
	save("metadata-put-applied", "new user on zone-b, no update-type", -1)
	_, err = b.PutMetadata(ctx, "user", tuid, ublob, "update-by-version")
	require.NoError(t, err)
	save("metadata-put-skipped", "same blob again, update-by-version", -1)
	_, err = b.PutMetadata(ctx, "bucket.instance", tinst, iblob, "")
	require.NoError(t, err)
	discard()
	_, err = b.PutMetadata(ctx, "bucket", bkey, eblob, "")
	require.NoError(t, err)
	save("metadata-put-bucket", "bucket entry point: 200, no RGWX_UPDATE_STATUS", -1)
	u2blob, err := a.GetMetadata(ctx, "user", uid2)
	require.NoError(t, err)
	_, err = b.PutMetadata(ctx, "user", uid2, u2blob, "")
	require.NoError(t, err)
	discard()
	require.NoError(t, b.DeleteMetadata(ctx, "user", uid2))
	save("metadata-delete", "DELETE on zone-b", -1)
	require.ErrorIs(t, b.DeleteMetadata(ctx, "user", uid2), ErrNotFound)
	save("metadata-delete-notfound", "the same DELETE again", -1)

	// Period and locks (on zone-b, a shard far past the mdlog's 64).
	zoneB, _, err := b.ZoneID(ctx, lab.ZoneB)
	require.NoError(t, err)
	save("realm-period", "GET /admin/realm/period on zone-b", -1)
	lshard := 200000 + int(time.Now().UnixNano()%100000)
	l1, l2 := labtest.RandomName("locker-"), labtest.RandomName("locker-")
	require.NoError(t, b.LockMDLogShard(ctx, "", lshard, 30*time.Second, zoneB, l1))
	save("lock-ok", "first locker", -1)
	require.ErrorIs(t, b.LockMDLogShard(ctx, "", lshard, 30*time.Second, zoneB, l2), ErrLocked)
	save("lock-locked", "second locker: 423", -1)
	require.ErrorIs(t, b.UnlockMDLogShard(ctx, "", lshard, zoneB, l2), ErrNotFound)
	save("unlock-not-holder", "unlock by the second locker: 404", -1)
	require.NoError(t, b.UnlockMDLogShard(ctx, "", lshard, zoneB, l1))
	save("unlock-ok", "unlock by the holder", -1)

	// Trims. An mdlog trim that removes nothing answers 500 (-ENODATA):
	// the one 5xx this gateway gives on demand.
	require.NoError(t, a.TrimMDLog(ctx, info.Period, shard, page.Entries[0].ID))
	xs := rec.take()
	require.Len(t, xs, 2, "DELETE then the listing that checks it")
	write("trim-mdlog-ok", "trim to the first entry listed above", xs[0])
	write("trim-mdlog-check", "TrimMDLog's check: the shard from its start, max-entries=1", xs[1])
	require.NoError(t, a.TrimMDLog(ctx, info.Period, shard, page.Entries[0].ID))
	xs = rec.take()
	require.Len(t, xs, 2, "DELETE (500) then the listing that settles it")
	require.Equal(t, 500, xs[0].Status)
	write("trim-mdlog-500", "the same trim again: nothing to remove, cls_log -ENODATA becomes 500 UnknownError (a real 5xx)", xs[0])
	require.NoError(t, a.TrimBILog(ctx, inst+":"+sh, entries[0].OpID))
	save("trim-bilog-ok", "end-marker = an op_id", -1)
	for i := range dinfo.NumShards {
		p, err := a.ListDataLog(ctx, i, "", 1)
		require.NoError(t, err)
		if len(p.Entries) > 0 {
			discard()
			require.NoError(t, a.TrimDataLog(ctx, i, p.Entries[0].LogID))
			save("trim-datalog-ok", "marker = a log_id", -1)
			break
		}
	}

	// Credentials the gateway refuses.
	for _, k := range []struct{ name, ak, sk string }{
		{"auth-bad-secret", lab.AccessKey, lab.SecretKey + "x"},
		{"auth-bad-access-key", "NOSUCHACCESSKEY0001", lab.SecretKey},
		{"auth-not-system", uak, usk},
	} {
		_, err := mk(lab.ZoneA, k.ak, k.sk).MDLogInfo(ctx)
		require.ErrorIs(t, err, ErrAuth, k.name)
		save(k.name, "GET /admin/log?type=metadata with these keys ("+uid+" is not a system user)", -1)
	}

	// A 2xx answer that is not JSON: the S3 service listing.
	_, err = a.do(ctx, request{op: "list buckets", method: http.MethodGet, path: "/", query: url.Values{}})
	require.NoError(t, err)
	save("s3-list-buckets", "GET / (S3 ListAllMyBuckets, XML)", -1)
	// An S3 error answer (XML, unlike the admin API's JSON ones).
	_, err = a.do(ctx, request{op: "list objects", method: http.MethodGet, path: "/" + labtest.RandomName("nosuch-"), query: url.Values{}})
	require.ErrorIs(t, err, ErrNotFound)
	save("s3-no-such-bucket", "GET /<missing bucket>: 404 NoSuchBucket in XML", -1)
}

// recorder is an http.RoundTripper that keeps every exchange it carries.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var x exchange
	x.Request.Method, x.Request.Path, x.Request.Query = req.Method, req.URL.Path, req.URL.RawQuery
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(b))
		x.Request.Body = string(b)
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	x.Status, x.Header, x.Body = resp.StatusCode, resp.Header.Clone(), string(b)
	r.mu.Lock()
	r.seen = append(r.seen, x)
	r.mu.Unlock()
	return resp, nil
}

// take returns the exchanges carried since the previous take.
func (r *recorder) take() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}
