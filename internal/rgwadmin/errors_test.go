package rgwadmin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The gateway's error answers (recorded on the lab) as errors.

func TestGatewayErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		answer   string
		call     func(t *testing.T, c *Client) error
		sentinel error
		status   int
		code     string
		inText   []string
	}{
		{"get metadata of a missing key", "metadata-get-notfound", func(t *testing.T, c *Client) error {
			_, err := c.GetMetadata(ctx, "user", recordedQuery(t, "metadata-get-notfound")["key"])
			return err
		}, ErrNotFound, 404, "NoSuchKey", []string{"get metadata user:nosuch-", "GET /admin/metadata/user", "status 404 NoSuchKey"}},
		{"delete metadata twice", "metadata-delete-notfound", func(t *testing.T, c *Client) error {
			return c.DeleteMetadata(ctx, "user", recordedQuery(t, "metadata-delete-notfound")["key"])
		}, ErrNotFound, 404, "NoSuchKey", []string{"delete metadata user:"}},
		{"unlock by a locker that does not hold the lock", "unlock-not-holder", func(t *testing.T, c *Client) error {
			q := recordedQuery(t, "unlock-not-holder")
			return c.UnlockMDLogShard(ctx, "", atoi(t, q["id"]), q["zone-id"], q["locker-id"])
		}, ErrNotFound, 404, "NoSuchKey", []string{"unlock mdlog shard "}},
		{"lock held by another locker", "lock-locked", func(t *testing.T, c *Client) error {
			q := recordedQuery(t, "lock-locked")
			return c.LockMDLogShard(ctx, "", atoi(t, q["id"]), 30*time.Second, q["zone-id"], q["locker-id"])
		}, ErrLocked, 423, "Locked", []string{"lock mdlog shard ", "status 423 Locked", "held by another locker"}},
		{"wrong secret key", "auth-bad-secret", func(t *testing.T, c *Client) error {
			_, err := c.MDLogInfo(ctx)
			return err
		}, ErrAuth, 403, "SignatureDoesNotMatch", []string{"get mdlog info", "the access key or the secret key is wrong"}},
		{"unknown access key", "auth-bad-access-key", func(t *testing.T, c *Client) error {
			_, err := c.MDLogInfo(ctx)
			return err
		}, ErrAuth, 403, "InvalidAccessKeyId", []string{"the access key or the secret key is wrong"}},
		{"not a system user", "auth-not-system", func(t *testing.T, c *Client) error {
			_, err := c.MDLogInfo(ctx)
			return err
		}, ErrAuth, 403, "AccessDenied", []string{"not a system user"}},
		{"an S3 error document (XML)", "s3-no-such-bucket", func(t *testing.T, c *Client) error {
			x := loadExchange(t, "s3-no-such-bucket")
			_, err := c.do(ctx, request{op: "list objects", method: http.MethodGet, path: x.Request.Path, query: url.Values{}})
			return err
		}, ErrNotFound, 404, "NoSuchBucket", []string{"list objects: GET /nosuch-"}},
	}
	sentinels := []error{ErrNotFound, ErrLocked, ErrAuth}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplay(t, true, tc.answer)
			err := tc.call(t, r.client(t))
			require.Error(t, err)
			for _, s := range sentinels {
				assert.Equal(t, s == tc.sentinel, errors.Is(err, s), "errors.Is(err, %v)", s)
			}
			var ge *GatewayError
			require.ErrorAs(t, err, &ge)
			x := loadExchange(t, tc.answer)
			assert.Equal(t, tc.status, ge.Status)
			assert.Equal(t, tc.code, ge.Code)
			assert.Equal(t, x.Header.Get("X-Amz-Request-Id"), ge.RequestID)
			assert.NotEmpty(t, ge.RequestID)
			assert.Equal(t, x.Request.Method, ge.Method)
			assert.Equal(t, x.Request.Path, ge.Path)
			assert.Equal(t, 1, ge.Attempts, "4xx answers are not retried")
			assert.Equal(t, int32(1), r.hits.Load())
			assert.Contains(t, err.Error(), ge.RequestID)
			for _, s := range tc.inText {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("500 retried, then the answer", func(t *testing.T) {
		r := newReplay(t, false, "trim-mdlog-500", "trim-mdlog-500", "mdlog-info")
		got, err := r.client(t).MDLogInfo(ctx)
		require.NoError(t, err)
		assert.Equal(t, 64, got.NumShards)
		assert.Equal(t, int32(3), r.hits.Load())
	})
	t.Run("500 forever", func(t *testing.T) {
		r := newReplay(t, false, "trim-mdlog-500")
		_, err := r.client(t, func(c *Config) { c.MaxRetries = 3 }).MDLogInfo(ctx)
		var ge *GatewayError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, 500, ge.Status)
		assert.Equal(t, "UnknownError", ge.Code)
		assert.Equal(t, 4, ge.Attempts)
		assert.Equal(t, int32(4), r.hits.Load())
		assert.Contains(t, err.Error(), "get mdlog info: GET /admin/log: status 500 UnknownError")
		assert.Contains(t, err.Error(), "after 4 attempts")
		for _, s := range []error{ErrNotFound, ErrLocked, ErrAuth} {
			assert.NotErrorIs(t, err, s)
		}
	})
	t.Run("no retry when MaxRetries < 0", func(t *testing.T) {
		r := newReplay(t, false, "trim-mdlog-500")
		_, err := r.client(t, func(c *Config) { c.MaxRetries = -1 }).MDLogInfo(ctx)
		require.Error(t, err)
		assert.Equal(t, int32(1), r.hits.Load())
	})
	t.Run("cancelling the context stops the retries", func(t *testing.T) {
		r := newReplay(t, false, "trim-mdlog-500")
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// Cancel when the client announces its retry, i.e. before its backoff.
		logger := slog.New(recordHandler(func(rec slog.Record) {
			if rec.Message == "rgwadmin: retrying" {
				cancel()
			}
		}))
		c := r.client(t, func(c *Config) {
			c.RetryBaseDelay, c.RetryMaxDelay, c.Logger = time.Hour, time.Hour, logger
		})
		start := time.Now()
		_, err := c.MDLogInfo(ctx)
		require.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.Equal(t, int32(1), r.hits.Load())
		assert.Contains(t, err.Error(), "get mdlog info")
		assert.Contains(t, err.Error(), "UnknownError", "the last answer is told")
	})
	t.Run("an answer that never comes: per-attempt timeout, retried", func(t *testing.T) {
		// Like radosgw 16.2.15 on GET /admin/log?type=data&id=-1: no answer.
		var hits atomic.Int32
		r := newReplay(t, false, "mdlog-info")
		r.setHook(func(_ http.ResponseWriter, req *http.Request) bool {
			hits.Add(1)
			<-req.Context().Done()
			return true
		})
		c := r.client(t, func(c *Config) { c.Timeout, c.MaxRetries = 50*time.Millisecond, 2 })
		_, err := c.MDLogInfo(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, int32(3), hits.Load())
		assert.Contains(t, err.Error(), "get mdlog info: GET /admin/log")
	})
	t.Run("connection closed without an answer, retried", func(t *testing.T) {
		// What a client sees when radosgw 16.2.15 aborts (datalog shard id too large).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var accepts atomic.Int32
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				accepts.Add(1)
				buf := make([]byte, 4096)
				_, _ = conn.Read(buf)
				_ = conn.Close()
			}
		}()
		tr := &http.Transport{}
		t.Cleanup(func() { _ = ln.Close(); <-done; tr.CloseIdleConnections() })
		c, err := New(Config{Endpoint: "http://" + ln.Addr().String(), AccessKey: testAK, SecretKey: testSK,
			HTTPClient: &http.Client{Transport: tr}, MaxRetries: 2, RetryBaseDelay: time.Millisecond, Logger: discard()})
		require.NoError(t, err)
		_, err = c.ListMetadataSections(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "list metadata sections: GET /admin/metadata (3 attempts)")
		assert.Equal(t, int32(3), accepts.Load())
	})
	t.Run("an answer larger than MaxBodyBytes is not retried", func(t *testing.T) {
		r := newReplay(t, false, "realm-period")
		_, _, err := r.client(t, func(c *Config) { c.MaxBodyBytes = 100 }).ZoneID(ctx, "http://127.0.0.1:1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "larger than the 100-byte limit")
		assert.Equal(t, int32(1), r.hits.Load())
	})
}

func TestTrimMDLogSettles500(t *testing.T) {
	ctx := context.Background()
	q := recordedQuery(t, "trim-mdlog-500")
	t.Run("nothing left to trim: the 500 is success", func(t *testing.T) {
		r := newReplay(t, true, "trim-mdlog-500", "trim-mdlog-check")
		require.NoError(t, r.client(t).TrimMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"]))
		assert.Equal(t, int32(2), r.hits.Load(), "DELETE, one listing, no retry")
	})
	t.Run("entries still there: the 500 is an error, retried", func(t *testing.T) {
		// mdlog-list-page lists the very entry the marker names.
		r := newReplay(t, false)
		del, list := loadExchange(t, "trim-mdlog-500"), loadExchange(t, "mdlog-list-page")
		var deletes atomic.Int32
		r.setPick(func(_ int, req *http.Request) exchange {
			if req.Method == http.MethodDelete {
				deletes.Add(1)
				return del
			}
			return list
		})
		err := r.client(t, func(c *Config) { c.MaxRetries = 2 }).TrimMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"])
		var ge *GatewayError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, 500, ge.Status)
		assert.Equal(t, int32(3), deletes.Load())
		assert.Contains(t, err.Error(), "trim mdlog shard "+q["id"])
	})
	t.Run("more than one call's worth: DELETE again while entries remain", func(t *testing.T) {
		r := newReplay(t, false)
		ok, page, check := loadExchange(t, "trim-mdlog-ok"), loadExchange(t, "mdlog-list-page"), loadExchange(t, "trim-mdlog-check")
		var deletes atomic.Int32
		r.setPick(func(_ int, req *http.Request) exchange {
			if req.Method == http.MethodDelete {
				deletes.Add(1)
				return ok
			}
			if deletes.Load() < 3 {
				return page // the marker's entry still listed
			}
			return check
		})
		require.NoError(t, r.client(t).TrimMDLog(ctx, q["period"], atoi(t, q["id"]), q["marker"]))
		assert.Equal(t, int32(3), deletes.Load())
	})
}

func TestDecodeErrors(t *testing.T) {
	ctx := context.Background()
	truncated := loadExchange(t, "mdlog-list-page")
	truncated.Body = truncated.Body[:len(truncated.Body)/2]
	cases := []struct {
		name   string
		answer exchange
		call   func(c *Client) error
		op     string
		inText string
	}{
		{"XML where JSON is expected", loadExchange(t, "s3-list-buckets"), func(c *Client) error {
			_, err := c.MDLogInfo(ctx)
			return err
		}, "get mdlog info", "<?xml"},
		{"XML as a metadata blob", loadExchange(t, "s3-list-buckets"), func(c *Client) error {
			_, err := c.GetMetadata(ctx, "user", "alice")
			return err
		}, "get metadata user:alice", "ListAllMyBucketsResult"},
		{"truncated answer", truncated, func(c *Client) error {
			_, err := c.ListMDLog(ctx, "", 0, "", 1)
			return err
		}, "list mdlog shard 0", "unexpected end of JSON input"},
		{"a list where an object is expected", loadExchange(t, "metadata-sections"), func(c *Client) error {
			_, err := c.ListMetadataKeys(ctx, "user", "", 1)
			return err
		}, "list metadata keys of user", "cannot unmarshal array"},
		{"another call's object: no entries", loadExchange(t, "mdlog-info"), func(c *Client) error {
			_, err := c.ListMDLog(ctx, "", 0, "", 1)
			return err
		}, "list mdlog shard 0", `no "entries"`},
		{"another call's object: no num_objects", loadExchange(t, "mdlog-shard-info"), func(c *Client) error {
			_, err := c.MDLogInfo(ctx)
			return err
		}, "get mdlog info", `no "num_objects"`},
		{"an object where the bilog list is expected", loadExchange(t, "bilog-info-shard"), func(c *Client) error {
			_, err := c.ListBILog(ctx, "b:1.2:0", "", 1)
			return err
		}, "list bilog of b:1.2:0", "cannot unmarshal object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplay(t, false)
			r.setPick(func(int, *http.Request) exchange { return tc.answer })
			err := tc.call(r.client(t))
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tc.op, de.Op)
			assert.Equal(t, tc.answer.Body, string(de.Body))
			assert.Error(t, errors.Unwrap(de), "the decoder's error")
			assert.Contains(t, err.Error(), tc.op)
			assert.Contains(t, err.Error(), tc.inText)
			assert.LessOrEqual(t, len(err.Error()), 600, "the body is shown in part")
			assert.Equal(t, int32(1), r.hits.Load(), "a bad 2xx answer is not retried")
		})
	}
}

func TestBadDataShardIsNeverSent(t *testing.T) {
	ctx := context.Background()
	r := newReplay(t, true, "datalog-info", "datalog-shard-info")
	c := r.client(t)
	for _, bad := range []int{128, 129, 100000, -1} {
		_, err := c.DataLogShardInfo(ctx, bad)
		require.ErrorIs(t, err, ErrBadShard)
		_, err = c.ListDataLog(ctx, bad, "", 1)
		require.ErrorIs(t, err, ErrBadShard)
		require.ErrorIs(t, c.TrimDataLog(ctx, bad, "00000000000000000000:00000000000000000001"), ErrBadShard)
		assert.Contains(t, err.Error(), "not in [0, 128)")
	}
	assert.Equal(t, int32(1), r.hits.Load(), "only the shard count was asked, once")
	_, err := c.DataLogShardInfo(ctx, atoi(t, recordedQuery(t, "datalog-shard-info")["id"]))
	require.NoError(t, err)
	assert.Equal(t, int32(2), r.hits.Load())
}

func TestArgumentChecks(t *testing.T) {
	ctx := context.Background()
	r := newReplay(t, false, "mdlog-info")
	c := r.client(t)
	for name, err := range map[string]error{
		"negative mdlog shard": func() error { _, err := c.ListMDLog(ctx, "", -1, "", 1); return err }(),
		"negative lock shard":  c.LockMDLogShard(ctx, "", -1, time.Second, "z", "l"),
		"empty locker":         c.LockMDLogShard(ctx, "", 1, time.Second, "z", ""),
		"empty zone":           c.UnlockMDLogShard(ctx, "", 1, "", "l"),
		"empty trim marker":    c.TrimMDLog(ctx, "", 1, ""),
		"empty bilog marker":   c.TrimBILog(ctx, "b:1", ""),
		"empty datalog marker": c.TrimDataLog(ctx, 1, ""),
		"empty section":        func() error { _, err := c.GetMetadata(ctx, "", "k"); return err }(),
		"section with a slash": func() error { _, err := c.ListMetadataKeys(ctx, "user/x", "", 1); return err }(),
		"empty key":            c.DeleteMetadata(ctx, "user", ""),
		"empty blob":           func() error { _, err := c.PutMetadata(ctx, "user", "k", nil, ""); return err }(),
		"crashing update type": func() error {
			_, err := c.PutMetadata(ctx, "bucket.instance", "b:1", []byte("{}"), UpdateByTimestamp)
			return err
		}(),
		"empty endpoint": func() error { _, _, err := c.ZoneID(ctx, " "); return err }(),
	} {
		assert.Error(t, err, name)
	}
	assert.Equal(t, int32(0), r.hits.Load(), "nothing sent")
}

func TestQueryEncoding(t *testing.T) {
	// Keys reach the gateway byte for byte, whatever they hold; the query
	// on the wire is the canonical one (sorted, %20 not '+').
	ctx := context.Background()
	r := newReplay(t, false, "metadata-get-bucket-instance")
	c := r.client(t)
	key := "tnt/b k+x$y:1.2=3&4%5~_-."
	_, err := c.GetMetadata(ctx, "bucket.instance", key)
	require.NoError(t, err)
	require.Len(t, r.queries, 1)
	assert.Equal(t, "key=tnt%2Fb%20k%2Bx%24y%3A1.2%3D3%264%255~_-.", r.queries[0])

	r = newReplay(t, false, "lock-ok")
	c = r.client(t)
	for _, d := range []time.Duration{0, 300 * time.Millisecond, time.Second, 1500 * time.Millisecond, 30 * time.Second} {
		require.NoError(t, c.LockMDLogShard(ctx, "p$1", 7, d, "zone", "me"))
	}
	var lengths []string
	for _, q := range r.queries {
		assert.True(t, strings.HasPrefix(q, "id=7&length="), q)
		assert.Contains(t, q, "&lock=&locker-id=me&period=p%241&type=metadata&zone-id=zone")
		_, rest, _ := strings.Cut(q, "length=")
		l, _, _ := strings.Cut(rest, "&")
		lengths = append(lengths, l)
	}
	assert.Equal(t, []string{"1", "1", "1", "2", "30"}, lengths, "whole seconds, rounded up, at least 1")
}

// recordHandler is a slog.Handler that calls f for every record.
type recordHandler func(slog.Record)

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h(r)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
