package chaos

import (
	"bytes"
	"context"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Gateway fault modes.
const (
	GatewayOK       = ""
	Gateway500      = "http-500"
	Gateway503      = "http-503"
	GatewaySlow     = "slow"
	GatewayTruncate = "truncated-body"
	GatewayGarble   = "non-json-body"
)

// GatewayModes are the faults FaultGateway can play.
var GatewayModes = []string{Gateway500, Gateway503, GatewaySlow, GatewayTruncate, GatewayGarble}

// FaultGateway is an HTTP reverse proxy in front of a gateway that, while a
// mode is set, spoils a share of the answers: 500 or 503 without forwarding,
// a slow answer, or the gateway's answer with its body cut in half or
// replaced by something that is not JSON.
type FaultGateway struct {
	srv     *httptest.Server
	mode    atomic.Value // string
	share   float64
	mu      sync.Mutex
	rng     *rand.Rand
	spoiled atomic.Int64
}

// NewFaultGateway starts the proxy on 127.0.0.1 in front of target.
func NewFaultGateway(target string, seed uint64) (*FaultGateway, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	g := &FaultGateway{share: 0.3, rng: rand.New(rand.NewPCG(seed, 7))}
	g.mode.Store(GatewayOK)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // clients that give up (a killed applier) are expected
	rp.ModifyResponse = func(resp *http.Response) error {
		m, _ := resp.Request.Context().Value(modeKey{}).(string)
		if m != GatewayTruncate && m != GatewayGarble {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if m == GatewayTruncate {
			body = body[:len(body)/2]
		} else {
			body = []byte("<html><body>502 Bad Gateway (chaos)</body></html>")
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := g.mode.Load().(string)
		if m == GatewayOK || !g.hit() {
			rp.ServeHTTP(w, r)
			return
		}
		g.spoiled.Add(1)
		switch m {
		case Gateway500:
			http.Error(w, `{"Code":"InternalError"}`, http.StatusInternalServerError)
		case Gateway503:
			http.Error(w, `{"Code":"ServiceUnavailable"}`, http.StatusServiceUnavailable)
		case GatewaySlow:
			time.Sleep(time.Duration(1000+g.intN(3000)) * time.Millisecond)
			rp.ServeHTTP(w, r)
		default:
			rp.ServeHTTP(w, r.WithContext(withMode(r, m)))
		}
	}))
	return g, nil
}

type modeKey struct{}

func withMode(r *http.Request, m string) context.Context {
	return context.WithValue(r.Context(), modeKey{}, m)
}

func (g *FaultGateway) hit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rng.Float64() < g.share
}

func (g *FaultGateway) intN(n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rng.IntN(n)
}

// URL is the proxy's http://127.0.0.1:port.
func (g *FaultGateway) URL() string { return g.srv.URL }

// Set switches mode (GatewayOK: pass everything).
func (g *FaultGateway) Set(mode string) { g.mode.Store(mode) }

// Spoiled counts the answers spoiled so far.
func (g *FaultGateway) Spoiled() int64 { return g.spoiled.Load() }

// Close stops the proxy.
func (g *FaultGateway) Close() { g.srv.Close() }
