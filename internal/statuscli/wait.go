package statuscli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ExitError carries a subcommand's exit status beside its message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WaitMain is the wait subcommand (the `radosgw-admin bucket sync
// checkpoint` analogue): it returns once every change the source had
// logged when it started is applied on the destination. Progress goes to
// progress (stderr), the outcome to stdout. Exit status 0: applied; 1: not
// applied within -timeout (what is still waited for is printed); 2: it
// could not tell (an error).
func WaitMain(args []string, defaultAddr string, stdout, progress io.Writer) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	l := linkFlags(fs, defaultAddr, 30*time.Minute)
	dest := fs.String("destination", "", "the destination (default: the only one)")
	bucket := fs.String("bucket", "", `only this bucket's objects ("name", or "tenant/name"); default: the metadata and every bucket`)
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	conn, err := l.dial("wait")
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *l.timeout)
	defer cancel()
	stream, err := v1.NewStatusServiceClient(conn).Wait(ctx, &v1.WaitRequest{Destination: *dest, Bucket: *bucket})
	if err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("%s: wait: %w", *l.addr, err)}
	}
	var last *v1.WaitResponse
	for {
		p, err := stream.Recv()
		if err != nil {
			// The service's end of the deadline can come first (the
			// deadline travels with the call): its status says so.
			timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
			if last != nil && timedOut {
				printWaiting(stdout, last)
				return &ExitError{Code: 1, Err: fmt.Errorf("not applied within %s: %d of %d shards applied up to the heads read at %s",
					*l.timeout, last.GetShardsDone(), last.GetShardsTotal(), last.GetStarted().AsTime().Format(time.RFC3339))}
			}
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: wait: %w", *l.addr, err)}
		}
		last = p
		if p.GetDone() {
			fmt.Fprintf(stdout, "applied: every change logged before %s (%d shards) is on the destination\n",
				p.GetStarted().AsTime().Format(time.RFC3339), p.GetShardsTotal())
			return nil
		}
		if !*quiet {
			fmt.Fprintf(progress, "waiting: %d of %d shards applied", p.GetShardsDone(), p.GetShardsTotal())
			if p.GetParked() > 0 {
				fmt.Fprintf(progress, ", %d items parked (see errors: they keep this waiting)", p.GetParked())
			}
			if len(p.GetWaiting()) > 0 {
				fmt.Fprintf(progress, "; e.g. %s: %s", p.GetWaiting()[0].GetShard(), p.GetWaiting()[0].GetReason())
			}
			fmt.Fprintln(progress)
		}
	}
}

func printWaiting(w io.Writer, p *v1.WaitResponse) {
	for _, s := range p.GetWaiting() {
		fmt.Fprintf(w, "waiting for %s: %s\n", s.GetShard(), s.GetReason())
	}
	if n := int(p.GetShardsTotal()-p.GetShardsDone()) - len(p.GetWaiting()); n > 0 {
		fmt.Fprintf(w, "... and %d more shards\n", n)
	}
	if p.GetParked() > 0 {
		fmt.Fprintf(w, "%d items parked: the destination will not take them as they are (rgwsync-exporter errors)\n", p.GetParked())
	}
}
