// Command rgwsync-exporter runs beside the source gateway: it reads the
// source's logs and streams them to rgwsync-appliers, keeping the bounds.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/exporter"
	"github.com/rgwsync/rgwsync/internal/filter"
	"github.com/rgwsync/rgwsync/internal/gwhealth"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"github.com/rgwsync/rgwsync/internal/rpcserver"
	"github.com/rgwsync/rgwsync/internal/statuscli"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rgwsync-exporter:", err)
		var exit *statuscli.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.Code)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) > 0 && args[0] == "status":
		return statuscli.Main(args[1:], "127.0.0.1:7443", os.Stdout)
	case len(args) > 0 && args[0] == "errors":
		return statuscli.ErrorsMain(args[1:], "127.0.0.1:7443", os.Stdout)
	case len(args) > 0 && args[0] == "wait":
		return statuscli.WaitMain(args[1:], "127.0.0.1:7443", os.Stdout, os.Stderr)
	}
	cl := config.NewCommandLine[config.Exporter]("rgwsync-exporter")
	cl.Override("listen", "listen", "gRPC listen address", func(c *config.Exporter) *string { return &c.Listen })
	cl.Override("metrics-listen", "metrics_listen", "Prometheus /metrics listen address", func(c *config.Exporter) *string { return &c.MetricsListen })
	cl.Override("bounds", "bounds_path", "bounds file", func(c *config.Exporter) *string { return &c.BoundsPath })
	cl.Override("log-level", "log_level", "debug, info, warn or error", func(c *config.Exporter) *string { return &c.LogLevel })
	cfg, err := cl.Load(args, config.LoadExporter)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := rpcserver.NewLogger(cfg.LogLevel, "exporter")
	if cfg.ID == "" {
		cfg.ID = config.DefaultID()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, err := checkpoint.Open(cfg.BoundsPath)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := rpcserver.NewRegistry()
	exp, err := newExporter(ctx, cfg, store, reg, log)
	if err != nil {
		return err
	}
	exp.Start()
	defer exp.Close()
	return serve(ctx, cfg, exp, reg, log)
}

// newExporter connects to the source and reads what the exporter needs to
// start (period, shard counts). A source answering 5xx or garbage for a
// while delays the start (logged); wrong keys or a source that is not a
// master stop it at once.
func newExporter(ctx context.Context, cfg *config.Exporter, store *checkpoint.Store, reg *prometheus.Registry, log *slog.Logger) (*exporter.Exporter, error) {
	// Every request to zone-a tells whether it answers (status, metrics).
	srcHTTP, gateway := gwhealth.Instrument(reg, "exporter", "source", log, rgwadmin.NewHTTPClient())
	src, err := rgwadmin.New(rgwadmin.Config{Endpoint: cfg.Source.Endpoint, AccessKey: cfg.Source.AccessKey,
		SecretKey: cfg.Source.SecretKey, Region: cfg.Source.Region, Timeout: cfg.Source.Timeout, Logger: log,
		HTTPClient: srcHTTP})
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	bucketFilter, err := filter.New(cfg.Filter.Include, cfg.Filter.Exclude)
	if err != nil {
		return nil, err
	}
	var data exporter.DataSource
	var objects exporter.ObjectSource
	if cfg.Data.Enabled {
		oc, err := rgwobj.New(rgwobj.Config{Endpoint: cfg.Source.Endpoint, AccessKey: cfg.Source.AccessKey,
			SecretKey: cfg.Source.SecretKey, Region: cfg.Source.Region, Timeout: cfg.Source.Timeout, Logger: log,
			HTTPClient: srcHTTP})
		if err != nil {
			return nil, fmt.Errorf("source objects: %w", err)
		}
		data, objects = src, oc
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	expMetrics := exporter.NewMetrics(reg)
	var exp *exporter.Exporter
	err = rgwadmin.RetryTransient(startCtx, log, "read the source", func(ctx context.Context) (err error) {
		exp, err = exporter.New(ctx, exporter.Config{
			ID: cfg.ID, Source: src, SourceEndpoint: cfg.Source.Endpoint, Gateway: gateway, Store: store,
			Sections: cfg.Sync.Sections, BatchEntries: cfg.Sync.BatchEntries, FetchConcurrency: cfg.Sync.FetchConcurrency,
			PollMin: cfg.Sync.PollMin, PollMax: cfg.Sync.PollMax, RetryMin: cfg.Sync.RetryMin, RetryMax: cfg.Sync.RetryMax,
			StallAfter:         cfg.Sync.StallAfter,
			MaxInflightBatches: cfg.Sync.MaxInflightBatches, MaxInflightBytes: cfg.Sync.MaxInflightBytes,
			Filter: bucketFilter, BandwidthBytesPerSecond: cfg.Sync.BandwidthBytesPerSecond,
			Data: data, Objects: objects, InlineMax: cfg.Data.InlineMax, ChunkSize: cfg.Data.ChunkSize,
			Trim: cfg.Trim.Enabled, TrimInterval: cfg.Trim.Interval,
			Logger: log, Metrics: expMetrics,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Source.Endpoint, err)
	}
	return exp, nil
}

// serve runs the gRPC services (and /metrics) until ctx ends, then drains
// the streams and stops.
func serve(ctx context.Context, cfg *config.Exporter, exp *exporter.Exporter, reg *prometheus.Registry, log *slog.Logger) error {
	creds, err := tlsconfig.ServerCreds(cfg.TLS, log)
	if err != nil {
		return err
	}
	srv := rpcserver.New(rpcserver.Options{Logger: log, Creds: creds, Auth: tlsconfig.Authorizer(cfg.TLS), Registerer: reg})
	v1.RegisterReplicationServiceServer(srv.GRPC, exp)
	v1.RegisterStatusServiceServer(srv.GRPC, exp)
	v1.RegisterSourceServiceServer(srv.GRPC, exp)
	for _, name := range []string{"", v1.ReplicationService_ServiceDesc.ServiceName, v1.StatusService_ServiceDesc.ServiceName} {
		srv.Health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("exporter listening", "addr", lis.Addr().String(), "source", cfg.Source.Endpoint,
		"bounds", cfg.BoundsPath, "period", exp.Period(), "tls", !cfg.TLS.Insecure)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(lis) })
	if cfg.MetricsListen != "" {
		g.Go(func() error { return rpcserver.ServeMetrics(gctx, cfg.MetricsListen, reg, log) })
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining streams (in-flight batches are acked and stored)")
		exp.Drain()
		srv.Stop(15 * time.Second) // streams end by themselves within the 10 s drain
		log.Info("stopped")
		return nil
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
