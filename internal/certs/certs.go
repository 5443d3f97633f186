// Package certs makes the certificates of the exporter <-> applier link: a
// small private CA and the leaf certificates it signs (ECDSA P-256, Go
// crypto only, no openssl). rgwsync-certs is its command line; the
// integration tests use it directly.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside a CA directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// Defaults of the validity periods.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// backdate tolerates clocks of peers a little behind ours.
const backdate = 5 * time.Minute

// Authority is a CA that can sign leaf certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM is Cert as written to ca.pem.
	CertPEM []byte
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// Request describes a leaf certificate.
type Request struct {
	// Name is the subject CN and, when it is a valid host name, also a DNS
	// SAN (TLS clients match names against SANs only). Peers are allowed
	// by it (tls.allowed_peers).
	Name string
	DNS  []string
	IPs  []net.IP
	URIs []*url.URL
	// Validity defaults to DefaultLeafValidity; a leaf never outlives its
	// CA (NotAfter is clamped to the CA's).
	Validity time.Duration
	// Server and Client select the extended key usages; neither means both.
	Server, Client bool
	// Now is the issue time (tests); zero means time.Now().
	Now time.Time
}

// NewCA creates a self-signed CA named name.
func NewCA(name string, validity time.Duration, now time.Time) (*Authority, error) {
	if name == "" {
		return nil, errors.New("ca: name required")
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"rgwsync"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key, CertPEM: certPEM(der)}, nil
}

// Issue signs a leaf certificate for r.
func (a *Authority) Issue(r Request) (*Leaf, error) {
	if r.Name == "" {
		return nil, errors.New("issue: name required")
	}
	if r.Validity <= 0 {
		r.Validity = DefaultLeafValidity
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	if !r.Server && !r.Client {
		r.Server, r.Client = true, true
	}
	var usages []x509.ExtKeyUsage
	if r.Server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if r.Client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	dns := append([]string(nil), r.DNS...)
	if isHostName(r.Name) && !containsFold(dns, r.Name) {
		dns = append([]string{r.Name}, dns...)
	}
	for _, d := range dns {
		if !isHostName(strings.TrimPrefix(d, "*.")) {
			return nil, fmt.Errorf("issue: %q is not a DNS name", d)
		}
	}
	notAfter := r.Now.Add(r.Validity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	if !notAfter.After(r.Now) {
		return nil, fmt.Errorf("issue: the CA %q expired on %s", a.Cert.Subject.CommonName, a.Cert.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: r.Name, Organization: []string{"rgwsync"}},
		NotBefore:             r.Now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usages,
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           r.IPs,
		URIs:                  r.URIs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: create certificate: %w", r.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %s: parse certificate: %w", r.Name, err)
	}
	keyPEM, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM}, nil
}

// WriteFiles writes dir/ca.pem and dir/ca-key.pem (0600). It refuses to
// replace an existing CA: every certificate it signed would stop verifying.
func (a *Authority) WriteFiles(dir string) error {
	for _, f := range []string{CAFile, CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s exists: refusing to replace a CA (remove it first)", filepath.Join(dir, f))
		}
	}
	kp, err := keyPEM(a.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, CAKeyFile), kp, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CAFile), a.CertPEM, 0o644)
}

// LoadCA reads the CA that WriteFiles wrote into dir.
func LoadCA(dir string) (*Authority, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certPath)
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", keyPath)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return &Authority{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(blk)}, nil
}

// WriteFiles writes dir/NAME.pem and dir/NAME-key.pem (0600), each
// atomically, key first: a reloading peer that sees the new certificate
// before the new key keeps its old pair until both match.
func (l *Leaf) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := WriteFileAtomic(keyPath, l.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, WriteFileAtomic(certPath, l.CertPEM, 0o644)
}

// WriteFileAtomic writes b to path through a temporary file, fsync and
// rename, so a reader sees the old or the new content, never a mix.
func WriteFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// isHostName reports whether s is a DNS name (letters, digits, '-', dots).
func isHostName(s string) bool {
	if s == "" || len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
