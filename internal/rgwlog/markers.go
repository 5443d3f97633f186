package rgwlog

// Positions in the logs: how markers of one shard order, what a bucket-index
// log marker says, and the error of a log trimmed past a bound. The order of
// markers is decided here and nowhere else.

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CompareMarkers orders two markers of one shard of log l. An empty marker
// is before every entry. Datalog markers ("<20 digits>:<20 digits>") and
// bucket-index log markers ("[<shard>#]<11 digits>.<n>.<n>", FACTS.md §21)
// are fixed width and order as strings; mdlog markers do not (the counter
// has no fixed width) and are parsed.
func CompareMarkers(l Log, a, b string) (int, error) {
	if l == LogMetadata {
		return CompareMDLogMarkers(a, b)
	}
	return strings.Compare(a, b), nil
}

// CompareMDLogMarkers orders two mdlog entry ids of one shard
// ("1_<sec>.<usec>_<n>.1": time of the change, then a counter). An empty
// marker is before every entry.
func CompareMDLogMarkers(a, b string) (int, error) {
	if a == "" || b == "" {
		return cmp.Compare(boolInt(a != ""), boolInt(b != "")), nil
	}
	pa, err := parseMDLogMarker(a)
	if err != nil {
		return 0, err
	}
	pb, err := parseMDLogMarker(b)
	if err != nil {
		return 0, err
	}
	for i := range pa {
		if c := cmp.Compare(pa[i], pb[i]); c != 0 {
			return c, nil
		}
	}
	return 0, nil
}

func parseMDLogMarker(m string) ([4]int64, error) {
	var out [4]int64
	// 1_1795609532.671183_40.1
	parts := strings.Split(m, "_")
	if len(parts) != 3 {
		return out, fmt.Errorf("mdlog marker %q: want <gen>_<sec>.<usec>_<n>.<x>", m)
	}
	sec, usec, ok1 := strings.Cut(parts[1], ".")
	n, _, ok2 := strings.Cut(parts[2], ".")
	if !ok1 || !ok2 {
		return out, fmt.Errorf("mdlog marker %q: want <gen>_<sec>.<usec>_<n>.<x>", m)
	}
	for i, s := range []string{parts[0], sec, usec, n} {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return out, fmt.Errorf("mdlog marker %q: %w", m, err)
		}
		out[i] = v
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BILogIndexVer is the index_ver of a bucket-index log marker
// ("[<shard>#]<index_ver>.<n>.<n>").
func BILogIndexVer(m string) (uint64, error) {
	_, rest, found := strings.Cut(m, "#")
	if !found {
		rest = m
	}
	n, _, _ := strings.Cut(rest, ".")
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bucket-index log marker %q: want [<shard>#]<index_ver>.<n>.<n>", m)
	}
	return v, nil
}

// ErrTrimmed: a log no longer holds the entry at a bound, so entries after
// it may have been trimmed before they were applied. errors.Is finds it in
// a *TrimmedError.
var ErrTrimmed = errors.New("log trimmed past the bound")

// TrimmedError says which shard was trimmed past which bound.
type TrimmedError struct {
	Unit   Unit
	Bound  string // the bound: the last entry applied
	Oldest string // the oldest entry the log still holds ("" for none)
}

func (t *TrimmedError) Error() string {
	return fmt.Sprintf("%s was trimmed past the bound %q (oldest entry left: %q)", t.Unit, t.Bound, t.Oldest)
}

func (t *TrimmedError) Unwrap() error { return ErrTrimmed }
