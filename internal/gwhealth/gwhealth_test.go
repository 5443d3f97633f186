package gwhealth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// A gateway that stops answering is down at its first failed request and
// up again at its first answer; a 503 is down, a 500 or 404 is an answer,
// a request its caller cancelled says nothing.
func TestTrackerFollowsTheAnswers(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
	defer srv.Close()
	var states []bool
	tr := New("destination", nil, func(up bool) { states = append(states, up) })
	c := &http.Client{Transport: tr.Wrap(nil)}
	get := func(url string) {
		t.Helper()
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
		}
	}
	get(srv.URL)
	up, _, _ := tr.State()
	require.True(t, up)

	code = http.StatusServiceUnavailable
	get(srv.URL)
	up, _, why := tr.State()
	require.False(t, up)
	require.Contains(t, why, "status 503")

	code = http.StatusInternalServerError
	get(srv.URL)
	up, _, _ = tr.State()
	require.True(t, up, "a 500 is an answer")

	// Nothing listens there any more: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	get("http://" + addr + "/")
	up, _, why = tr.State()
	require.False(t, up)
	require.Contains(t, why, "refused")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, _ = c.Do(req)
	up, _, _ = tr.State()
	require.False(t, up, "a cancelled request says nothing")
	require.Equal(t, []bool{true, false, true, false}, states)
}
