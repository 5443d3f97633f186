// Package rpcserver builds the gRPC server both services run: interceptors
// (logging through slog, then authorisation of the peer, then panic
// recovery), gRPC health, reflection so that grpcurl can list and call the
// services, keepalive enforcement, and a graceful stop (health NOT_SERVING,
// drain, then a timed hard stop). It also serves the Prometheus registry
// over HTTP.
//
// Authorisation (Options.Auth, tlsconfig.Authorizer) applies to every
// service but grpc.health.v1.Health: a health check needs only the TLS
// handshake, i.e. any client certificate of the CA, so that probes need
// not be on the allow-list and a refused peer can still tell "up but not
// allowed" from "down". Reflection is authorised like the rgwsync services:
// it lists the API, which is for allowed operators only.
package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Server is a gRPC server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
	log    *slog.Logger
}

// Options of a Server.
type Options struct {
	Logger *slog.Logger
	// Creds of the listener; nil means plaintext (only when configured so).
	Creds credentials.TransportCredentials
	// Auth authorises each call but health checks (tlsconfig.Authorizer);
	// nil installs no auth interceptor (plaintext).
	Auth auth.AuthFunc
	// MaxRecvMsgSize bounds one message (default 16 MiB).
	MaxRecvMsgSize int
	// Registerer, if set, gets the gRPC server metrics (calls, codes,
	// messages, handling time).
	Registerer prometheus.Registerer
}

// New builds the server. Register services on s.GRPC, then Serve.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = 16 << 20
	}
	// Successful calls (status polls every second) at debug; failures at
	// their default levels.
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK {
				return logging.LevelDebug
			}
			return logging.DefaultServerCodeToLevel(c)
		})}
	rec := recovery.WithRecoveryHandler(func(p any) error {
		o.Logger.Error("panic in gRPC handler", "panic", p, "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "internal error")
	})
	// metrics -> logging -> auth -> recovery: refused calls are counted and
	// logged (with their code), and a panic is recovered inside the
	// authorised call.
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if o.Registerer != nil {
		m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{0.001, 0.01, 0.1, 0.3, 1, 3, 10, 60, 300})))
		o.Registerer.MustRegister(m)
		unary = append(unary, m.UnaryServerInterceptor())
		stream = append(stream, m.StreamServerInterceptor())
	}
	unary = append(unary, logging.UnaryServerInterceptor(InterceptorLogger(o.Logger), logOpts...))
	stream = append(stream, logging.StreamServerInterceptor(InterceptorLogger(o.Logger), logOpts...))
	if o.Auth != nil {
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(o.Auth), selector.MatchFunc(needsAuth)))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(o.Auth), selector.MatchFunc(needsAuth)))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(rec))
	stream = append(stream, recovery.StreamServerInterceptor(rec))
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(o.MaxRecvMsgSize),
	}
	if o.Creds != nil {
		opts = append(opts, grpc.Creds(o.Creds))
	}
	s := &Server{GRPC: grpc.NewServer(opts...), Health: health.NewServer(), log: o.Logger}
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	reflection.Register(s.GRPC)
	return s
}

// needsAuth selects the calls Options.Auth checks: all but health.
func needsAuth(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != healthpb.Health_ServiceDesc.ServiceName
}

// Serve serves on lis until Stop.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.GRPC.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Stop reports NOT_SERVING, lets in-flight calls finish for up to grace,
// then stops hard.
func (s *Server) Stop(grace time.Duration) {
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.GRPC.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("graceful stop timed out; stopping hard", "grace", grace)
		s.GRPC.Stop()
		<-done
	}
}

// InterceptorLogger adapts slog to go-grpc-middleware's logging.
func InterceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// NewRegistry is a binary's metrics registry, with the Go runtime's and the
// process's collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ServeMetrics serves reg on addr at /metrics until ctx ends.
func ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if os.Getenv("RGWSYNC_DEBUG_PPROF") == "1" {
		// Go's profiles (heap, goroutines, CPU) for a memory or CPU
		// question, opt-in: they show internals and cost CPU when read.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		log.Warn("RGWSYNC_DEBUG_PPROF=1: Go profiles served at /debug/pprof/ on the metrics address")
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	log.Info("metrics listening", "addr", lis.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NewLogger returns a text slog logger at level ("debug", "info", ...).
func NewLogger(level string, service string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("service", service)
}
