package chaos

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Links is an in-process toxiproxy server (no API listener: the suite adds
// and removes toxics through the library) with TCP proxies on 127.0.0.1.
type Links struct {
	server  *toxiproxy.ApiServer
	proxies map[string]*toxiproxy.Proxy
}

// NewLinks starts an empty toxiproxy server in this process.
func NewLinks() *Links {
	// The toxics log through zerolog's global logger at trace level:
	// keep only errors (this process is a test; nothing else uses zerolog).
	zerolog.SetGlobalLevel(zerolog.ErrorLevel)
	return &Links{
		server:  toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop()),
		proxies: map[string]*toxiproxy.Proxy{},
	}
}

// Add starts a proxy named name on a free 127.0.0.1 port in front of
// upstream (host:port) and returns its address.
func (l *Links) Add(name, upstream string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	p := toxiproxy.NewProxy(l.server, name, addr, upstream)
	if err := l.server.Collection.Add(p, true); err != nil {
		return "", fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	l.proxies[name] = p
	return addr, nil
}

// Toxic adds a toxic to proxy (stream "upstream" or "downstream"); its
// name must be unique on the proxy until removed.
func (l *Links) Toxic(proxy, name, typ, stream string, attrs string) error {
	p, ok := l.proxies[proxy]
	if !ok {
		return fmt.Errorf("no proxy %q", proxy)
	}
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1.0,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return fmt.Errorf("toxic %s on %s: %w", name, proxy, err)
	}
	return nil
}

// Clear removes every toxic of proxy (removing a timeout toxic closes the
// connections it held). toxiproxy 2.5.0 can wedge in the removal (a
// link's writer waits for the collection's lock that the removal holds
// while it waits for that writer: Shopify/toxiproxy#558, seen once in a
// make chaos run, which then hung until go test's timeout): after
// clearWait the run stops with that cause instead.
func (l *Links) Clear(proxy string) error {
	p, ok := l.proxies[proxy]
	if !ok {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Toxics.ResetToxics(context.Background())
	}()
	select {
	case <-done:
		return nil
	case <-time.After(clearWait):
		return fmt.Errorf("removing the toxics of proxy %s did not end within %v: toxiproxy wedged (Shopify/toxiproxy#558), not a fault of rgwsync; run again", proxy, clearWait)
	}
}

// clearWait bounds Clear.
const clearWait = 2 * time.Minute

// Close stops every proxy.
func (l *Links) Close() {
	for _, p := range l.proxies {
		p.Stop()
	}
}
