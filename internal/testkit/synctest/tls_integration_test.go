//go:build integration

package synctest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

// The real exporter and applier over mTLS: full sync, then incremental.
// Plaintext and not-allowed callers are refused, the operator is served.
func TestTLSMetadataFullThenIncremental(t *testing.T) {
	e := NewEnv(t)
	e.TLS = true
	p := labtest.RandomName("tls")
	e.Only(p)
	alice := e.User(p+"-alice", "Alice")
	e.Bucket(alice, p+"-pre1")

	exp := e.StartExporter("")
	app := e.StartApplier("a1")
	e.WaitMetadataEqual(90*time.Second, Prefix(p))

	e.User(p+"-bob", "Bob")
	e.Lab.Admin(t, "zone-a", "user", "modify", "--uid="+p+"-alice", "--display-name=Alice over TLS")
	e.Bucket(alice, p+"-new1")
	e.RemoveBucket(alice, p+"-pre1")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))
	blob, err := e.Dst.GetMetadata(context.Background(), "user", p+"-alice")
	require.NoError(t, err)
	require.Contains(t, string(blob), "Alice over TLS")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{e.ExporterAddr, app.Addr} {
		st, err := StatusOf(ctx, addr, e.Dest, e.DialOption(addr))
		require.NoError(t, err, addr)
		require.NotEmpty(t, st.GetRole())

		_, err = StatusOf(ctx, addr, e.Dest, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.Equal(t, codes.Unavailable, status.Code(err), "plaintext to %s: %v", addr, err)

		_, err = StatusOf(ctx, addr, e.Dest, e.DialOptionAs(StrangerIdentity, addr))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "stranger to %s: %v", addr, err)
		require.ErrorContains(t, err, StrangerIdentity)
	}
	st, err := StatusOf(ctx, e.ExporterAddr, e.Dest, e.DialOption(e.ExporterAddr))
	require.NoError(t, err)
	require.Len(t, st.GetDestinations(), 1)
	require.Greater(t, st.GetDestinations()[0].GetEntriesApplied(), uint64(0))
	require.Contains(t, exp.Log(), "TLS certificate loaded")
	require.Contains(t, exp.Log(), "tls=true")
}

// grpcurl with the operator's certificate lists and calls the services of
// the exporter and of the applier; with a certificate of the CA that is
// not allowed it gets PermissionDenied (health checks excepted).
func TestTLSGrpcurl(t *testing.T) {
	grpcurl := findGrpcurl(t)
	e := NewEnv(t)
	e.TLS = true
	p := labtest.RandomName("tlsc")
	e.Only(p)
	e.StartExporter("")
	app := e.StartApplier("a1")
	e.User(p+"-x", "X")
	e.WaitMetadataEqual(60*time.Second, Prefix(p))

	c := e.Certs()
	as := func(identity string) []string {
		cert, key := c.Pair(identity)
		return []string{"-cacert", c.CA, "-cert", cert, "-key", key}
	}
	op := as(OperatorIdentity)
	out := run(t, grpcurl, append(op, e.ExporterAddr, "list")...)
	for _, s := range []string{"rgwsync.v1.ReplicationService", "rgwsync.v1.StatusService", "grpc.health.v1.Health"} {
		require.Contains(t, out, s)
	}
	// Equal metadata can be seen a moment before the full sync's last ack
	// moves its phase to done.
	e.WaitFullSyncDone(30 * time.Second)
	out = run(t, grpcurl, append(op, "-d", fmt.Sprintf(`{"destination":%q}`, e.Dest), e.ExporterAddr, "rgwsync.v1.StatusService/Status")...)
	require.Contains(t, out, `"role": "exporter"`)
	require.Contains(t, out, `"SHARD_PHASE_DONE"`)
	out = run(t, grpcurl, append(op, app.Addr, "rgwsync.v1.StatusService/Status")...)
	require.Contains(t, out, `"role": "applier"`)
	out = run(t, grpcurl, append(op, "-d", `{"service":""}`, app.Addr, "grpc.health.v1.Health/Check")...)
	require.Contains(t, out, "SERVING")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stranger := as(StrangerIdentity)
	for _, addr := range []string{e.ExporterAddr, app.Addr} {
		out = runFails(t, grpcurl, append(stranger, addr, "list")...)
		require.Contains(t, out, "PermissionDenied")
		out = runFails(t, grpcurl, append(stranger, "-d", "{}", addr, "rgwsync.v1.StatusService/Status")...)
		require.Contains(t, out, "PermissionDenied")
		require.Contains(t, out, StrangerIdentity)
		// Health needs a certificate of the CA only; grpcurl cannot show
		// it (it looks the method up by reflection first, refused too).
		out = runFails(t, grpcurl, append(stranger, "-d", `{"service":""}`, addr, "grpc.health.v1.Health/Check")...)
		require.Contains(t, out, "PermissionDenied")
		require.Contains(t, out, "failed to query for service descriptor")
		conn, err := grpc.NewClient(addr, e.DialOptionAs(StrangerIdentity, addr))
		require.NoError(t, err)
		hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		conn.Close()
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, hc.GetStatus())
	}
	// Without a client certificate, or in plaintext: no connection.
	out = runFails(t, grpcurl, "-cacert", c.CA, e.ExporterAddr, "list")
	require.Contains(t, strings.ToLower(out), "certificate required")
	runFails(t, grpcurl, "-plaintext", e.ExporterAddr, "list")
}

func runFails(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.Error(t, err, "%s %s must fail:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}
