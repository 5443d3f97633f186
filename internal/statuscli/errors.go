package statuscli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/wire"
)

// ErrorsMain is the errors subcommand (the `radosgw-admin sync error list`
// analogue): the items the exporter keeps for retry, oldest first.
func ErrorsMain(args []string, defaultAddr string, stdout io.Writer) error {
	fs := flag.NewFlagSet("errors", flag.ContinueOnError)
	l := linkFlags(fs, defaultAddr, 30*time.Second)
	dest := fs.String("destination", "", "only this destination")
	bucket := fs.String("bucket", "", `only the items of this bucket ("name", or "tenant/name")`)
	limit := fs.Uint("limit", 100, "at most this many items (0: the exporter's bound, 1000)")
	rechecks := fs.Bool("rechecks", false, "also the scheduled re-checks of applied deletes (not failures)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := l.dial("errors")
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *l.timeout)
	defer cancel()
	resp, err := v1.NewStatusServiceClient(conn).ListErrors(ctx, &v1.ListErrorsRequest{
		Destination: *dest, Bucket: *bucket, Limit: uint32(*limit), IncludeRechecks: *rechecks})
	if err != nil {
		return fmt.Errorf("%s: errors: %w", *l.addr, err)
	}
	return PrintErrors(stdout, resp, time.Now(), *asJSON)
}

// ErrorReport is one item of the errors subcommand's JSON.
type ErrorReport struct {
	Destination string     `json:"destination"`
	Shard       string     `json:"shard"`
	BucketShard string     `json:"bucket_shard,omitempty"`
	Section     string     `json:"section"`
	Name        string     `json:"name"`
	VersionID   string     `json:"version_id,omitempty"`
	State       string     `json:"state"`
	Error       string     `json:"error"`
	Attempts    uint32     `json:"attempts"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	NextAttempt time.Time  `json:"next_attempt"`
}

// PrintErrors prints the items, as a table or (asJSON) one JSON document.
func PrintErrors(w io.Writer, resp *v1.ListErrorsResponse, now time.Time, asJSON bool) error {
	items := make([]ErrorReport, 0, len(resp.GetItems()))
	for _, it := range resp.GetItems() {
		r := ErrorReport{Destination: it.GetDestination(), Shard: wire.Unit(it.GetShard()).String(),
			BucketShard: it.GetBucketShard(), Section: it.GetSection(), Name: it.GetName(), VersionID: it.GetVersionId(),
			State: strings.ToLower(strings.TrimPrefix(it.GetState().String(), "ERROR_STATE_")), Error: it.GetError(),
			Attempts: it.GetAttempts(), FirstSeen: it.GetFirstSeen().AsTime(), NextAttempt: it.GetNextAttempt().AsTime()}
		if it.GetLastAttempt() != nil {
			t := it.GetLastAttempt().AsTime()
			r.LastAttempt = &t
		}
		items = append(items, r)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Total uint32        `json:"total"`
			Items []ErrorReport `json:"items"`
		}{resp.GetTotal(), items})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "no items kept for retry")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIRST SEEN\tSTATE\tATTEMPTS\tLAST\tNEXT\tDESTINATION\tSHARD\tITEM\tERROR")
	for _, r := range items {
		item := r.Section + " " + r.Name
		if r.Section == "object" {
			item = r.BucketShard + " " + r.Name
		}
		if r.VersionID != "" {
			item += "?versionId=" + r.VersionID
		}
		last := "-"
		if r.LastAttempt != nil {
			last = ago(now, *r.LastAttempt)
		}
		next := "due"
		if r.NextAttempt.After(now) {
			next = "in " + r.NextAttempt.Sub(now).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.FirstSeen.UTC().Format(time.RFC3339), r.State, r.Attempts,
			last, next, r.Destination, r.Shard, item, oneLine(r.Error, 160))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if int(resp.GetTotal()) > len(items) {
		_, err := fmt.Fprintf(w, "(%d of %d items; -limit for more)\n", len(items), resp.GetTotal())
		return err
	}
	return nil
}

func ago(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" }

// oneLine keeps an error on one table row: newlines out, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
