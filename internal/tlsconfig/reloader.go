package tlsconfig

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rgwsync/rgwsync/internal/config"
)

// reloader keeps the key pair and the CA pool of tls.cert, tls.key and
// tls.ca, re-reading the files when a handshake asks for them and the last
// check is older than interval. The files are small: a check reads them and
// compares their hash, so a rewrite within the same mtime tick or a rename
// over them is seen too. New files that do not load (a half-written
// rotation, a key not matching its certificate, a certificate without the
// usage needed) are refused with one error in the log, and the material in
// use stays until files that load appear. No goroutine: nothing to stop.
type reloader struct {
	certPath, keyPath, caPath string
	usage                     x509.ExtKeyUsage
	interval                  time.Duration
	log                       *slog.Logger

	mu      sync.Mutex
	cur     *material
	checked time.Time
	refused [sha256.Size]byte // hash of the files last refused
	readErr string            // last read error logged
}

type material struct {
	cert *tls.Certificate // Leaf set
	pool *x509.CertPool
	sum  [sha256.Size]byte
}

// newReloader loads the files; at start, files that do not load are an
// error.
func newReloader(c config.TLS, usage x509.ExtKeyUsage, interval time.Duration, log *slog.Logger) (*reloader, error) {
	r := &reloader{certPath: c.Cert, keyPath: c.Key, caPath: c.CA, usage: usage, interval: interval, log: log}
	certPEM, keyPEM, caPEM, sum, err := r.read()
	if err != nil {
		return nil, err
	}
	m, err := r.parse(certPEM, keyPEM, caPEM, sum)
	if err != nil {
		return nil, err
	}
	r.cur, r.checked = m, time.Now()
	r.logLoaded("TLS certificate loaded", m)
	return r, nil
}

// get returns the material to use now, reloading it first if due.
func (r *reloader) get() *material {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		r.reload()
	}
	return r.cur
}

func (r *reloader) reload() {
	certPEM, keyPEM, caPEM, sum, err := r.read()
	if err != nil {
		// A rotation may be replacing the files right now: keep the
		// current material; say it once per distinct error.
		if err.Error() != r.readErr {
			r.readErr = err.Error()
			r.log.Error("TLS files unreadable; keeping the certificate in use", "err", err,
				"serial", fmt.Sprintf("%x", r.cur.cert.Leaf.SerialNumber))
		}
		return
	}
	r.readErr = ""
	if sum == r.cur.sum || sum == r.refused {
		return
	}
	m, err := r.parse(certPEM, keyPEM, caPEM, sum)
	if err != nil {
		r.refused = sum
		r.log.Error("new TLS files refused; keeping the certificate in use", "err", err,
			"serial", fmt.Sprintf("%x", r.cur.cert.Leaf.SerialNumber))
		return
	}
	r.cur = m
	r.logLoaded("TLS certificate reloaded", m)
}

func (r *reloader) read() (certPEM, keyPEM, caPEM []byte, sum [sha256.Size]byte, err error) {
	if certPEM, err = os.ReadFile(r.certPath); err != nil {
		return nil, nil, nil, sum, fmt.Errorf("tls.cert: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.keyPath); err != nil {
		return nil, nil, nil, sum, fmt.Errorf("tls.key: %w", err)
	}
	if caPEM, err = os.ReadFile(r.caPath); err != nil {
		return nil, nil, nil, sum, fmt.Errorf("tls.ca: %w", err)
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	copy(sum[:], h.Sum(nil))
	return certPEM, keyPEM, caPEM, sum, nil
}

func (r *reloader) parse(certPEM, keyPEM, caPEM []byte, sum [sha256.Size]byte) (*material, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", r.certPath, r.keyPath, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls.cert %s: %w", r.certPath, err)
		}
	}
	if eku := cert.Leaf.ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, r.usage) && !slices.Contains(eku, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("tls.cert %s (%s) is not for TLS %s: %w", r.certPath, Describe(cert.Leaf), usageName(r.usage), errUsage)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tls.ca " + r.caPath + ": no PEM certificate found")
	}
	return &material{cert: &cert, pool: pool, sum: sum}, nil
}

var errUsage = errors.New("issue it with `rgwsync-certs issue -server -client` (both usages)")

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "servers (the exporter; the applier's status listen)"
	}
	return "clients"
}

func (r *reloader) logLoaded(msg string, m *material) {
	leaf := m.cert.Leaf
	r.log.Info(msg, "cert", r.certPath, "subject", leaf.Subject.CommonName, "serial", fmt.Sprintf("%x", leaf.SerialNumber),
		"not_after", leaf.NotAfter.Format(time.RFC3339), "ca", r.caPath)
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		r.log.Error("TLS certificate expired: peers will refuse it", "cert", r.certPath, "not_after", leaf.NotAfter.Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		r.log.Error("TLS certificate not valid yet: peers will refuse it", "cert", r.certPath, "not_before", leaf.NotBefore.Format(time.RFC3339))
	case leaf.NotAfter.Sub(now) < 14*24*time.Hour:
		r.log.Warn("TLS certificate expires soon", "cert", r.certPath, "not_after", leaf.NotAfter.Format(time.RFC3339))
	}
}
