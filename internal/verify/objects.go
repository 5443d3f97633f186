package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// objVersion is one listing entry.
type objVersion struct {
	Key, VersionID string
	Latest, Marker bool
	ETag           string
	Size           int64
}

// listing is one zone's listing of a bucket: every entry by key and
// version id, and the entries listed more than once.
type listing struct {
	entries map[string]objVersion
	twice   []objVersion
}

// add files one entry. A version id is listed once; the gateway lists
// "null" twice when a null version was written into a bucket with
// versioning enabled over an existing one (FACTS.md section 20), and the
// map would hide the second entry.
func (l *listing) add(ov objVersion) {
	k := ov.Key + "\x00" + ov.VersionID
	if _, dup := l.entries[k]; dup {
		l.twice = append(l.twice, ov)
		if !ov.Latest {
			return // keep the latest of the two
		}
	}
	l.entries[k] = ov
}

func listVersions(ctx context.Context, c *s3.Client, bucket string) (*listing, error) {
	out := &listing{entries: map[string]objVersion{}}
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)}
	for {
		p, err := c.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list versions of %s: %w", bucket, err)
		}
		for _, v := range p.Versions {
			out.add(objVersion{Key: aws.ToString(v.Key), VersionID: aws.ToString(v.VersionId), Latest: aws.ToBool(v.IsLatest),
				ETag: strings.Trim(aws.ToString(v.ETag), `"`), Size: aws.ToInt64(v.Size)})
		}
		for _, m := range p.DeleteMarkers {
			out.add(objVersion{Key: aws.ToString(m.Key), VersionID: aws.ToString(m.VersionId), Latest: aws.ToBool(m.IsLatest), Marker: true})
		}
		if !aws.ToBool(p.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.VersionIdMarker = p.NextKeyMarker, p.NextVersionIdMarker
	}
}

// twiceDiffs reports the entries a zone lists more than once.
func twiceDiffs(bucket, zone string, l *listing) []Diff {
	var out []Diff
	for _, ov := range l.twice {
		out = append(out, Diff{"object", bucket + "/" + ov.Key + "@" + ov.VersionID,
			fmt.Sprintf("listed more than once on the %s (one of them %+v)", zone, ov)})
	}
	return out
}

// Objects compares one bucket on two zones: every version and delete
// marker (id, latest, ETag, size), and for every version its body digest,
// content headers, user metadata and tags. src and dst are S3 clients that
// may read the bucket on each zone.
func Objects(ctx context.Context, src, dst *s3.Client, bucket string) ([]Diff, error) {
	la, err := listVersions(ctx, src, bucket)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	lb, err := listVersions(ctx, dst, bucket)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	diffs := append(twiceDiffs(bucket, "source", la), twiceDiffs(bucket, "destination", lb)...)
	a, b := la.entries, lb.entries
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type job struct {
		name string
		v    objVersion
	}
	var jobs []job
	for _, k := range keys {
		av := a[k]
		name := bucket + "/" + av.Key + "@" + av.VersionID
		bv, ok := b[k]
		if !ok {
			diffs = append(diffs, Diff{"object", name, "missing on the destination"})
			continue
		}
		delete(b, k)
		if d := diffListing(av, bv); d != "" {
			diffs = append(diffs, Diff{"object", name, d})
			continue
		}
		if !av.Marker {
			jobs = append(jobs, job{name, av})
		}
	}
	// Bodies and tags, 16 objects at a time.
	results := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = compareObject(ctx, src, dst, bucket, j.v)
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if results[i] != "" {
			diffs = append(diffs, Diff{"object", j.name, results[i]})
		}
	}
	rest := make([]string, 0, len(b))
	for k, bv := range b {
		rest = append(rest, bucket+"/"+bv.Key+"@"+bv.VersionID)
		_ = k
	}
	sort.Strings(rest)
	for _, n := range rest {
		diffs = append(diffs, Diff{"object", n, "only on the destination (deleted on the source)"})
	}
	return diffs, nil
}

// diffListing compares one version's listing entries on the two zones.
// An entry without an ETag is not compared by ETag: the gateway's own
// DELETE ?tagging empties the ETag (and owner) of the object's index entry
// while the object keeps them (FACTS.md section 18), so the ETag is
// compared as the object itself answers it (compareObject).
func diffListing(av, bv objVersion) string {
	etagDiffers := av.ETag != bv.ETag && av.ETag != "" && bv.ETag != ""
	if av.Latest != bv.Latest || av.Marker != bv.Marker || etagDiffers || av.Size != bv.Size {
		return fmt.Sprintf("listing differs: source %+v, destination %+v", av, bv)
	}
	return ""
}

type objState struct {
	etag                                             string
	digest                                           string
	contentType, cacheControl, disposition, encoding string
	language                                         string
	meta, tags                                       map[string]string
}

func readObject(ctx context.Context, c *s3.Client, bucket string, v objVersion) (objState, error) {
	// The version listed, "null" included: without versionId the gateway
	// answers the key's current version, which for a null version that is
	// not current is another object, or 404 under a delete marker (a
	// chaos run's verifier failed every pass on one such key).
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(v.Key)}
	if v.VersionID != "" {
		in.VersionId = aws.String(v.VersionID)
	}
	o, err := c.GetObject(ctx, in)
	if err != nil {
		return objState{}, fmt.Errorf("get %s/%s: %w", bucket, v.Key, err)
	}
	h := sha256.New()
	_, err = io.Copy(h, o.Body)
	o.Body.Close()
	if err != nil {
		return objState{}, fmt.Errorf("read %s/%s: %w", bucket, v.Key, err)
	}
	st := objState{etag: strings.Trim(aws.ToString(o.ETag), `"`), digest: hex.EncodeToString(h.Sum(nil)), contentType: aws.ToString(o.ContentType),
		cacheControl: aws.ToString(o.CacheControl), disposition: aws.ToString(o.ContentDisposition),
		encoding: aws.ToString(o.ContentEncoding), language: aws.ToString(o.ContentLanguage), meta: o.Metadata, tags: map[string]string{}}
	tin := &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(v.Key), VersionId: in.VersionId}
	t, err := c.GetObjectTagging(ctx, tin)
	if err != nil {
		return objState{}, fmt.Errorf("get tags of %s/%s: %w", bucket, v.Key, err)
	}
	for _, tag := range t.TagSet {
		st.tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return st, nil
}

func compareObject(ctx context.Context, src, dst *s3.Client, bucket string, v objVersion) (string, error) {
	a, err := readObject(ctx, src, bucket, v)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	b, err := readObject(ctx, dst, bucket, v)
	if err != nil {
		return fmt.Sprintf("cannot read on the destination: %v", err), nil
	}
	return diffState(a, b), nil
}

// diffState compares what a version is on the two zones: ETag, body,
// content headers, user metadata, tags ("" when the same).
func diffState(a, b objState) string {
	switch {
	case a.etag != b.etag:
		return fmt.Sprintf("ETag differs: %q vs %q", a.etag, b.etag)
	case a.digest != b.digest:
		return "body differs (sha256 " + a.digest[:12] + " vs " + b.digest[:12] + ")"
	case a.contentType != b.contentType || a.cacheControl != b.cacheControl || a.disposition != b.disposition ||
		a.encoding != b.encoding || a.language != b.language:
		return fmt.Sprintf("content headers differ: %q/%q/%q/%q/%q vs %q/%q/%q/%q/%q", a.contentType, a.cacheControl,
			a.disposition, a.encoding, a.language, b.contentType, b.cacheControl, b.disposition, b.encoding, b.language)
	case !maps.Equal(a.meta, b.meta):
		return fmt.Sprintf("user metadata differs: %v vs %v", a.meta, b.meta)
	case !maps.Equal(a.tags, b.tags):
		return fmt.Sprintf("tags differ: %v vs %v", a.tags, b.tags)
	}
	return ""
}
