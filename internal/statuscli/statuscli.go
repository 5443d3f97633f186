// Package statuscli is the `status` subcommand of both binaries: like
// `radosgw-admin sync status`, with more. It calls StatusService.Status
// twice, an interval apart, and prints per destination and log: shards
// caught up and behind, the oldest unapplied change, retries, entries and
// bytes per second, and the shards that are behind with their holder and
// last error. -json prints the same as one JSON document.
package statuscli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/config"
	"github.com/rgwsync/rgwsync/internal/tlsconfig"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// Report is the machine-readable form (-json).
type Report struct {
	Role    string `json:"role"`
	ID      string `json:"id"`
	Gateway string `json:"gateway"`
	// GatewayDown: the gateway did not answer its last request, since
	// GatewaySince (GatewayError says how).
	GatewayDown  bool                `json:"gateway_down"`
	GatewayError string              `json:"gateway_error,omitempty"`
	GatewaySince time.Time           `json:"gateway_since,omitzero"`
	Time         time.Time           `json:"time"`
	Destinations []DestinationReport `json:"destinations"`
}

// DestinationReport summarises one destination.
type DestinationReport struct {
	Destination    string      `json:"destination"`
	Appliers       []string    `json:"appliers"`
	Logs           []LogReport `json:"logs"`
	EntriesPerSec  float64     `json:"entries_per_second"`
	BytesPerSec    float64     `json:"bytes_per_second"`
	EntriesApplied uint64      `json:"entries_applied"`
	BytesApplied   uint64      `json:"bytes_applied"`
	// Object versions asked for by resync since the exporter started.
	ResyncQueued  uint64 `json:"resync_queued,omitempty"`
	ResyncApplied uint64 `json:"resync_applied,omitempty"`
	ResyncFailed  uint64 `json:"resync_failed_attempts,omitempty"`
}

// LogReport summarises one log of a destination.
type LogReport struct {
	Log             string        `json:"log"`
	Shards          int           `json:"shards"`
	CaughtUp        int           `json:"caught_up"`
	Behind          int           `json:"behind"`
	Stalled         int           `json:"stalled"`
	Phase           string        `json:"phase,omitempty"` // full sync: its phase
	OldestUnapplied *time.Time    `json:"oldest_unapplied,omitempty"`
	LagSeconds      float64       `json:"lag_seconds"`
	Retries         uint32        `json:"retries"`
	Resyncs         uint32        `json:"resyncs"`
	BehindShards    []ShardReport `json:"behind_shards,omitempty"`
}

// ShardReport is a shard that is not caught up.
type ShardReport struct {
	Shard         uint32 `json:"shard"`
	Phase         string `json:"phase"`
	EntriesBehind uint64 `json:"entries_behind"`
	More          bool   `json:"more,omitempty"`
	Retries       uint32 `json:"retries"`
	Holder        string `json:"holder,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	// WaitingFor: what the shard's worker waits for; StalledSince: set
	// when it has made no progress for the exporter's sync.stall_after.
	WaitingFor   string     `json:"waiting_for,omitempty"`
	StalledSince *time.Time `json:"stalled_since,omitempty"`
}

// Collect calls Status twice, interval apart (0: once, no rates).
func Collect(ctx context.Context, conn grpc.ClientConnInterface, destination string, interval time.Duration) (*Report, error) {
	cl := v1.NewStatusServiceClient(conn)
	first, err := cl.Status(ctx, &v1.StatusRequest{Destination: destination})
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	second := first
	if interval > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
		if second, err = cl.Status(ctx, &v1.StatusRequest{Destination: destination}); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	return build(first, second), nil
}

func build(first, second *v1.StatusResponse) *Report {
	r := &Report{Role: second.GetRole(), ID: second.GetId(), Gateway: second.GetGateway(), Time: second.GetNow().AsTime(),
		GatewayDown: second.GetGatewayDown(), GatewayError: second.GetGatewayError()}
	if second.GetGatewayStateSince() != nil {
		r.GatewaySince = second.GetGatewayStateSince().AsTime()
	}
	prev := map[string]*v1.DestinationStatus{}
	for _, d := range first.GetDestinations() {
		prev[d.GetDestination()] = d
	}
	elapsed := second.GetNow().AsTime().Sub(first.GetNow().AsTime()).Seconds()
	for _, d := range second.GetDestinations() {
		dr := DestinationReport{Destination: d.GetDestination(), Appliers: d.GetAppliers(),
			EntriesApplied: d.GetEntriesApplied(), BytesApplied: d.GetBytesApplied(),
			ResyncQueued: d.GetResyncQueued(), ResyncApplied: d.GetResyncApplied(), ResyncFailed: d.GetResyncFailed()}
		if p := prev[d.GetDestination()]; p != nil && elapsed > 0 {
			dr.EntriesPerSec = float64(d.GetEntriesApplied()-min(d.GetEntriesApplied(), p.GetEntriesApplied())) / elapsed
			dr.BytesPerSec = float64(d.GetBytesApplied()-min(d.GetBytesApplied(), p.GetBytesApplied())) / elapsed
		}
		logs := map[string]*LogReport{}
		for _, s := range d.GetShards() {
			name := wire.Log(s.GetShard().GetLogType()).String()
			lr := logs[name]
			if lr == nil {
				lr = &LogReport{Log: name}
				logs[name] = lr
			}
			lr.Shards++
			lr.Retries += s.GetRetries()
			lr.Resyncs += s.GetResyncs()
			phase := strings.TrimPrefix(s.GetPhase().String(), "SHARD_PHASE_")
			if s.GetShard().GetLogType() == v1.LogType_LOG_TYPE_METADATA_FULL {
				lr.Phase = phase
			}
			caught := s.GetRetries() == 0 && s.GetEntriesBehind() == 0 && !s.GetEntriesBehindMore() &&
				(s.GetPhase() == v1.ShardPhase_SHARD_PHASE_CAUGHT_UP || s.GetPhase() == v1.ShardPhase_SHARD_PHASE_DONE)
			var stalled *time.Time
			if ss := s.GetStalledSince(); ss != nil {
				t := ss.AsTime()
				stalled = &t
				lr.Stalled++
			}
			if caught && stalled == nil {
				lr.CaughtUp++
			} else {
				lr.Behind++
				lr.BehindShards = append(lr.BehindShards, ShardReport{Shard: s.GetShard().GetShard(), Phase: phase,
					EntriesBehind: s.GetEntriesBehind(), More: s.GetEntriesBehindMore(), Retries: s.GetRetries(),
					Holder: s.GetLeaseHolder(), LastError: s.GetLastError(), WaitingFor: s.GetWaitingFor(), StalledSince: stalled})
			}
			if o := s.GetOldestUnapplied(); o != nil {
				t := o.AsTime()
				if lr.OldestUnapplied == nil || t.Before(*lr.OldestUnapplied) {
					lr.OldestUnapplied = &t
					lr.LagSeconds = r.Time.Sub(t).Seconds()
				}
			}
		}
		names := make([]string, 0, len(logs))
		for n := range logs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			dr.Logs = append(dr.Logs, *logs[n])
		}
		r.Destinations = append(r.Destinations, dr)
	}
	return r
}

// Print writes the report for people, or as JSON.
func Print(w io.Writer, r *Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "%s %s (gateway %s) at %s\n", r.Role, r.ID, r.Gateway, r.Time.Format(time.RFC3339))
	if r.GatewayDown {
		fmt.Fprintf(w, "GATEWAY DOWN: %s has not answered since %s (%s ago): %s\n", r.Gateway, r.GatewaySince.Format(time.RFC3339),
			r.Time.Sub(r.GatewaySince).Round(time.Second), r.GatewayError)
	}
	for _, d := range r.Destinations {
		fmt.Fprintf(w, "\ndestination %s   appliers: %s\n", d.Destination, strings.Join(d.Appliers, ", "))
		fmt.Fprintf(w, "  applied: %d entries, %s   rate: %.1f entries/s, %s/s\n",
			d.EntriesApplied, human(float64(d.BytesApplied)), d.EntriesPerSec, human(d.BytesPerSec))
		if d.ResyncQueued > 0 {
			fmt.Fprintf(w, "  resync: %d object versions queued, %d applied, %d attempts failed (since the exporter started; what waits: errors)\n",
				d.ResyncQueued, d.ResyncApplied, d.ResyncFailed)
		}
		for _, l := range d.Logs {
			state := fmt.Sprintf("%d/%d shards caught up, %d behind", l.CaughtUp, l.Shards, l.Behind)
			if l.Stalled > 0 {
				state += fmt.Sprintf(", %d STALLED", l.Stalled)
			}
			if l.Phase != "" {
				state = "full sync " + strings.ToLower(l.Phase)
			}
			oldest := "nothing unapplied"
			if l.OldestUnapplied != nil {
				oldest = fmt.Sprintf("oldest unapplied change %s ago", time.Duration(l.LagSeconds*float64(time.Second)).Round(time.Millisecond))
			}
			fmt.Fprintf(w, "  %-14s %s; %s; %d retries", l.Log, state, oldest, l.Retries)
			if l.Resyncs > 0 {
				fmt.Fprintf(w, "; %d re-syncs after trimmed logs", l.Resyncs)
			}
			fmt.Fprintln(w)
			for i, s := range l.BehindShards {
				if i == 10 {
					fmt.Fprintf(w, "      … and %d more\n", len(l.BehindShards)-10)
					break
				}
				more := ""
				if s.More {
					more = "+"
				}
				fmt.Fprintf(w, "      shard %-3d %-20s behind %d%s entries, %d retries, holder %q", s.Shard, s.Phase, s.EntriesBehind, more, s.Retries, s.Holder)
				if s.StalledSince != nil {
					fmt.Fprintf(w, ", STALLED for %s", r.Time.Sub(*s.StalledSince).Round(time.Second))
				}
				if s.WaitingFor != "" {
					fmt.Fprintf(w, ", waiting for %s", s.WaitingFor)
				}
				if s.LastError != "" {
					fmt.Fprintf(w, ", last error: %s", s.LastError)
				}
				fmt.Fprintln(w)
			}
		}
	}
	return nil
}

func human(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}

// link is the connection flags every operator subcommand takes: the
// service's address and the operator's mTLS credentials.
type link struct {
	addr, ca, cert, key, serverName *string
	insecure                        *bool
	timeout                         *time.Duration
}

func linkFlags(fs *flag.FlagSet, defaultAddr string, timeout time.Duration) *link {
	return &link{
		addr:       fs.String("addr", defaultAddr, "gRPC address of the exporter or applier"),
		insecure:   fs.Bool("insecure", false, "plaintext (services started with tls.insecure)"),
		ca:         fs.String("cacert", "", "CA bundle (PEM) that signed the service's certificate"),
		cert:       fs.String("cert", "", "client certificate (PEM), e.g. an operator certificate from rgwsync-certs"),
		key:        fs.String("key", "", "client key (PEM)"),
		serverName: fs.String("server-name", "", "name expected in the service's certificate (default: the host of -addr)"),
		timeout:    fs.Duration("timeout", timeout, "overall timeout"),
	}
}

// dial connects to the service (cmd names the subcommand in errors).
func (l *link) dial(cmd string) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if *l.insecure {
		creds = insecure.NewCredentials()
	} else {
		if *l.ca == "" || *l.cert == "" || *l.key == "" {
			return nil, fmt.Errorf("%s: -cacert, -cert and -key are required (or -insecure for a plaintext service)", cmd)
		}
		var err error
		creds, err = tlsconfig.ClientCreds(config.TLS{CA: *l.ca, Cert: *l.cert, Key: *l.key, ServerName: *l.serverName}, *l.addr,
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	conn, err := grpc.NewClient(*l.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return conn, nil
}

// Main is the status subcommand.
func Main(args []string, defaultAddr string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	l := linkFlags(fs, defaultAddr, 30*time.Second)
	dest := fs.String("destination", "", "only this destination (exporter)")
	asJSON := fs.Bool("json", false, "print JSON")
	interval := fs.Duration("interval", time.Second, "time between the two readings that give the rates (0: one reading, no rates)")
	bucket := fs.String("bucket", "", `per index shard of this bucket ("name", or "tenant/name"): phase, bound, head, what it waits for (exporter)`)
	backlog := fs.Bool("backlog", false, "also list the changes waiting: bucket index log entries after the bound, and retries (exporter; with -bucket or for every bucket)")
	limit := fs.Uint("limit", 1000, "with -backlog: at most this many changes listed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := l.dial("status")
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *l.timeout)
	defer cancel()
	if *bucket != "" || *backlog {
		resp, err := v1.NewStatusServiceClient(conn).Backlog(ctx, &v1.BacklogRequest{Destination: *dest, Bucket: *bucket, Limit: uint32(*limit)})
		if err != nil {
			return fmt.Errorf("%s: backlog: %w", *l.addr, err)
		}
		return PrintBacklog(stdout, *bucket, resp, *backlog, *asJSON)
	}
	r, err := Collect(ctx, conn, *dest, *interval)
	if err != nil {
		return fmt.Errorf("%s: %w", *l.addr, err)
	}
	return Print(stdout, r, *asJSON)
}
