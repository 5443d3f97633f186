package rgwadmin

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
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
