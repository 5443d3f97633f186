package statuscli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
)

// PrintBacklog prints what StatusService.Backlog answered: a line per index
// shard (phase, bound, head, entries behind, retries, why it waits) and,
// with entries, the changes waiting (the `mc replicate backlog` analogue);
// asJSON: the answer as JSON.
func PrintBacklog(w io.Writer, bucket string, resp *v1.BacklogResponse, entries, asJSON bool) error {
	if asJSON {
		if !entries {
			resp = &v1.BacklogResponse{Shards: resp.GetShards(), Total: resp.GetTotal(), Truncated: resp.GetTruncated()}
		}
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	waiting, retries := 0, uint32(0)
	for _, s := range resp.GetShards() {
		if s.GetWaiting() != "" {
			waiting++
		}
		retries += s.GetRetries()
	}
	what := "every replicated bucket"
	if bucket != "" {
		what = "bucket " + bucket
	}
	more := ""
	if resp.GetTruncated() {
		more = " or more"
	}
	fmt.Fprintf(w, "%s: %d index shards, %d done, %d waiting; %d changes waiting%s (%d kept for retry)\n",
		what, len(resp.GetShards()), len(resp.GetShards())-waiting, waiting, resp.GetTotal(), more, retries)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SHARD\tPHASE\tBEHIND\tRETRIES\tBOUND\tHEAD\tWAITING FOR")
	for _, s := range resp.GetShards() {
		behind := fmt.Sprint(s.GetEntriesBehind())
		if s.GetMore() {
			behind += "+"
		}
		if s.GetPhase() != "incremental" || s.GetWaiting() == "" {
			behind = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.GetBucketShard(), s.GetPhase(), behind, s.GetRetries(),
			dash(s.GetBound()), dash(s.GetHead()), dash(s.GetWaiting()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !entries {
		return nil
	}
	if len(resp.GetEntries()) == 0 {
		_, err := fmt.Fprintln(w, "no changes waiting")
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LOGGED\tSHARD\tOP\tKEY\tVERSION\tMARKER\tERROR")
	for _, en := range resp.GetEntries() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.GetLogged().AsTime().UTC().Format(time.RFC3339), en.GetBucketShard(),
			en.GetOp(), en.GetKey(), dash(en.GetVersionId()), dash(en.GetMarker()), oneLine(en.GetError(), 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if int(resp.GetTotal()) > len(resp.GetEntries()) || resp.GetTruncated() {
		_, err := fmt.Fprintf(w, "(%d listed; -limit for more)\n", len(resp.GetEntries()))
		return err
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
