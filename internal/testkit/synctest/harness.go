// Package synctest runs the real rgwsync binaries against the real lab for
// integration tests, the demo and the fault suite: it builds the binaries,
// writes their configs, starts, kills (-9) and restarts them, drives a
// workload on the source zone and waits until the verifier finds the zones
// equal.
package synctest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/certs"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
	"github.com/rgwsync/rgwsync/internal/wire"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds rgwsync-exporter and rgwsync-applier once per process.
func Binaries(t labtest.TB) (exporterBin, applierBin string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "rgwsync-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{{"rgwsync-exporter", "./exporter"}, {"rgwsync-applier", "./applier"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = labtest.Root()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "rgwsync-exporter"), filepath.Join(binDir, "rgwsync-applier")
}

// RemoveBinaries removes what Binaries built (a TestMain or a main calls
// it at the end; each process built its own copy under $TMPDIR).
func RemoveBinaries() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// Env is one exporter/appliers deployment against the lab, with its own
// destination name (so its bounds start empty) and lock id base (so leases
// left by an earlier test cannot interfere).
type Env struct {
	T            labtest.TB
	Lab          *labtest.Lab
	Dir          string
	Dest         string
	LockBase     int
	ExporterAddr string
	// ExporterDial, when set, is the address appliers dial instead of
	// ExporterAddr (a link fault proxy in front of the exporter). The TLS
	// server name stays the exporter's identity.
	ExporterDial string
	Src, Dst     *rgwadmin.Client
	// DestEndpoint is where appliers write (a fault proxy may sit there).
	DestEndpoint string
	LeaseLength  time.Duration
	only         string
	// TLS, set before the services start, runs the link and the status
	// endpoints over mTLS with the certificates of Certs.
	TLS      bool
	exporter *Proc
	certs    *Certs
}

// Certs is the PKI of a TLS env, in Dir/certs: a CA and, each with
// 127.0.0.1 as an IP SAN, the exporter (server), the applier (client and
// server, for its status endpoint), an operator and a stranger (clients).
// The exporter allows the applier and the operator; the applier allows the
// exporter and the operator; nobody allows the stranger.
type Certs struct {
	Dir string
	CA  string
}

// Identities of the certificates of Certs (their CN and DNS SAN).
const (
	ExporterIdentity = "exporter.rgwsync"
	ApplierIdentity  = "applier.rgwsync"
	OperatorIdentity = "operator.rgwsync"
	StrangerIdentity = "stranger.rgwsync"
)

// Pair returns the certificate and key files of identity.
func (c *Certs) Pair(identity string) (cert, key string) {
	return filepath.Join(c.Dir, identity+".pem"), filepath.Join(c.Dir, identity+"-key.pem")
}

// Client returns the TLS settings of a client presenting identity.
func (c *Certs) Client(identity string) config.TLS {
	cert, key := c.Pair(identity)
	return config.TLS{CA: c.CA, Cert: cert, Key: key}
}

// Certs makes the env's certificates on first use.
func (e *Env) Certs() *Certs {
	e.T.Helper()
	if e.certs != nil {
		return e.certs
	}
	dir := filepath.Join(e.Dir, "certs")
	ca, err := certs.NewCA("rgwsync test CA", 0, time.Time{})
	if err != nil {
		e.T.Fatal(err)
	}
	if err := ca.WriteFiles(dir); err != nil {
		e.T.Fatal(err)
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	for _, r := range []certs.Request{
		{Name: ExporterIdentity, IPs: loopback, Server: true},
		{Name: ApplierIdentity, IPs: loopback, Server: true, Client: true},
		{Name: OperatorIdentity, Client: true},
		{Name: StrangerIdentity, Client: true},
	} {
		l, err := ca.Issue(r)
		if err != nil {
			e.T.Fatal(err)
		}
		if _, _, err := l.WriteFiles(dir, r.Name); err != nil {
			e.T.Fatal(err)
		}
	}
	e.certs = &Certs{Dir: dir, CA: filepath.Join(dir, certs.CAFile)}
	return e.certs
}

// tlsSection is the tls: block of role ("exporter" or "applier").
func (e *Env) tlsSection(role string) string {
	if !e.TLS {
		return "tls:\n  insecure: true\n"
	}
	c := e.Certs()
	if role == "exporter" {
		cert, key := c.Pair(ExporterIdentity)
		return fmt.Sprintf("tls:\n  ca: %s\n  cert: %s\n  key: %s\n  allowed_peers: [%s, %s]\n",
			c.CA, cert, key, ApplierIdentity, OperatorIdentity)
	}
	cert, key := c.Pair(ApplierIdentity)
	return fmt.Sprintf("tls:\n  ca: %s\n  cert: %s\n  key: %s\n  server_name: %s\n  allowed_peers: [%s, %s]\n",
		c.CA, cert, key, ExporterIdentity, ExporterIdentity, OperatorIdentity)
}

// DialOption is how tests and operators reach the env's services: as the
// operator over mTLS when e.TLS, else plaintext. addr is the service's.
func (e *Env) DialOption(addr string) grpc.DialOption {
	e.T.Helper()
	if !e.TLS {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return e.DialOptionAs(OperatorIdentity, addr)
}

// DialOptionAs dials addr over mTLS presenting identity's certificate.
func (e *Env) DialOptionAs(identity, addr string) grpc.DialOption {
	e.T.Helper()
	creds, err := tlsconfig.ClientCreds(e.Certs().Client(identity), addr, slog.New(slog.DiscardHandler))
	if err != nil {
		e.T.Fatal(err)
	}
	return grpc.WithTransportCredentials(creds)
}

// NewEnv prepares a deployment.
func NewEnv(t labtest.TB) *Env {
	t.Helper()
	lab := labtest.Get(t)
	e := &Env{
		T: t, Lab: lab, Dir: t.TempDir(),
		Dest:         labtest.RandomName("dest-"),
		LockBase:     100000 + int(time.Now().UnixNano()%1000)*1000,
		ExporterAddr: FreeAddr(t),
		DestEndpoint: lab.ZoneB,
		LeaseLength:  6 * time.Second,
	}
	var err error
	e.Src, err = rgwadmin.New(rgwadmin.Config{Endpoint: lab.ZoneA, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	e.Dst, err = rgwadmin.New(rgwadmin.Config{Endpoint: lab.ZoneB, AccessKey: lab.AccessKey, SecretKey: lab.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// FreeAddr returns a loopback host:port free now.
func FreeAddr(t labtest.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ExporterConfig writes the exporter's YAML and returns its path.
func (e *Env) ExporterConfig(extra string) string {
	p := filepath.Join(e.Dir, "exporter.yaml")
	writeFile(e.T, p, fmt.Sprintf(`listen: %s
bounds_path: %s
source:
  endpoint: %s
  access_key: %s
  secret_key: %s
%s%ssync:
  poll_max: 200ms
  retry_min: 500ms
  retry_max: 2s
%s`, e.ExporterAddr, filepath.Join(e.Dir, "bounds.db"), e.Lab.ZoneA, e.Lab.AccessKey, e.Lab.SecretKey, e.tlsSection("exporter"),
		e.onlyFilter(extra), extra))
	return p
}

// Only limits the env's exporter to buckets named prefix* (and tenants'
// */prefix*): a test's destination then does not full-sync every bucket
// earlier tests left in the shared lab. Users always replicate.
func (e *Env) Only(prefix string) { e.only = prefix }

func (e *Env) onlyFilter(extra string) string {
	if e.only == "" || strings.Contains(extra, "filter:") {
		return ""
	}
	return fmt.Sprintf("filter:\n  include: [%q, %q]\n", e.only+"*", "*/"+e.only+"*")
}

// Units is the number of units of work (shards) the exporter keeps bounds
// for, for this env's destination: 65 for metadata plus the data log's.
func (e *Env) Units() int {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// An applier connects only after the exporter initialised the
	// destination (metadata and data bounds): count from then on.
	// The count must also hold still over two readings: on a loaded machine
	// a reading was seen without the data shards.
	last := -1
	for ctx.Err() == nil {
		st, err := StatusOf(ctx, e.ExporterAddr, e.Dest, e.DialOption(e.ExporterAddr))
		if err == nil && len(st.GetDestinations()) > 0 && len(st.GetDestinations()[0].GetAppliers()) > 0 {
			n := len(st.GetDestinations()[0].GetShards())
			if n == last {
				return n
			}
			last = n
			time.Sleep(500 * time.Millisecond)
			continue
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.T.Fatalf("no applier connected to the exporter within 10s")
	return 0
}

// WaitFullSyncDone waits for the metadata full sync of the env's
// destination.
func (e *Env) WaitFullSyncDone(timeout time.Duration) {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := e.BoundsOf(ctx, rgwlog.Unit{Log: rgwlog.LogMetadataFull})
		cancel()
		if err == nil && b.GetMarker() == "3|" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.T.Fatalf("metadata full sync not done after %s", timeout)
}

// ProxyDest puts an HTTP proxy in front of zone-b for the appliers started
// after it: intercept sees every request first, and answers it itself by
// returning true (it may also just delay it). Closed when the test ends,
// after the services.
func (e *Env) ProxyDest(intercept func(w http.ResponseWriter, r *http.Request) bool) {
	e.T.Helper()
	target, err := url.Parse(e.Lab.ZoneB)
	if err != nil {
		e.T.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	e.T.Cleanup(proxy.Close)
	e.DestEndpoint = proxy.URL
}

// ApplierConfig writes an applier's YAML and returns its path.
func (e *Env) ApplierConfig(id, listen string) string {
	p := filepath.Join(e.Dir, "applier-"+id+".yaml")
	zone := ""
	if e.DestEndpoint != e.Lab.ZoneB {
		// Behind a proxy the endpoint is not in the period: name the zone.
		id, _, err := e.Dst.ZoneID(context.Background(), e.Lab.ZoneB)
		if err != nil {
			e.T.Fatal(err)
		}
		zone = "  zone_id: " + id + "\n"
	}
	dial := e.ExporterAddr
	if e.ExporterDial != "" {
		dial = e.ExporterDial
	}
	writeFile(e.T, p, fmt.Sprintf(`id: %s
audit_log: %s
exporter: %s
listen: %s
destination:
%s  name: %s
  endpoint: %s
  access_key: %s
  secret_key: %s
lease:
  length: %s
  renew: %s
  id_base: %d
%s`, id, e.AuditPath(), dial, listen, zone, e.Dest, e.DestEndpoint, e.Lab.AccessKey, e.Lab.SecretKey,
		e.LeaseLength, e.LeaseLength/3, e.LockBase, e.tlsSection("applier")))
	return p
}

func writeFile(t labtest.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Proc is a started binary.
type Proc struct {
	Name string
	Addr string // its gRPC address
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start runs bin with args, logging to the env's dir.
func (e *Env) Start(name, bin string, args ...string) *Proc {
	e.T.Helper()
	logPath := filepath.Join(e.Dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		e.T.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	p := &Proc{Name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	e.T.Cleanup(func() {
		p.Kill()
		if e.T.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			e.T.Logf("--- last lines of %s (%s):\n%s", name, logPath, strings.Join(lines, "\n"))
			// RGWSYNC_KEEP_LOGS=DIR keeps a failed test's whole logs
			// (t.TempDir is removed after the test).
			if dir := os.Getenv("RGWSYNC_KEEP_LOGS"); dir != "" {
				keep := filepath.Join(dir, filepath.Base(filepath.Dir(e.Dir))) // the test's name and a number
				if os.MkdirAll(keep, 0o755) == nil && os.WriteFile(filepath.Join(keep, filepath.Base(logPath)), b, 0o644) == nil {
					e.T.Logf("whole log kept in %s", keep)
				}
			}
		}
	})
	return p
}

// StartExporter starts (or restarts) the exporter and waits until it serves.
func (e *Env) StartExporter(extraConfig string) *Proc {
	e.T.Helper()
	exp, _ := Binaries(e.T)
	p := e.Start("exporter", exp, "-config", e.ExporterConfig(extraConfig))
	p.Addr = e.ExporterAddr
	e.waitServing(p)
	e.exporter = p
	return p
}

// StartApplier starts an applier with the given id.
func (e *Env) StartApplier(id string) *Proc {
	e.T.Helper()
	_, app := Binaries(e.T)
	listen := FreeAddr(e.T)
	p := e.Start("applier-"+id, app, "-config", e.ApplierConfig(id, listen))
	p.Addr = listen
	e.waitServing(p)
	return p
}

func (e *Env) waitServing(p *Proc) {
	e.T.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			e.T.Fatalf("%s exited at start: %v\n%s", p.Name, p.err, b)
		default:
		}
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.T.Fatalf("%s did not listen on %s within 60s", p.Name, p.Addr)
}

// PID is the process id (for /proc/PID/status: the benchmark reads VmHWM).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL (kill -9) and waits for the process to go.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits (graceful shutdown), up to 30s.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.Kill()
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", p.Name)
	}
}

// Signal sends sig (SIGSTOP/SIGCONT for freezing).
func (p *Proc) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// StatusOf calls StatusService.Status on addr, plaintext unless opts say
// otherwise (Env.DialOption).
func StatusOf(ctx context.Context, addr string, destination string, opts ...grpc.DialOption) (*v1.StatusResponse, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return v1.NewStatusServiceClient(conn).Status(ctx, &v1.StatusRequest{Destination: destination})
}

// BoundsOf calls StatusService.GetBounds on the exporter.
func (e *Env) BoundsOf(ctx context.Context, u rgwlog.Unit) (*v1.GetBoundsResponse, error) {
	conn, err := grpc.NewClient(e.ExporterAddr, e.DialOption(e.ExporterAddr))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return v1.NewStatusServiceClient(conn).GetBounds(ctx, &v1.GetBoundsRequest{Destination: e.Dest, LogType: wire.LogType(u.Log), Shard: u.Shard})
}
