//go:build integration

package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/certs"
	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
	"github.com/rgwsync/rgwsync/internal/testkit/synctest"
)

// Bad input the other suites do not cover already (malformed and unknown
// config keys, wrong secret keys: synctest.TestBadConfigFailsClearly and
// internal/config; a certificate of an unknown CA or not on the allow-list:
// internal/tlsconfig and synctest's TLS tests; a corrupt bounds value in
// the store: internal/checkpoint). Here, against the real binaries: an
// expired applier certificate, a message over the exporter's size limit,
// and bytes flipped in the bounds file of a stopped exporter.

// An applier whose certificate has expired is refused at the handshake:
// both sides say so, and nothing is applied.
func TestExpiredCertificateRefused(t *testing.T) {
	e := synctest.NewEnv(t)
	e.TLS = true
	p := labtest.RandomName("x")
	e.Only(p)
	c := e.Certs()
	ca, err := certs.LoadCA(c.Dir)
	require.NoError(t, err)
	e.StartExporter("")
	// Reissue the applier's certificate, valid for a day that ended
	// yesterday, in place.
	leaf, err := ca.Issue(certs.Request{Name: synctest.ApplierIdentity, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		Client: true, Server: true, Now: time.Now().Add(-48 * time.Hour), Validity: 24 * time.Hour})
	require.NoError(t, err)
	_, _, err = leaf.WriteFiles(c.Dir, synctest.ApplierIdentity)
	require.NoError(t, err)
	e.User(p+"-u", "U")

	_, app := synctest.Binaries(t)
	cfg := e.ApplierConfig("expired", synctest.FreeAddr(t))
	a := e.Start("applier-expired", app, "-config", cfg)
	require.Eventually(t, func() bool {
		l := strings.ToLower(a.Log())
		return strings.Contains(l, "expired")
	}, 30*time.Second, 200*time.Millisecond, "the applier must say its certificate expired")
	t.Logf("applier log:\n%s", tail(a.Log(), 10))
	// Give it time to try: still nothing on the destination.
	time.Sleep(5 * time.Second)
	_, err = e.Dst.GetMetadata(context.Background(), "user", p+"-u")
	require.Error(t, err, "nothing may be applied by an applier with an expired certificate")
	a.Kill()
}

// A message over the exporter's receive limit (16 MiB) is refused with
// ResourceExhausted; the exporter keeps serving.
func TestMessageOverSizeLimitRefused(t *testing.T) {
	e := synctest.NewEnv(t)
	e.Only(labtest.RandomName("m"))
	e.StartExporter("")
	conn, err := grpc.NewClient(e.ExporterAddr, e.DialOption(e.ExporterAddr),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := v1.NewReplicationServiceClient(conn).Replicate(ctx)
	require.NoError(t, err)
	huge := strings.Repeat("x", 17<<20)
	_ = st.Send(&v1.ReplicateRequest{Msg: &v1.ReplicateRequest_Hello{Hello: &v1.Hello{Destination: e.Dest, ApplierId: huge}}})
	_, err = st.Recv()
	require.Error(t, err)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "got %v", err)
	t.Logf("refused: %v", err)
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "the exporter still serves")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())
}

// Bytes flipped in the bounds file of a stopped exporter: it refuses to
// start, naming the file and the bound, and leaves the file as it is (no
// reset to zero, on this start or the next).
func TestCorruptBoundsFileRefused(t *testing.T) {
	e := synctest.NewEnv(t)
	p := labtest.RandomName("b")
	e.Only(p)
	exp := e.StartExporter("")
	e.StartApplier("a1")
	e.User(p+"-u", "U")
	e.WaitMetadataEqual(60*time.Second, synctest.Prefix(p))
	require.NoError(t, exp.Stop())

	path := filepath.Join(e.Dir, "bounds.db")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	// Every copy of a stored bound's JSON (live pages and freed ones)
	// gets one byte flipped: "marker" becomes "markes".
	n := 0
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`"marker":`))
		if j < 0 {
			break
		}
		raw[i+j+6] ^= 0x01
		i += j + 9
		n++
	}
	require.Greater(t, n, 0, "no bound found in %s", path)
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	before := sha256.Sum256(raw)

	exporterBin, _ := synctest.Binaries(t)
	for attempt := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, exporterBin, "-config", filepath.Join(e.Dir, "exporter.yaml")).CombinedOutput()
		cancel()
		require.Error(t, err, "attempt %d: the exporter must refuse a corrupt bounds file:\n%s", attempt, out)
		require.Contains(t, string(out), "checkpoint corrupt", "attempt %d", attempt)
		require.Contains(t, string(out), path)
		require.Contains(t, string(out), "bound "+e.Dest+"/", "the message names the bound")
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, before, sha256.Sum256(after), "attempt %d: the bounds file must be left as it was", attempt)
		t.Logf("attempt %d refused: %s", attempt, tail(string(out), 3))
	}
}
