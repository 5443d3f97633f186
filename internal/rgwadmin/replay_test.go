package rgwadmin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	testAK = "SYSTEMACCESSKEY0001"
	testSK = "SystemSecretKey0000000000000000000000001"
)

// replay is an httptest server that answers with recorded exchanges of the
// real gateway: answer i for request i (the last one repeats), or pick's
// choice. With strict, each request must be the recorded one exactly
// (method, path, encoded query, body), which pins the query encoding the
// real gateway accepted.
type replay struct {
	t       *testing.T
	answers []exchange
	strict  bool
	hits    atomic.Int32
	srv     *httptest.Server

	mu      sync.Mutex
	pick    func(i int, r *http.Request) exchange // set with setPick
	hook    func(w http.ResponseWriter, r *http.Request) (handled bool)
	queries []string // raw queries received
}

func (r *replay) setPick(f func(i int, req *http.Request) exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pick = f
}

// setHook runs f on each request first; when it says handled, nothing is replayed.
func (r *replay) setHook(f func(w http.ResponseWriter, req *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = f
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newReplay(t *testing.T, strict bool, names ...string) *replay {
	t.Helper()
	r := &replay{t: t, strict: strict}
	for _, n := range names {
		r.answers = append(r.answers, loadExchange(t, n))
	}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	i := int(r.hits.Add(1)) - 1
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("read request body: %v", err)
	}
	r.mu.Lock()
	r.queries = append(r.queries, req.URL.RawQuery)
	pick, hook := r.pick, r.hook
	r.mu.Unlock()
	checkSigned(r.t, req, body)
	if hook != nil && hook(w, req) {
		return
	}
	var x exchange
	switch {
	case pick != nil:
		x = pick(i, req)
	default:
		x = r.answers[min(i, len(r.answers)-1)]
	}
	if r.strict {
		if req.Method != x.Request.Method || req.URL.Path != x.Request.Path || req.URL.RawQuery != x.Request.Query {
			r.t.Errorf("request %d: got %s %s?%s, recorded %s %s?%s", i, req.Method, req.URL.Path, req.URL.RawQuery,
				x.Request.Method, x.Request.Path, x.Request.Query)
		}
		if string(body) != x.Request.Body {
			r.t.Errorf("request %d: body differs from the recorded one", i)
		}
	}
	serveExchange(w, x)
}

func serveExchange(w http.ResponseWriter, x exchange) {
	for k, vs := range x.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Connection", "Date":
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(x.Status)
	_, _ = io.WriteString(w, x.Body)
}

// checkSigned checks the request carries a SigV4 signature by testAK for
// s3/us-east-1 over the headers RGW needs, and the body's real hash.
func checkSigned(t *testing.T, req *http.Request, body []byte) {
	t.Helper()
	auth := req.Header.Get("Authorization")
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	hs := strings.Split(signed, ";")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+testAK+"/") ||
		!strings.Contains(auth, "/us-east-1/s3/aws4_request,") ||
		!slices.Contains(hs, "host") || !slices.Contains(hs, "x-amz-content-sha256") || !slices.Contains(hs, "x-amz-date") {
		t.Errorf("Authorization %q: not a SigV4 s3/us-east-1 signature over host, x-amz-content-sha256, x-amz-date", auth)
	}
	sum := sha256.Sum256(body)
	if got := req.Header.Get("X-Amz-Content-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("X-Amz-Content-Sha256 %q is not the body's hash", got)
	}
	if _, err := time.Parse("20060102T150405Z", req.Header.Get("X-Amz-Date")); err != nil {
		t.Errorf("X-Amz-Date: %v", err)
	}
}

func (r *replay) client(t *testing.T, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{Endpoint: r.srv.URL, AccessKey: testAK, SecretKey: testSK, HTTPClient: r.srv.Client(),
		Logger: discard(), RetryBaseDelay: time.Millisecond, RetryMaxDelay: 2 * time.Millisecond}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// recordedQuery is the recorded request's query, parsed.
func recordedQuery(t *testing.T, name string) map[string]string {
	t.Helper()
	x := loadExchange(t, name)
	out := map[string]string{}
	for _, kv := range strings.Split(x.Request.Query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		out[unescape(t, k)] = unescape(t, v)
	}
	return out
}

func unescape(t *testing.T, s string) string {
	t.Helper()
	u, err := url.QueryUnescape(s)
	require.NoError(t, err)
	return u
}

// recordedJSON is the recorded answer's body, decoded generically: the
// tests compare the client's typed result with it.
func recordedJSON(t *testing.T, name string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(loadExchange(t, name).Body), &v))
	return v
}

func obj(v any) map[string]any { return v.(map[string]any) }
