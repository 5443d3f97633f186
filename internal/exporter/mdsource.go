package exporter

// The two sources of metadata batches: an mdlog shard (mdlogSource) and
// the full sync's listing of every section (fullSource); and the fetch of
// the blobs their entries name.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// fetchAll fetches the current blob of each key from the source, in
// parallel, keeping the order. A key the source no longer has becomes a
// delete; a key that cannot be fetched is returned as failed (kept as a
// retry once the batch is acked) so one bad key never stalls a shard.
func (e *Exporter) fetchAll(ctx context.Context, refs []keyRef) ([]*v1.MetadataEntry, []*v1.RetryItem) {
	entries := make([]*v1.MetadataEntry, len(refs))
	errs := make([]error, len(refs))
	sem := make(chan struct{}, e.cfg.FetchConcurrency)
	var wg sync.WaitGroup
	for i, r := range refs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			en := &v1.MetadataEntry{Marker: r.marker, Section: r.section, Name: r.name, Timestamp: timestamppb.New(r.ts)}
			blob, err := e.cfg.Source.GetMetadata(ctx, r.section, r.name)
			switch {
			case errors.Is(err, rgwadmin.ErrNotFound):
				en.Op = v1.MetadataOp_METADATA_OP_DELETE
			case err != nil:
				errs[i] = err
				return
			case r.section == rgwlog.SectionBucketInstance && bucketDeleted(blob):
				// The source's own metadata says the bucket is removed
				// (Tentacle keeps its instance with flags 64): deleted on
				// the destination, never put (FACTS.md section 19).
				en.Op = v1.MetadataOp_METADATA_OP_DELETE
			case r.recheck && r.section == rgwlog.SectionBucketInstance && resharded(blob):
				// A reshard's old instance, looked at again: a gateway can
				// answer it from its cache long after the reshard removed
				// it (FACTS.md section 26); the source's listing reads
				// what is stored.
				listed, lerr := e.listed(ctx, r.section, r.name)
				if lerr != nil {
					errs[i] = lerr
					return
				}
				en.Op = v1.MetadataOp_METADATA_OP_DELETE
				if listed {
					en.Op, en.Blob = v1.MetadataOp_METADATA_OP_PUT, blob
					e.cfg.Metrics.bytesRead.Add(float64(len(blob)))
				}
			default:
				en.Op = v1.MetadataOp_METADATA_OP_PUT
				en.Blob = blob
				e.cfg.Metrics.bytesRead.Add(float64(len(blob)))
			}
			entries[i] = en
		}()
	}
	wg.Wait()
	var out []*v1.MetadataEntry
	var failed []*v1.RetryItem
	for i, en := range entries {
		if errs[i] != nil {
			if ctx.Err() == nil {
				e.log.Warn("fetch metadata from source failed", "section", refs[i].section, "key", refs[i].name, "err", errs[i])
			}
			failed = append(failed, &v1.RetryItem{Section: refs[i].section, Name: refs[i].name,
				Error: "source: " + errs[i].Error(), Timestamp: timestamppb.New(refs[i].ts)})
			continue
		}
		out = append(out, en)
	}
	return out, failed
}

func bucketDeleted(instance []byte) bool {
	del, err := rgwlog.BucketDeleted(instance)
	return err == nil && del
}

func resharded(instance []byte) bool {
	r, err := rgwlog.Resharding(instance)
	return err == nil && r
}

// listed says whether the source's listing of section names key. (The
// listing is not ordered by key: every page is read. Only the re-check of
// a resharded instance asks, once per RecheckDelay.)
func (e *Exporter) listed(ctx context.Context, section, key string) (bool, error) {
	marker := ""
	for {
		page, err := e.cfg.Source.ListMetadataKeys(ctx, section, marker, 1000)
		if err != nil {
			return false, fmt.Errorf("list %s keys (is %s still there?): %w", section, key, err)
		}
		if slices.Contains(page.Keys, key) {
			return true, nil
		}
		if !page.Truncated || page.Marker == "" {
			return false, nil
		}
		marker = page.Marker
	}
}

// mdlogSource reads one mdlog shard.
type mdlogSource struct {
	e       *Exporter
	shard   int
	checked time.Time // last trim check
	// readEmpty: when the last read that found nothing after the bound
	// began (zero after a read that found entries).
	readEmpty time.Time
}

// idleTrimCheck: how often an idle shard checks that its bound's entry is
// still in the source log.
const idleTrimCheck = 30 * time.Second

func (s *mdlogSource) finished(string) bool { return false }

func (s *mdlogSource) next(ctx context.Context, pos string, max int) (*readBatch, error) {
	start := time.Now()
	page, err := s.e.cfg.Source.ListMDLog(ctx, s.e.period, s.shard, pos, max)
	if err != nil {
		return nil, fmt.Errorf("list mdlog shard %d after %q: %w", s.shard, pos, err)
	}
	// A page read from a trimmed bound looks like any other, so check that
	// the bound's entry is still there before using a page, and now and
	// then while idle (a log trimmed to empty reads as "nothing new").
	if pos != "" && (len(page.Entries) > 0 || time.Since(s.checked) > idleTrimCheck) {
		if err := s.checkNotTrimmed(ctx, pos); err != nil {
			return nil, err
		}
		s.checked = time.Now()
	}
	if len(page.Entries) == 0 {
		s.e.setHead(uint32(s.shard), pos) // nothing after pos: it is the head
		s.readEmpty = start
		return nil, nil
	}
	s.readEmpty = time.Time{}
	// De-duplicate (section, name) within the batch: the blob is fetched
	// once, as it is now; each change is logged twice (write, complete).
	last := map[string]int{}
	for i, en := range page.Entries {
		if s.e.wanted(en.Section, en.Name) {
			last[retryKey(en.Section, en.Name)] = i
		}
	}
	var refs []keyRef
	for i, en := range page.Entries {
		if s.e.wanted(en.Section, en.Name) && last[retryKey(en.Section, en.Name)] == i {
			refs = append(refs, keyRef{section: en.Section, name: en.Name, ts: en.Timestamp, marker: en.ID})
		}
	}
	entries, failed := s.e.fetchAll(ctx, refs)
	lastEntry := page.Entries[len(page.Entries)-1]
	head := ""
	if !page.Truncated {
		head = lastEntry.ID
	}
	return &readBatch{
		head:      head,
		entries:   entries,
		through:   lastEntry.ID,
		raw:       len(page.Entries),
		first:     page.Entries[0].Timestamp,
		more:      page.Truncated,
		srcFailed: failed,
	}, nil
}

// wanted: the section is replicated and the key passes the bucket filter.
func (e *Exporter) wanted(section, key string) bool {
	return e.sections[section] && e.cfg.Filter.Metadata(section, key)
}

// checkNotTrimmed: rgwsync never trims the entry at a bound (only up to
// TrimSafe, the bound before it), so if the oldest entry left is after pos,
// someone else trimmed entries that were never applied. The gateway gives
// no other sign: a listing from a trimmed marker just returns what is left.
func (s *mdlogSource) checkNotTrimmed(ctx context.Context, pos string) error {
	first, err := s.e.cfg.Source.ListMDLog(ctx, s.e.period, s.shard, "", 1)
	if err != nil {
		return fmt.Errorf("read the oldest entry of mdlog shard %d: %w", s.shard, err)
	}
	oldest := ""
	if len(first.Entries) > 0 {
		oldest = first.Entries[0].ID
	}
	c, err := rgwlog.CompareMDLogMarkers(oldest, pos)
	if err != nil {
		s.e.log.Warn("cannot order mdlog markers; trim detection skipped", "shard", s.shard, "err", err)
		return nil
	}
	if oldest == "" || c > 0 {
		return &rgwlog.TrimmedError{Unit: rgwlog.Unit{Log: rgwlog.LogMetadata, Shard: uint32(s.shard)}, Bound: pos, Oldest: oldest}
	}
	return nil
}

// fullPos is the full sync's position: the section being listed and the
// listing marker within it. Stored as "<section index>|<marker>".
type fullPos struct {
	section int
	marker  string
}

func (p fullPos) String() string { return strconv.Itoa(p.section) + "|" + p.marker }

func parseFullPos(s string) (fullPos, error) {
	i, m, ok := strings.Cut(s, "|")
	n, err := strconv.Atoi(i)
	if !ok || err != nil || n < 0 {
		return fullPos{}, fmt.Errorf("bad full sync position %q", s)
	}
	return fullPos{section: n, marker: m}, nil
}

// fullSource lists every key of every section, page by page.
type fullSource struct{ e *Exporter }

func (s *fullSource) finished(pos string) bool {
	p, err := parseFullPos(pos)
	return err == nil && p.section >= len(s.e.cfg.Sections)
}

func (s *fullSource) next(ctx context.Context, pos string, max int) (*readBatch, error) {
	p, err := parseFullPos(pos)
	if err != nil {
		return nil, err
	}
	if p.section >= len(s.e.cfg.Sections) {
		return nil, nil
	}
	section := s.e.cfg.Sections[p.section]
	page, err := s.e.cfg.Source.ListMetadataKeys(ctx, section, p.marker, max)
	if err != nil {
		return nil, fmt.Errorf("list %s keys after %q: %w", section, p.marker, err)
	}
	now := time.Now().UTC()
	refs := make([]keyRef, 0, len(page.Keys))
	for _, k := range page.Keys {
		if s.e.cfg.Filter.Metadata(section, k) {
			refs = append(refs, keyRef{section: section, name: k, ts: now, marker: p.String()})
		}
	}
	entries, failed := s.e.fetchAll(ctx, refs)
	np := fullPos{section: p.section, marker: page.Marker}
	if !page.Truncated || page.Marker == "" {
		np = fullPos{section: p.section + 1}
	}
	return &readBatch{
		entries:   entries,
		through:   np.String(),
		raw:       len(page.Keys),
		first:     now,
		more:      !s.finished(np.String()),
		srcFailed: failed,
	}, nil
}
