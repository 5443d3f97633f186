// Package verify compares the metadata of two zones and lists every
// difference: keys missing on either side and blobs whose meaningful fields
// differ. It is what the integration tests, the demo and the fault suite use
// to decide that the destination equals the source.
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Lister is the read side of the admin API.
type Lister interface {
	ListMetadataKeys(ctx context.Context, section, marker string, max int) (rgwadmin.KeyPage, error)
	GetMetadata(ctx context.Context, section, key string) ([]byte, error)
}

// Diff is one difference.
type Diff struct {
	Section, Key string
	What         string
}

func (d Diff) String() string { return d.Section + ":" + d.Key + ": " + d.What }

// Keys lists every key of a section, following the listing marker.
func Keys(ctx context.Context, l Lister, section string) ([]string, error) {
	var out []string
	marker := ""
	for {
		p, err := l.ListMetadataKeys(ctx, section, marker, 1000)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Keys...)
		if !p.Truncated || p.Marker == "" {
			break
		}
		marker = p.Marker
	}
	sort.Strings(out)
	return out, nil
}

// Metadata compares the sections of src and dst, for the keys that keep
// accepts (nil: all). A key only on the destination is a difference too
// (a delete that was not applied).
func Metadata(ctx context.Context, src, dst Lister, sections []string, keep func(section, key string) bool) ([]Diff, error) {
	var diffs []Diff
	for _, sec := range sections {
		a, err := Keys(ctx, src, sec)
		if err != nil {
			return nil, fmt.Errorf("list source %s keys: %w", sec, err)
		}
		b, err := Keys(ctx, dst, sec)
		if err != nil {
			return nil, fmt.Errorf("list destination %s keys: %w", sec, err)
		}
		inB := map[string]bool{}
		for _, k := range b {
			if keep == nil || keep(sec, k) {
				inB[k] = true
			}
		}
		for _, k := range a {
			if keep != nil && !keep(sec, k) {
				continue
			}
			if !inB[k] {
				if gone, err := deletedInstance(ctx, src, sec, k); err != nil {
					return nil, err
				} else if !gone {
					diffs = append(diffs, Diff{sec, k, "missing on the destination"})
				}
				continue
			}
			delete(inB, k)
			d, err := compareBlob(ctx, src, dst, sec, k)
			if err != nil {
				return nil, err
			}
			if d != "" {
				diffs = append(diffs, Diff{sec, k, d})
			}
		}
		for _, k := range sortedKeys(inB) {
			diffs = append(diffs, Diff{sec, k, "only on the destination (deleted on the source)"})
		}
	}
	return diffs, nil
}

// deletedInstance says whether key of section sec is a bucket instance the
// source keeps as removed: Tentacle keeps a removed bucket's instance with
// flags 64 (BUCKET_DELETED), and keeps zone-b's through a DELETE; that
// blob is never put on zone-b (it kills its gateway). Gone on the source:
// whatever zone-b has of it is not a difference (FACTS.md section 19).
func deletedInstance(ctx context.Context, src Lister, sec, key string) (bool, error) {
	if sec != rgwlog.SectionBucketInstance {
		return false, nil
	}
	b, err := src.GetMetadata(ctx, sec, key)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return true, nil // deleted since it was listed; the next pass sees it
	}
	if err != nil {
		return false, fmt.Errorf("get source %s:%s: %w", sec, key, err)
	}
	del, _ := rgwlog.BucketDeleted(b)
	return del, nil
}

func compareBlob(ctx context.Context, src, dst Lister, sec, key string) (string, error) {
	ab, err := src.GetMetadata(ctx, sec, key)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return "", nil // deleted on the source since it was listed; the next pass sees it
	}
	if err != nil {
		return "", fmt.Errorf("get source %s:%s: %w", sec, key, err)
	}
	if sec == rgwlog.SectionBucketInstance {
		if del, _ := rgwlog.BucketDeleted(ab); del {
			return "", nil // see deletedInstance
		}
	}
	bb, err := dst.GetMetadata(ctx, sec, key)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return "missing on the destination", nil
	}
	if err != nil {
		return "", fmt.Errorf("get destination %s:%s: %w", sec, key, err)
	}
	var a, b struct {
		Data  map[string]any `json:"data"`
		Mtime string         `json:"mtime"`
	}
	if err := json.Unmarshal(ab, &a); err != nil {
		return "", fmt.Errorf("source %s:%s: %w", sec, key, err)
	}
	if err := json.Unmarshal(bb, &b); err != nil {
		return "", fmt.Errorf("destination %s:%s: %w", sec, key, err)
	}
	// A bucket instance's attributes (ACL, tags, CORS, policy, …) are a
	// list of {key, val}: compared by key, a difference names the one
	// attribute ("attrs.user.rgw.tagging").
	byKey(a.Data)
	byKey(b.Data)
	if sec == rgwlog.SectionBucketInstance {
		// The number of index shards is each zone's own: Reef and later
		// reshard in place, and the applier keeps zone-b's (FACTS.md
		// section 32).
		for _, d := range []map[string]any{a.Data, b.Data} {
			if bi, ok := d["bucket_info"].(map[string]any); ok {
				delete(bi, "num_shards")
			}
		}
	}
	if reflect.DeepEqual(a.Data, b.Data) {
		return "", nil
	}
	return "data differs: " + firstDifference("", a.Data, b.Data), nil
}

// byKey turns data's "attrs" list of {"key": k, "val": v} into a map k → v
// (left as it is when it has another shape).
func byKey(data map[string]any) {
	list, ok := data["attrs"].([]any)
	if !ok {
		return
	}
	m := make(map[string]any, len(list))
	for _, it := range list {
		kv, ok := it.(map[string]any)
		k, kok := kv["key"].(string)
		if !ok || !kok {
			return
		}
		m[k] = kv["val"]
	}
	data["attrs"] = m
}

// firstDifference names the first differing path, with both values.
func firstDifference(path string, a, b any) string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			if !reflect.DeepEqual(am[k], bm[k]) {
				return firstDifference(path+"."+k, am[k], bm[k])
			}
		}
	}
	return fmt.Sprintf("%s: source %s, destination %s", strings.TrimPrefix(path, "."), short(a), short(b))
}

func short(v any) string {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	s := strings.TrimSpace(buf.String())
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
