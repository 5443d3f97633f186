package verifier

// Comparing a bucket's objects: both versioned listings read as streams,
// page by page, and joined key by key (memory holds one page and one key's
// versions of each side, whatever the bucket's size).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/rgwsync/rgwsync/internal/rgwobj"
)

// listPage is the listing's page size.
const listPage = 1000

// keyVersions is one key's entries in a listing, in the listing's order.
type keyVersions struct {
	key      string
	versions []rgwobj.ListEntry
}

// cursor reads a bucket's listing one key at a time.
type cursor struct {
	side           Side
	bucket, prefix string
	page           []rgwobj.ListEntry
	km, vm         string
	more           bool
}

func newCursor(s Side, bucket, prefix string) *cursor {
	return &cursor{side: s, bucket: bucket, prefix: prefix, more: true}
}

// peek is the next entry (ok false at the end).
func (c *cursor) peek(ctx context.Context) (rgwobj.ListEntry, bool, error) {
	for len(c.page) == 0 {
		if !c.more {
			return rgwobj.ListEntry{}, false, nil
		}
		p, err := c.side.ListBucket(ctx, c.bucket, c.prefix, c.km, c.vm, listPage)
		if err != nil {
			return rgwobj.ListEntry{}, false, err
		}
		c.page = p.Entries
		c.more = p.Truncated && (p.NextKeyMarker != "" || p.NextVersionMarker != "")
		if c.more && p.NextKeyMarker == c.km && p.NextVersionMarker == c.vm {
			return rgwobj.ListEntry{}, false, fmt.Errorf("list %s: the listing did not move past key %q version %q", c.bucket, c.km, c.vm)
		}
		c.km, c.vm = p.NextKeyMarker, p.NextVersionMarker
	}
	return c.page[0], true, nil
}

// next is the next key's entries (ok false at the end).
func (c *cursor) next(ctx context.Context) (kv keyVersions, ok bool, err error) {
	first, ok, err := c.peek(ctx)
	if err != nil || !ok {
		return kv, false, err
	}
	kv.key = first.Key
	for {
		en, ok, err := c.peek(ctx)
		if err != nil {
			return kv, false, err
		}
		if !ok || en.Key != kv.key {
			return kv, true, nil
		}
		kv.versions = append(kv.versions, en)
		c.page = c.page[1:]
	}
}

// keyDiffs compares one key's entries on both sides (either may be
// empty): which versions each has, which is current, delete markers, size
// and ETag; with attrs, every version's attributes too.
func (v *run) keyDiffs(ctx context.Context, bucket, key string, src, dst []rgwobj.ListEntry) ([]Diff, error) {
	diffs, attrs := v.listingDiffs(bucket, key, src, dst)
	for _, id := range attrs {
		ad, err := v.attrDiffs(ctx, bucket, key, id)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, ad...)
	}
	return diffs, nil
}

// listingDiffs compares one key's listing entries; attrs are the versions
// equal in the listings whose attributes are to be compared (Config.Attrs).
func (v *run) listingDiffs(bucket, key string, src, dst []rgwobj.ListEntry) (diffs []Diff, attrs []string) {
	add := func(version, field, s, d string) {
		diffs = append(diffs, Diff{Kind: "object", Bucket: bucket, Key: key, VersionID: version, Field: field, Source: s, Destination: d})
	}
	index := func(side string, es []rgwobj.ListEntry) map[string]rgwobj.ListEntry {
		m := map[string]rgwobj.ListEntry{}
		for _, e := range es {
			if _, twice := m[e.VersionID]; twice {
				if side == "source" {
					add(e.VersionID, "listed", "twice", "once")
				} else {
					add(e.VersionID, "listed", "once", "twice")
				}
			}
			m[e.VersionID] = e
		}
		return m
	}
	a, b := index("source", src), index("destination", dst)
	for _, id := range slices.Sorted(maps.Keys(a)) {
		s, ok := a[id]
		if !ok {
			continue
		}
		d, ok := b[id]
		if !ok {
			add(id, "version", describe(s), "missing")
			continue
		}
		if s.DeleteMarker != d.DeleteMarker {
			add(id, "delete_marker", fmt.Sprint(s.DeleteMarker), fmt.Sprint(d.DeleteMarker))
			continue
		}
		if s.IsLatest != d.IsLatest {
			add(id, "is_latest", fmt.Sprint(s.IsLatest), fmt.Sprint(d.IsLatest))
		}
		if s.DeleteMarker {
			continue
		}
		if s.Size != d.Size {
			add(id, "size", fmt.Sprint(s.Size), fmt.Sprint(d.Size))
		}
		if s.ETag != d.ETag {
			add(id, "etag", s.ETag, d.ETag)
		}
		if v.cfg.Attrs && s.Size == d.Size && s.ETag == d.ETag {
			attrs = append(attrs, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[id]; !ok {
			add(id, "version", "missing", describe(b[id]))
		}
	}
	return diffs, attrs
}

// pendingKey is a key compared by its listings whose attributes are being
// read (bucketDiffs' window).
type pendingKey struct {
	key      string
	versions int
	diffs    []Diff
	attrs    []string
	attrDiff [][]Diff // per attrs
}

// attrWindow is how many keys bucketDiffs holds while their attributes are
// read, Config.Concurrency versions at a time.
const attrWindow = 64

// flushAttrs reads the attributes of the window's versions in parallel,
// then hands each key that differs to suspect, in key order.
func (v *run) flushAttrs(ctx context.Context, bucket string, window []*pendingKey, suspect func(key string, diffs []Diff) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.cfg.Concurrency)
	for _, pk := range window {
		pk.attrDiff = make([][]Diff, len(pk.attrs))
		for i, id := range pk.attrs {
			g.Go(func() error {
				ad, err := v.attrDiffs(gctx, bucket, pk.key, id)
				pk.attrDiff[i] = ad
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, pk := range window {
		for _, ad := range pk.attrDiff {
			pk.diffs = append(pk.diffs, ad...)
		}
		v.stats.versions.Add(int64(pk.versions))
		if len(pk.diffs) > 0 {
			if err := suspect(pk.key, pk.diffs); err != nil {
				return err
			}
		}
	}
	return nil
}

func describe(e rgwobj.ListEntry) string {
	switch {
	case e.DeleteMarker && e.IsLatest:
		return "delete marker (current)"
	case e.DeleteMarker:
		return "delete marker"
	case e.IsLatest:
		return fmt.Sprintf("%d bytes, etag %s (current)", e.Size, e.ETag)
	}
	return fmt.Sprintf("%d bytes, etag %s", e.Size, e.ETag)
}

// attrDiffs compares one version's attributes: content headers, user
// metadata, tags and ACL.
func (v *run) attrDiffs(ctx context.Context, bucket, key, version string) ([]Diff, error) {
	s, err := v.src.Stat(ctx, bucket, key, version)
	if err != nil {
		if isNotFound(err) {
			return nil, nil // gone since the listing: the recheck decides
		}
		return nil, fmt.Errorf("source: %s/%s version %s: %w", bucket, key, version, err)
	}
	d, err := v.dst.Stat(ctx, bucket, key, version)
	if err != nil {
		if isNotFound(err) {
			return []Diff{{Kind: "object", Bucket: bucket, Key: key, VersionID: version, Field: "version", Source: "present", Destination: "missing"}}, nil
		}
		return nil, fmt.Errorf("destination: %s/%s version %s: %w", bucket, key, version, err)
	}
	v.stats.statted.Add(1)
	var diffs []Diff
	add := func(field, a, b string) {
		if a != b {
			diffs = append(diffs, Diff{Kind: "object", Bucket: bucket, Key: key, VersionID: version, Field: field, Source: a, Destination: b})
		}
	}
	add("content_type", s.ContentType, d.ContentType)
	add("cache_control", s.CacheControl, d.CacheControl)
	add("content_disposition", s.ContentDisposition, d.ContentDisposition)
	add("content_encoding", s.ContentEncoding, d.ContentEncoding)
	add("content_language", s.ContentLanguage, d.ContentLanguage)
	add("expires", s.Expires, d.Expires)
	add("meta", mapString(s.UserMeta), mapString(d.UserMeta))
	add("tags", mapString(s.Tags), mapString(d.Tags))
	add("acl", aclString(s.ACL), aclString(d.ACL))
	add("owner", s.Owner, d.Owner)
	return diffs, nil
}

func mapString(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k])
	}
	return b.String()
}

func aclString(acl []byte) string {
	if acl == nil {
		return "default (the owner, FULL_CONTROL)"
	}
	return string(acl)
}

// bucketDiffs compares bucket's objects on both sides: the keys whose
// entries differ, with their differences (not rechecked yet).
func (v *run) bucketDiffs(ctx context.Context, bucket string, suspect func(key string, diffs []Diff) error) error {
	sc, dc := newCursor(v.src, bucket, ""), newCursor(v.dst, bucket, "")
	a, aok, err := sc.next(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	b, bok, err := dc.next(ctx)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	var window []*pendingKey
	for aok || bok {
		var key string
		var sv, dv []rgwobj.ListEntry
		switch {
		case aok && (!bok || a.key < b.key):
			key, sv = a.key, a.versions
		case bok && (!aok || b.key < a.key):
			key, dv = b.key, b.versions
		default:
			key, sv, dv = a.key, a.versions, b.versions
		}
		diffs, attrs := v.listingDiffs(bucket, key, sv, dv)
		window = append(window, &pendingKey{key: key, versions: max(len(sv), len(dv)), diffs: diffs, attrs: attrs})
		if len(window) >= attrWindow {
			if err := v.flushAttrs(ctx, bucket, window, suspect); err != nil {
				return err
			}
			window = window[:0]
		}
		if sv != nil {
			if a, aok, err = sc.next(ctx); err != nil {
				return fmt.Errorf("source: %w", err)
			}
		}
		if dv != nil {
			if b, bok, err = dc.next(ctx); err != nil {
				return fmt.Errorf("destination: %w", err)
			}
		}
	}
	return v.flushAttrs(ctx, bucket, window, suspect)
}

// keyNow reads one key's entries on both sides again.
func (v *run) keyNow(ctx context.Context, bucket, key string) (src, dst []rgwobj.ListEntry, err error) {
	read := func(s Side) ([]rgwobj.ListEntry, error) {
		c := newCursor(s, bucket, key)
		for {
			kv, ok, err := c.next(ctx)
			if err != nil || !ok {
				return nil, err
			}
			if kv.key == key {
				return kv.versions, nil
			}
			if kv.key > key {
				return nil, nil
			}
		}
	}
	if src, err = read(v.src); err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if dst, err = read(v.dst); err != nil {
		return nil, nil, fmt.Errorf("destination: %w", err)
	}
	return src, dst, nil
}
