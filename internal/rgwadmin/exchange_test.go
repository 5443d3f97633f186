package rgwadmin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// exchange is one request to the real gateway and its answer, as the
// recorder (integration_test.go, -record) captured it into testdata/.
type exchange struct {
	Note    string `json:"note,omitempty"` // how it was obtained
	Request struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Query  string `json:"query"` // as sent: the signer's canonical query
		Body   string `json:"body,omitempty"`
	} `json:"request"`
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

func exchangePath(name string) string { return filepath.Join("testdata", name+".json") }

func loadExchange(t testing.TB, name string) exchange {
	t.Helper()
	b, err := os.ReadFile(exchangePath(name))
	if err != nil {
		t.Fatalf("recorded answer %s: %v (record with: go test -tags integration -run TestRecordAnswers -record ./internal/rgwadmin/)", name, err)
	}
	var x exchange
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatalf("recorded answer %s: %v", name, err)
	}
	return x
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
