// Package gwhealth tells whether a gateway answers, from the requests the
// service makes to it anyway: no probe of its own, and a gateway that
// stops answering shows at its first failed request (issue #16), not only
// as retries piling up.
package gwhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

// Tracker keeps a gateway's state: answering (up), or not since a time,
// with the last failure. A request that gets no HTTP answer (connection
// refused or reset, a timeout, a cut body) or answers 502/503/504 marks it
// down; any other answer marks it up. A request its caller cancelled says
// nothing.
type Tracker struct {
	name    string
	log     *slog.Logger
	onState func(up bool) // a metric's setter; nil: none

	mu      sync.Mutex
	up      bool
	since   time.Time
	lastErr string
}

// New returns a tracker of the gateway name ("destination", "source"),
// taken as up until a request says otherwise. onState (may be nil) is told
// each change, and the first state.
func New(name string, log *slog.Logger, onState func(up bool)) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{name: name, log: log, onState: onState, up: true, since: time.Now()}
	if onState != nil {
		onState(true)
	}
	return t
}

// State is the gateway's state: up, since when, and (down) the failure.
func (t *Tracker) State() (up bool, since time.Time, lastErr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.up, t.since, t.lastErr
}

// Wrap returns rt (nil: http.DefaultTransport) reporting to t.
func (t *Tracker) Wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripper{t: t, next: rt}
}

type roundTripper struct {
	t    *Tracker
	next http.RoundTripper
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil && !errors.Is(err, context.DeadlineExceeded):
		// cancelled by its caller: says nothing of the gateway
	case err != nil:
		r.t.set(false, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusGatewayTimeout:
		r.t.set(false, fmt.Sprintf("%s %s: status %d", req.Method, req.URL.Path, resp.StatusCode))
	default:
		r.t.set(true, "")
	}
	return resp, err
}

func (t *Tracker) set(up bool, why string) {
	t.mu.Lock()
	changed := t.up != up
	if changed {
		t.up, t.since = up, time.Now()
	}
	if !up {
		t.lastErr = why
	}
	t.mu.Unlock()
	if !changed {
		return
	}
	if up {
		t.log.Info("gateway answers again", "gateway", t.name)
	} else {
		t.log.Error("gateway does not answer", "gateway", t.name, "err", why)
	}
	if t.onState != nil {
		t.onState(up)
	}
}

// Instrument returns an HTTP client with base's settings (nil: none) whose
// requests report to a new tracker of the gateway name, and the tracker.
// The gauge rgwsync_<subsystem>_<name>_up, registered on reg (nil: not
// registered), is 1 while the gateway answers, 0 from its first request
// that got no answer.
func Instrument(reg prometheus.Registerer, subsystem, name string, log *slog.Logger, base *http.Client) (*http.Client, *Tracker) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: subsystem, Name: name + "_up",
		Help: "1 while the " + name + " gateway answers (its last request got an HTTP answer other than 502/503/504), 0 from its first request that got none."})
	if reg != nil {
		reg.MustRegister(g)
	}
	t := New(name, log, func(up bool) {
		if up {
			g.Set(1)
		} else {
			g.Set(0)
		}
	})
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.Transport = t.Wrap(c.Transport)
	return c, t
}

// Fill sets the gateway fields of a status answer (nothing for a nil
// tracker).
func (t *Tracker) Fill(r *v1.StatusResponse) {
	if t == nil {
		return
	}
	up, since, why := t.State()
	r.GatewayDown, r.GatewayStateSince = !up, timestamppb.New(since)
	if !up {
		r.GatewayError = why
	}
}
