package rgwobj

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// ObjectInfo is what the source has: everything a faithful copy needs.
type ObjectInfo struct {
	Bucket, Key string
	VersionID   string // "" or "null" for an object of an unversioned bucket
	// Owner is the owner's uid ("tenant$uid" for tenants): rgwx-uid of the
	// writes on the destination.
	Owner string
	Size  int64
	ETag  string // without quotes
	// Mtime is the source's mtime (nanoseconds). The destination does not
	// keep it: never compare copies by mtime.
	Mtime time.Time

	ContentType, CacheControl, ContentDisposition, ContentEncoding, ContentLanguage, Expires string

	UserMeta map[string]string // x-amz-meta-*: lower-case names without the prefix
	Tags     map[string]string
	// ACL is the XML of GET ?acl, or nil when the ACL is the default one
	// (the owner alone, FULL_CONTROL), which a write with rgwx-uid=Owner
	// creates anyway: then Stat needs no GET ?acl and Put no PUT ?acl.
	ACL []byte
	// PartSizes are a multipart object's part sizes in order (their sum is
	// Size; the ETag ends in "-len(PartSizes)"); nil for an object written
	// in one piece.
	PartSizes []int64
	// DeleteMarker: set by the caller from a listing or a log; Stat and
	// Head answer ErrNotFound for a delete marker (FACTS.md §3).
	DeleteMarker bool
}

// Multipart says whether the object was uploaded in parts.
func (o ObjectInfo) Multipart() bool { return len(o.PartSizes) > 0 }

func versionQuery(q url.Values, versionID string) url.Values {
	if versionID != "" {
		q.Set("versionId", versionID)
	}
	return q
}

// Stat returns every attribute of one object (versionID "" = the current
// one) with one request: a system GET with rgwx-prepend-metadata=true and
// Range 0-0 answers the object's attributes (binary manifest, tags, ACL,
// x-amz-meta-*, content-*) before a one-byte body. A second request,
// GET ?acl, is made only when the ACL is not the default one.
func (c *Client) Stat(ctx context.Context, bucket, key, versionID string) (ObjectInfo, error) {
	info, _, err := c.StatRead(ctx, bucket, key, versionID, 1)
	return info, err
}

// StatRead is Stat that also reads up to n bytes of the body (n >= 1) in
// the same request: the prepend-metadata GET with Range 0-(n-1). For an
// object of up to n bytes, body is all of it (len(body) == info.Size) —
// one request where Stat and Get take two (the exporter's small objects).
func (c *Client) StatRead(ctx context.Context, bucket, key, versionID string, n int64) (info ObjectInfo, body []byte, err error) {
	op := fmt.Sprintf("stat %s/%s", bucket, key)
	if versionID != "" {
		op += "?versionId=" + versionID
	}
	if n < 1 || n > maxSmallBody/2 {
		return ObjectInfo{}, nil, fmt.Errorf("%s: read %d bytes with the attributes: want 1 to %d", op, n, maxSmallBody/2)
	}
	r := call{op: op, method: http.MethodGet, bucket: bucket, key: key,
		query:  versionQuery(url.Values{"rgwx-prepend-metadata": {"true"}}, versionID),
		header: http.Header{"Range": {fmt.Sprintf("bytes=0-%d", n-1)}}}
	resp, data, err := c.send(ctx, r)
	var gerr *GatewayError
	if errors.As(err, &gerr) && gerr.Status == http.StatusRequestedRangeNotSatisfiable {
		// An empty object has no byte 0: read it whole (it is empty).
		r.header = nil
		resp, data, err = c.send(ctx, r)
	}
	if err != nil {
		return ObjectInfo{}, nil, err
	}
	info, aclDefault, err := decodeStat(bucket, key, resp.Header, data)
	if err != nil {
		return ObjectInfo{}, nil, fmt.Errorf("%s: %w", op, err)
	}
	m, _ := strconv.Atoi(resp.Header.Get("Rgwx-Embedded-Metadata-Len")) // checked by decodeStat
	// A copy of its own: the body may travel in a batch that stays in
	// flight until acked, and it is counted in the stream's byte window
	// for its length; the answer's buffer also holds the attributes.
	body = bytes.Clone(data[m:])
	if want := min(info.Size, n); int64(len(body)) != want {
		return ObjectInfo{}, nil, fmt.Errorf("%s: %d bytes after the attributes, want %d (changed meanwhile?)", op, len(body), want)
	}
	if versionID != "" && info.VersionID == "" {
		info.VersionID = versionID
	}
	if !aclDefault {
		_, acl, err := c.send(ctx, call{op: op + ": get acl", method: http.MethodGet, bucket: bucket, key: key,
			query: versionQuery(url.Values{"acl": {""}}, info.VersionID)})
		if err != nil {
			return ObjectInfo{}, nil, err
		}
		// Only the gateway's own document: a 200 with anything else (a
		// proxy's page) would travel as the object's ACL.
		var p struct {
			XMLName xml.Name
			Owner   string `xml:"Owner>ID"`
		}
		if err := xml.Unmarshal(acl, &p); err != nil || p.XMLName.Local != "AccessControlPolicy" {
			return ObjectInfo{}, nil, fmt.Errorf("%s: acl: not an access control policy (%v): %.200q", op, err, acl)
		}
		info.ACL = acl
		if info.Owner == "" {
			info.Owner = p.Owner
		}
	}
	return info, body, nil
}

// prependedMeta is the JSON rgwx-prepend-metadata puts before the data.
type prependedMeta struct {
	Attrs []struct {
		Key string `json:"key"`
		Val []byte `json:"val"` // base64 in the JSON
	} `json:"attrs"`
	Mtime string `json:"mtime"`
}

// decodeStat builds an ObjectInfo from a prepend-metadata answer. aclDefault
// says the ACL attribute is the default one (ACL left nil).
func decodeStat(bucket, key string, h http.Header, body []byte) (info ObjectInfo, aclDefault bool, err error) {
	n, err := strconv.Atoi(h.Get("Rgwx-Embedded-Metadata-Len"))
	if err != nil || n < 0 || n > len(body) {
		return ObjectInfo{}, false, fmt.Errorf("bad Rgwx-Embedded-Metadata-Len %q for a %d-byte answer (is the user a system user?)",
			h.Get("Rgwx-Embedded-Metadata-Len"), len(body))
	}
	var meta prependedMeta
	if err := json.Unmarshal(body[:n], &meta); err != nil {
		return ObjectInfo{}, false, fmt.Errorf("prepended metadata: %w", err)
	}
	info = ObjectInfo{Bucket: bucket, Key: key, ETag: strings.Trim(h.Get("ETag"), `"`),
		VersionID: h.Get("X-Amz-Version-Id")}
	info.Size, err = objectSize(h, len(body)-n)
	if err != nil {
		return ObjectInfo{}, false, err
	}
	info.Mtime = parseRgwxMtime(h.Get("Rgwx-Mtime"))
	if info.Mtime.IsZero() {
		info.Mtime, _ = time.Parse(time.RFC3339Nano, meta.Mtime)
	}
	var manifest []byte
	for _, a := range meta.Attrs {
		name, ok := strings.CutPrefix(a.Key, "user.rgw.")
		if !ok {
			continue
		}
		val := strings.TrimSuffix(string(a.Val), "\x00") // C strings keep their NUL
		switch {
		case name == "content_type":
			info.ContentType = val
		case name == "cache_control":
			info.CacheControl = val
		case name == "content_disposition":
			info.ContentDisposition = val
		case name == "content_encoding":
			info.ContentEncoding = val
		case name == "content_language":
			info.ContentLanguage = val
		case name == "expires":
			info.Expires = val
		case strings.HasPrefix(name, "x-amz-meta-"):
			if info.UserMeta == nil {
				info.UserMeta = map[string]string{}
			}
			info.UserMeta[strings.ToLower(strings.TrimPrefix(name, "x-amz-meta-"))] = val
		case name == "x-amz-tagging":
			if info.Tags, err = decodeTags(a.Val); err != nil {
				return ObjectInfo{}, false, err
			}
		case name == "acl":
			if info.Owner, aclDefault, err = aclSummary(a.Val); err != nil {
				// Not fatal: Stat then reads the ACL (and its owner) as XML.
				aclDefault = false
			}
		case name == "manifest":
			manifest = a.Val
		}
	}
	if parts, ok := multipartCount(info.ETag); ok {
		if manifest == nil {
			return ObjectInfo{}, false, fmt.Errorf("multipart ETag %s but no manifest attribute", info.ETag)
		}
		if info.PartSizes, err = partSizes(manifest); err != nil {
			return ObjectInfo{}, false, err
		}
		var sum int64
		for _, s := range info.PartSizes {
			sum += s
		}
		if len(info.PartSizes) != parts || sum != info.Size {
			return ObjectInfo{}, false, fmt.Errorf("manifest gives %d parts, %d bytes; the ETag %s and size say %d parts, %d bytes",
				len(info.PartSizes), sum, info.ETag, parts, info.Size)
		}
	}
	return info, aclDefault, nil
}

// objectSize is the total of "Content-Range: bytes 0-0/N", or, for a whole
// answer, the data after the metadata.
func objectSize(h http.Header, dataLen int) (int64, error) {
	cr := h.Get("Content-Range")
	if cr == "" {
		return int64(dataLen), nil
	}
	_, total, ok := strings.Cut(cr, "/")
	n, err := strconv.ParseInt(total, 10, 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("bad Content-Range %q", cr)
	}
	return n, nil
}

// parseRgwxMtime reads "1795637640.124984846" (seconds.nanoseconds).
func parseRgwxMtime(s string) time.Time {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		ns, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(n, ns).UTC()
}

// multipartCount reads N from an ETag "<md5>-N".
func multipartCount(etag string) (int, bool) {
	_, n, ok := strings.Cut(etag, "-")
	if !ok {
		return 0, false
	}
	parts, err := strconv.Atoi(n)
	return parts, err == nil && parts > 0
}

// Get reads length bytes of an object from offset (length < 0: to the
// end). The caller closes the body. ctx bounds the whole read.
func (c *Client) Get(ctx context.Context, bucket, key, versionID string, offset, length int64) (io.ReadCloser, error) {
	op := fmt.Sprintf("get %s/%s", bucket, key)
	if offset < 0 {
		return nil, fmt.Errorf("%s: negative offset %d", op, offset)
	}
	if length == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	h := http.Header{}
	switch {
	case length > 0:
		h.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		h.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, _, err := c.send(ctx, call{op: op, method: http.MethodGet, bucket: bucket, key: key,
		query: versionQuery(url.Values{}, versionID), header: h, keepOpen: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ListEntry is one entry of a bucket index shard listing.
type ListEntry struct {
	Key, VersionID string // VersionID "null" in an unversioned bucket
	IsLatest       bool
	DeleteMarker   bool
	ETag           string // without quotes; "" for a delete marker
	Size           int64
	Mtime          time.Time
	Owner          string
	VersionedEpoch uint64 // 0 in an unversioned bucket
}

// ListPage is one page of ListShard.
type ListPage struct {
	Entries                          []ListEntry
	NextKeyMarker, NextVersionMarker string
	Truncated                        bool
}

// DefaultListMax is ListShard's page size when max <= 0.
const DefaultListMax = 1000

// ListShard lists one bucket index shard, all versions and delete markers,
// after (keyMarker, versionMarker), as Ceph's full data sync does
// (RGWListBucketShardCR): GET /<bucket>?versions&rgwx-bucket-instance=<b:id:shard>
// &format=json&objs-container=true. bucketShard is "bucket:instance:shard",
// or "bucket:instance" for a bucket with one unsharded index.
func (c *Client) ListShard(ctx context.Context, bucketShard, keyMarker, versionMarker string, max int) (ListPage, error) {
	op := "list bucket shard " + bucketShard
	bucket, inst, err := shardBucket(op, bucketShard)
	if err != nil {
		return ListPage{}, err
	}
	return c.listShard(ctx, op, bucket, inst, "", keyMarker, versionMarker, max)
}

// shardBucket reads a "[tenant/]bucket:instance[:shard]" key as the
// bucket of the request's path ("tenant/name") and the value of
// rgwx-bucket-instance (rgwlog.BucketShard.InstanceParam).
func shardBucket(op, bucketShard string) (bucket, instance string, err error) {
	bs, err := rgwlog.ParseBucketShard(bucketShard)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", op, err)
	}
	return bs.Bucket, bs.InstanceParam(), nil
}

// FindVersion reads the listing entry of one version of key — delete
// markers included, which Stat cannot see — from the key's bucket index
// shard, by listing the shard's versions with prefix=key. found is false
// when the source has no such version (any more). versionID "null" is the
// null version (or, in an unversioned bucket, the object).
func (c *Client) FindVersion(ctx context.Context, bucketShard, key, versionID string) (en ListEntry, found bool, err error) {
	op := fmt.Sprintf("find version %q of %q in %s", versionID, key, bucketShard)
	bucket, inst, err := shardBucket(op, bucketShard)
	if err != nil {
		return ListEntry{}, false, err
	}
	return c.findVersion(ctx, op, bucket, inst, key, versionID)
}

// FindVersionInBucket is FindVersion by the bucket's S3 name ("name" or
// "tenant:name"), for a caller that does not know the index shard (the
// applier, asking the destination whether it has a delete marker already):
// a plain versioned listing with prefix=key, which the gateway merges from
// every index shard.
func (c *Client) FindVersionInBucket(ctx context.Context, bucket, key, versionID string) (en ListEntry, found bool, err error) {
	if bucket == "" {
		return ListEntry{}, false, fmt.Errorf("find version %q of %q: no bucket", versionID, key)
	}
	return c.findVersion(ctx, fmt.Sprintf("find version %q of %s/%s", versionID, bucket, key), bucket, "", key, versionID)
}

// LatestInBucket reads the listing entry of key's current version or
// delete marker (found false: the bucket lists no version of key).
func (c *Client) LatestInBucket(ctx context.Context, bucket, key string) (en ListEntry, found bool, err error) {
	if bucket == "" {
		return ListEntry{}, false, fmt.Errorf("find the current version of %q: no bucket", key)
	}
	return c.findEntry(ctx, fmt.Sprintf("find the current version of %s/%s", bucket, key), bucket, "", key,
		func(en ListEntry) bool { return en.IsLatest })
}

func (c *Client) findVersion(ctx context.Context, op, bucket, bucketShard, key, versionID string) (en ListEntry, found bool, err error) {
	return c.findEntry(ctx, op, bucket, bucketShard, key, func(en ListEntry) bool { return en.VersionID == versionID })
}

// findEntry is the first listing entry of key that match accepts.
func (c *Client) findEntry(ctx context.Context, op, bucket, bucketShard, key string, match func(ListEntry) bool) (en ListEntry, found bool, err error) {
	km, vm := "", ""
	for {
		page, err := c.listShard(ctx, op, bucket, bucketShard, key, km, vm, 100)
		if err != nil {
			return ListEntry{}, false, err
		}
		for _, en := range page.Entries {
			if en.Key != key {
				// The versions of key come first; then keys it prefixes.
				return ListEntry{}, false, nil
			}
			if match(en) {
				return en, true, nil
			}
		}
		if !page.Truncated || page.NextKeyMarker == "" {
			return ListEntry{}, false, nil
		}
		km, vm = page.NextKeyMarker, page.NextVersionMarker
	}
}

// listShard lists the versions of bucket after (keyMarker,
// versionMarker): of one index shard when bucketShard is set, else of the
// whole bucket.
func (c *Client) listShard(ctx context.Context, op, bucket, bucketShard, prefix, keyMarker, versionMarker string, max int) (ListPage, error) {
	if max <= 0 {
		max = DefaultListMax
	}
	q := url.Values{
		"versions":          {""},
		"format":            {"json"},
		"objs-container":    {"true"},
		"max-keys":          {strconv.Itoa(max)},
		"key-marker":        {keyMarker},
		"version-id-marker": {versionMarker},
	}
	if bucketShard != "" {
		q.Set("rgwx-bucket-instance", bucketShard)
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	_, data, err := c.send(ctx, call{op: op, method: http.MethodGet, bucket: bucket, query: q})
	if err != nil {
		return ListPage{}, err
	}
	page, err := decodeListPage(data)
	if err != nil {
		return ListPage{}, fmt.Errorf("%s: %w", op, err)
	}
	return page, nil
}

type wireListPage struct {
	IsTruncated         jsonBool `json:"IsTruncated"`
	NextKeyMarker       string   `json:"NextKeyMarker"`
	NextVersionIDMarker string   `json:"NextVersionIdMarker"`
	Entries             *[]struct {
		IsDeleteMarker bool   `json:"IsDeleteMarker"`
		Key            string `json:"Key"`
		VersionedEpoch uint64 `json:"VersionedEpoch"`
		RgwxMtime      string `json:"RgwxMtime"`
		VersionID      string `json:"VersionId"`
		IsLatest       bool   `json:"IsLatest"`
		LastModified   string `json:"LastModified"`
		ETag           string `json:"ETag"`
		Size           int64  `json:"Size"`
		Owner          struct {
			ID string `json:"ID"`
		} `json:"Owner"`
	} `json:"Entries"`
}

// jsonBool accepts true and "true": the listing says "IsTruncated":"false".
type jsonBool bool

func (b *jsonBool) UnmarshalJSON(p []byte) error {
	s := strings.Trim(string(p), `"`)
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("bad boolean %s", p)
	}
	*b = jsonBool(v)
	return nil
}

func decodeListPage(data []byte) (ListPage, error) {
	var w wireListPage
	if err := json.Unmarshal(data, &w); err != nil {
		return ListPage{}, fmt.Errorf("decode listing: %w", err)
	}
	if w.Entries == nil {
		return ListPage{}, fmt.Errorf("decode listing: no Entries (not a system listing?): %.200s", data)
	}
	page := ListPage{Truncated: bool(w.IsTruncated), NextKeyMarker: w.NextKeyMarker, NextVersionMarker: w.NextVersionIDMarker}
	for _, e := range *w.Entries {
		mt, err := time.Parse(time.RFC3339Nano, e.RgwxMtime)
		if err != nil {
			mt, _ = time.Parse(time.RFC3339Nano, e.LastModified)
		}
		page.Entries = append(page.Entries, ListEntry{Key: e.Key, VersionID: e.VersionID, IsLatest: e.IsLatest,
			DeleteMarker: e.IsDeleteMarker, ETag: strings.Trim(e.ETag, `"`), Size: e.Size, Mtime: mt,
			Owner: e.Owner.ID, VersionedEpoch: e.VersionedEpoch})
	}
	if page.Truncated && page.NextKeyMarker == "" && len(page.Entries) > 0 {
		last := page.Entries[len(page.Entries)-1]
		page.NextKeyMarker, page.NextVersionMarker = last.Key, last.VersionID
	}
	return page, nil
}

// strHashLinux is Ceph's ceph_str_hash_linux (the Linux dcache hash).
func strHashLinux(s string) uint32 {
	var h uint32
	for i := 0; i < len(s); i++ {
		c := uint32(s[i])
		h = (h + (c << 4) + (c >> 4)) * 11
	}
	return h
}

// DataLogShard is the data-log shard that logs changes of a bucket index
// shard (RGWDataChangesLog::choose_oid): (hash(bucket name) + shard) %
// numShards, with the bucket's name without its tenant and shard -1 (an
// unsharded index) counted as 0.
func DataLogShard(bucketName string, indexShard, numShards int) int {
	if _, name, ok := strings.Cut(bucketName, "/"); ok {
		bucketName = name
	}
	return int((strHashLinux(bucketName) + uint32(max(indexShard, 0))) % uint32(numShards))
}

// IndexShard is the bucket index shard that holds an object's entries
// (rgw_bucket_shard_index): every version of a key is in the same shard.
// numShards <= 0 (an unsharded index) gives -1.
func IndexShard(key string, numShards int) int {
	if numShards <= 0 {
		return -1
	}
	h := strHashLinux(key)
	h ^= (h & 0xff) << 24
	const prime0, prime1 = 7877, 65521 // RGW_SHARDS_PRIME_0 / _1
	if numShards <= prime0 {
		return int(h % prime0 % uint32(numShards))
	}
	return int(h % prime1 % uint32(numShards))
}

// ListBucket lists a whole bucket's versions and delete markers after
// (keyMarker, versionMarker) — only the keys that start with prefix when
// it is set — as ListShard lists one index shard; the gateway merges the
// shards (keys ascending, a key's versions newest first). bucket is "name"
// or "tenant:name".
func (c *Client) ListBucket(ctx context.Context, bucket, prefix, keyMarker, versionMarker string, max int) (ListPage, error) {
	if bucket == "" {
		return ListPage{}, fmt.Errorf("list bucket versions: no bucket")
	}
	return c.listShard(ctx, "list the versions of bucket "+bucket, bucket, "", prefix, keyMarker, versionMarker, max)
}
