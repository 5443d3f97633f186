package synctest

// The applier's audit log, read back: which batches were applied under which
// lease, and the overlaps that would be a fencing violation.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rgwsync/rgwsync/internal/testkit/labtest"
)

// AuditPath is the audit log every applier of the env appends to.
func (e *Env) AuditPath() string { return filepath.Join(e.Dir, "audit.jsonl") }

// AuditRecord is one line of the applier's audit log (applier.AuditRecord;
// repeated here so the harness does not import the applier, which the
// packages the harness tests import).
type AuditRecord struct {
	Applier       string    `json:"applier"`
	Shard         string    `json:"shard"`
	Seq           uint64    `json:"seq"`
	Entries       int       `json:"entries"`
	Objects       int       `json:"objects"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	LeaseDeadline time.Time `json:"lease_deadline"`
}

// ReadAudit reads the applier audit log at path (one JSON record a line).
// A last line cut short by a kill -9 is ignored; any other bad line is an
// error.
func ReadAudit(path string) ([]AuditRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []AuditRecord
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if l == "" {
			continue
		}
		var r AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			if i == len(lines)-1 {
				break // no newline: a write cut by kill -9
			}
			return nil, fmt.Errorf("%s line %d %q: %w", path, i+1, l, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// AuditViolations lists what the audit log proves went wrong: a batch that
// ended after its lease deadline (applied without a valid lease), and a
// shard whose batches of two appliers overlap in time (applied by two at
// once).
func AuditViolations(recs []AuditRecord) []string {
	var out []string
	byShard := map[string][]AuditRecord{}
	for _, r := range recs {
		if !r.End.Before(r.LeaseDeadline) {
			out = append(out, fmt.Sprintf("batch %s/%d of %s ended at %s, after its lease deadline %s",
				r.Shard, r.Seq, r.Applier, r.End.Format(time.RFC3339Nano), r.LeaseDeadline.Format(time.RFC3339Nano)))
		}
		byShard[r.Shard] = append(byShard[r.Shard], r)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	for _, shard := range shards {
		rs := byShard[shard]
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.Applier != b.Applier && a.Start.Before(b.End) && b.Start.Before(a.End) {
					out = append(out, fmt.Sprintf("shard %s applied by %s and %s at once: [%s, %s] and [%s, %s]", shard,
						a.Applier, b.Applier, a.Start.Format(time.RFC3339Nano), a.End.Format(time.RFC3339Nano),
						b.Start.Format(time.RFC3339Nano), b.End.Format(time.RFC3339Nano)))
				}
			}
		}
	}
	return out
}

// AssertNoOverlap fails t when the audit records show a shard applied by
// two appliers at once or a batch applied past its lease deadline.
func AssertNoOverlap(t labtest.TB, recs []AuditRecord) {
	t.Helper()
	if v := AuditViolations(recs); len(v) > 0 {
		t.Fatalf("audit log: %d violations:\n  %s", len(v), strings.Join(v, "\n  "))
	}
}
