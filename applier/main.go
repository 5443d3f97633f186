// Command rgwsync-applier runs beside the destination gateway: it leases
// shards on the destination, pulls their batches from rgwsync-exporter,
// writes them into the destination and acks.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/applier"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/gwhealth"
	"github.com/rgwsync/rgwsync/internal/lease"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/rpcserver"
	"github.com/rgwsync/rgwsync/internal/statuscli"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rgwsync-applier:", err)
		var exit *statuscli.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.Code)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "status" {
		return statuscli.Main(args[1:], "127.0.0.1:7444", os.Stdout)
	}
	if len(args) > 0 && args[0] == "verify" {
		return verifyMain(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "resync" {
		return resyncMain(args[1:], os.Stdout, os.Stderr)
	}
	cl := config.NewCommandLine[config.Applier]("rgwsync-applier")
	cl.Override("listen", "listen", "status gRPC listen address", func(c *config.Applier) *string { return &c.Listen })
	cl.Override("metrics-listen", "metrics_listen", "Prometheus /metrics listen address", func(c *config.Applier) *string { return &c.MetricsListen })
	cl.Override("exporter", "exporter", "exporter host:port", func(c *config.Applier) *string { return &c.Exporter })
	cl.Override("id", "id", "applier id, unique per process", func(c *config.Applier) *string { return &c.ID })
	cl.Override("log-level", "log_level", "debug, info, warn or error", func(c *config.Applier) *string { return &c.LogLevel })
	cfg, err := cl.Load(args, config.LoadApplier)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.ID == "" {
		cfg.ID = config.DefaultID()
	}
	log := rpcserver.NewLogger(cfg.LogLevel, "applier").With("applier", cfg.ID)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := rpcserver.NewRegistry()
	// Every request to zone-b tells whether it answers (status, metrics).
	dstHTTP, gateway := gwhealth.Instrument(reg, "applier", "destination", log, rgwadmin.NewHTTPClient())
	dst, err := rgwadmin.New(rgwadmin.Config{Endpoint: cfg.Destination.Endpoint, AccessKey: cfg.Destination.AccessKey,
		SecretKey: cfg.Destination.SecretKey, Region: cfg.Destination.Region, Timeout: cfg.Destination.Timeout, Logger: log,
		HTTPClient: dstHTTP})
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	zoneID, err := destinationZone(ctx, cfg, dst, log)
	if err != nil {
		return err
	}

	creds, err := tlsconfig.ClientCreds(cfg.TLS, cfg.Exporter, log)
	if err != nil {
		return err
	}
	// The status endpoint is for operators: the same CA and allow-list as
	// the link, the applier's certificate as its server certificate.
	var screds credentials.TransportCredentials
	if cfg.Listen != "" {
		if screds, err = tlsconfig.ServerCreds(cfg.TLS, log); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	clientMetrics := grpcprom.NewClientMetrics()
	reg.MustRegister(clientMetrics)
	conn, err := dialExporter(cfg.Exporter, creds, clientMetrics)
	if err != nil {
		return err
	}
	defer conn.Close()

	var audit *os.File
	if cfg.AuditLog != "" {
		audit, err = os.OpenFile(cfg.AuditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("audit_log: %w", err)
		}
		defer audit.Close()
	}
	objects, err := rgwobj.New(rgwobj.Config{Endpoint: cfg.Destination.Endpoint, AccessKey: cfg.Destination.AccessKey,
		SecretKey: cfg.Destination.SecretKey, Region: cfg.Destination.Region, Timeout: cfg.Destination.Timeout, Logger: log,
		HTTPClient: dstHTTP})
	if err != nil {
		return fmt.Errorf("destination objects: %w", err)
	}
	app, err := applier.New(applier.Config{
		ID: cfg.ID, Destination: cfg.Destination.Name, DestEndpoint: cfg.Destination.Endpoint, Dest: dst, Conn: conn,
		Objects: objects,
		Lease: lease.Config{Locker: dst, ZoneID: zoneID, Holder: cfg.ID, Base: cfg.Lease.IDBase,
			Length: cfg.Lease.Length, Renew: cfg.Lease.Renew, MaxMembers: cfg.Lease.MaxMembers, Logger: log},
		ApplyConcurrency: cfg.Apply.Concurrency, UpdateType: cfg.Apply.UpdateType,
		MaxInflightBatches: uint32(cfg.Apply.MaxInflightBatches), Logger: log, Metrics: applier.NewMetrics(reg),
		Audit: auditWriter(audit), Gateway: gateway,
	})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.Run(gctx) })
	if cfg.Listen != "" {
		if err := serveStatus(gctx, g, cfg, screds, reg, app, log); err != nil {
			return err
		}
	}
	if cfg.MetricsListen != "" {
		g.Go(func() error { return rpcserver.ServeMetrics(gctx, cfg.MetricsListen, reg, log) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped; leases released")
	return nil
}

// auditWriter avoids a typed nil io.Writer.
func auditWriter(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

// destinationZone proves the destination's endpoint and keys with a signed
// read before anything starts, and names the destination zone (the
// leases' tag): its id, and cfg.Destination.Name when the file names none.
func destinationZone(ctx context.Context, cfg *config.Applier, dst *rgwadmin.Client, log *slog.Logger) (string, error) {
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A gateway answering 5xx or garbage for a while delays the start
	// (logged); wrong keys or an unknown endpoint stop it at once.
	zoneID, zoneName := cfg.Destination.ZoneID, cfg.Destination.Name
	err := rgwadmin.RetryTransient(startCtx, log, "read the destination", func(ctx context.Context) error {
		if cfg.Destination.ZoneID != "" {
			_, err := dst.ListMetadataKeys(ctx, "user", "", 1)
			return err
		}
		var err error
		zoneID, zoneName, err = dst.ZoneID(ctx, cfg.Destination.Endpoint)
		return err
	})
	if errors.Is(err, rgwadmin.ErrUnknownEndpoint) {
		err = fmt.Errorf("%w (behind a load balancer or proxy? set destination.zone_id)", err)
	}
	if err != nil {
		return "", fmt.Errorf("destination %s: %w", cfg.Destination.Endpoint, err)
	}
	if cfg.Destination.Name == "" {
		cfg.Destination.Name = zoneName
	}
	if cfg.Destination.Name == "" {
		return "", errors.New("destination.name: required when destination.zone_id is set")
	}
	log.Info("destination zone", "zone", zoneName, "zone_id", zoneID, "destination", cfg.Destination.Name)
	return zoneID, nil
}

// dialExporter opens the mTLS link to the exporter (the connection is made
// lazily, and again after every failure).
func dialExporter(addr string, creds credentials.TransportCredentials, m *grpcprom.ClientMetrics) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithChainUnaryInterceptor(m.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(m.StreamClientInterceptor()),
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", addr, err)
	}
	return conn, nil
}

// serveStatus serves the applier's status service (health, reflection,
// StatusService) on cfg.Listen until ctx ends.
func serveStatus(ctx context.Context, g *errgroup.Group, cfg *config.Applier, creds credentials.TransportCredentials,
	reg *prometheus.Registry, app *applier.Applier, log *slog.Logger) error {
	srv := rpcserver.New(rpcserver.Options{Logger: log, Creds: creds, Auth: tlsconfig.Authorizer(cfg.TLS), Registerer: reg})
	v1.RegisterStatusServiceServer(srv.GRPC, app)
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	srv.Health.SetServingStatus(v1.StatusService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("applier status listening", "addr", lis.Addr().String(), "exporter", cfg.Exporter)
	g.Go(func() error { return srv.Serve(lis) })
	g.Go(func() error {
		<-ctx.Done()
		srv.Stop(5 * time.Second)
		return nil
	})
	return nil
}
