//go:build integration

package rgwadmin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Stop()
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// labClient is a client of one lab zone signed with the system user's keys
// (or ak/sk when given).
func labClient(t *testing.T, endpoint string, keys ...string) *Client {
	t.Helper()
	lab := labtest.Get(t)
	ak, sk := lab.AccessKey, lab.SecretKey
	if len(keys) == 2 {
		ak, sk = keys[0], keys[1]
	}
	c, err := New(Config{Endpoint: endpoint, AccessKey: ak, SecretKey: sk,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxRetries: 2, RetryBaseDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// s3Do sends a signed S3 request (bucket/object writes for the logs to
// have something in them) through the client's own request path.
func s3Do(t *testing.T, c *Client, method, path string, body []byte) *response {
	t.Helper()
	resp, err := c.do(testCtx(t), request{op: "s3 " + method + " " + path, method: method, path: path,
		query: url.Values{}, body: body})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return resp
}

// labUser creates a user on zone-a with radosgw-admin (the mdlog gets its
// entries) and returns its uid ("tenant$name" when tenant is given) and keys.
func labUser(t *testing.T, tenant string) (uid, ak, sk string) {
	t.Helper()
	lab := labtest.Get(t)
	name := labtest.RandomName("u")
	ak = strings.ToUpper(labtest.RandomName("AK")) + "00000000"
	sk = labtest.RandomName("sk") + "0000000000000000000000000000"
	args := []string{"user", "create", "--uid=" + name, "--display-name=rgwadmin test " + name,
		"--access-key=" + ak, "--secret=" + sk}
	uid = name
	if tenant != "" {
		args = append(args, "--tenant="+tenant)
		uid = tenant + "$" + name
	}
	lab.Admin(t, "zone-a", args...)
	return uid, ak, sk
}

// labBucket creates a bucket owned by the signer of c, with objects, and
// returns its bucket key ("[tenant/]name") and bucket.instance key
// ("[tenant/]name:bucket_id"), read with the system user's client admin.
func labBucket(t *testing.T, c, admin *Client, tenant string, objects int) (key, instance string) {
	t.Helper()
	name := labtest.RandomName("b")
	s3Do(t, c, http.MethodPut, "/"+name, nil)
	for i := range objects {
		s3Do(t, c, http.MethodPut, fmt.Sprintf("/%s/obj-%03d", name, i), []byte(fmt.Sprintf("object %d of %s", i, name)))
	}
	key = name
	if tenant != "" {
		key = tenant + "/" + name
	}
	return key, bucketInstanceKey(t, admin, key)
}

func bucketInstanceKey(t *testing.T, c *Client, bucketKey string) string {
	t.Helper()
	blob, err := c.GetMetadata(testCtx(t), "bucket", bucketKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rgwlog.BucketID(blob)
	if err != nil || id == "" {
		t.Fatalf("bucket %s: no bucket_id in %s (%v)", bucketKey, blob, err)
	}
	return bucketKey + ":" + id
}

// zoneIDByAdmin is the zone id as radosgw-admin reports it.
func zoneIDByAdmin(t *testing.T, zone string) string {
	t.Helper()
	out := labtest.Get(t).Admin(t, zone, "zone", "get")
	var z struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &z); err != nil || z.ID == "" {
		t.Fatalf("zone get %s: %v\n%s", zone, err, out)
	}
	return z.ID
}
