package rgwobj

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// writeQuery is the query of a write on behalf of owner; with a version
// id and epoch it also keeps the source's version id and order. "null" is
// sent too: it writes the null version even when the destination bucket is
// (still) versioning-enabled — measured on 16.2.15: rgwx-version-id=null on
// an enabled bucket answers x-amz-version-id: null and lists one null
// version — so an object written while the source bucket was suspended
// does not become a random version when the versioning change has not
// reached the destination yet. On an unversioned bucket it is harmless.
func writeQuery(owner, versionID string, epoch uint64) url.Values {
	q := url.Values{"rgwx-uid": {owner}}
	if versionID != "" {
		q.Set("rgwx-version-id", versionID)
		if epoch > 0 {
			q.Set("rgwx-versioned-epoch", strconv.FormatUint(epoch, 10))
		}
	}
	return q
}

// attrHeaders are the headers that carry info's attributes on a PUT or an
// InitiateMultipartUpload.
func attrHeaders(info ObjectInfo) http.Header {
	h := http.Header{}
	for name, v := range map[string]string{
		"Content-Type": info.ContentType, "Cache-Control": info.CacheControl,
		"Content-Disposition": info.ContentDisposition, "Content-Encoding": info.ContentEncoding,
		"Content-Language": info.ContentLanguage, "Expires": info.Expires,
	} {
		if v != "" {
			h.Set(name, v)
		}
	}
	for k, v := range info.UserMeta {
		h.Set("X-Amz-Meta-"+k, v)
	}
	if len(info.Tags) > 0 {
		h.Set("X-Amz-Tagging", encodeTags(info.Tags))
	}
	return h
}

// encodeTags is the x-amz-tagging value: a URL query, spaces as %20.
func encodeTags(tags map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ReplaceAll(url.QueryEscape(k), "+", "%20"))
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(tags[k]), "+", "%20"))
	}
	return b.String()
}

func checkOwner(op string, info ObjectInfo) error {
	if info.Bucket == "" || info.Key == "" || info.Owner == "" {
		return fmt.Errorf("%s: bucket, key and owner are required", op)
	}
	return nil
}

// Put writes an object in one request: Content-Length info.Size, every
// attribute of info, rgwx-uid=info.Owner, and for a real version id
// rgwx-version-id and rgwx-versioned-epoch (versionedEpoch > 0). A plain
// MD5 ETag is sent as Content-MD5, so the gateway refuses (BadDigest) a
// body that is not the source's. A non-default ACL is then set with PutACL.
// It returns the ETag the gateway stored. Not retried (the body is a stream).
func (c *Client) Put(ctx context.Context, info ObjectInfo, body io.Reader, versionedEpoch uint64) (string, error) {
	op := fmt.Sprintf("put %s/%s", info.Bucket, info.Key)
	if err := checkOwner(op, info); err != nil {
		return "", err
	}
	h := attrHeaders(info)
	if md5, err := hex.DecodeString(info.ETag); err == nil && len(md5) == 16 {
		h.Set("Content-MD5", base64.StdEncoding.EncodeToString(md5))
	}
	if body == nil {
		body = http.NoBody
	}
	q := writeQuery(info.Owner, info.VersionID, versionedEpoch)
	named := info.VersionID != "" && info.VersionID != "null"
	if named {
		// rgwx-version-id alone is obeyed only while the bucket is
		// versioning-enabled; suspended (its metadata ahead of its data),
		// the gateway stores the version as the null one, its id lost.
		// versionId= keeps the id and epoch in every state (FACTS.md
		// section 14).
		q.Set("versionId", info.VersionID)
	}
	resp, _, err := c.send(ctx, call{op: op, method: http.MethodPut, bucket: info.Bucket, key: info.Key,
		query: q, header: h, stream: body, streamSize: info.Size})
	if err != nil {
		return "", err
	}
	if got := resp.Header.Get("X-Amz-Version-Id"); named && got != "" && got != info.VersionID {
		return "", fmt.Errorf("%s: the gateway stored version %q, not %q", op, got, info.VersionID)
	}
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	if info.ACL != nil {
		if err := c.PutACL(ctx, info.Bucket, info.Key, info.VersionID, info.Owner, info.ACL); err != nil {
			return etag, err
		}
	}
	return etag, nil
}

// PutMultipart writes a multipart object with info.PartSizes as its part
// boundaries, so the copy has the source's "-N" ETag. part(n, offset, size)
// gives part n (1-based) of the source. The version id and epoch go on the
// complete request. On failure the upload is aborted. The ETag returned is
// read with HEAD: CompleteMultipartUpload answers an empty one.
func (c *Client) PutMultipart(ctx context.Context, info ObjectInfo,
	part func(n int, offset, size int64) (io.ReadCloser, error), versionedEpoch uint64) (etag string, err error) {
	op := fmt.Sprintf("put multipart %s/%s", info.Bucket, info.Key)
	if err := checkOwner(op, info); err != nil {
		return "", err
	}
	if len(info.PartSizes) == 0 {
		return "", fmt.Errorf("%s: no part sizes", op)
	}
	owner := url.Values{"rgwx-uid": {info.Owner}}
	_, data, err := c.send(ctx, call{op: op + ": initiate", method: http.MethodPost, bucket: info.Bucket, key: info.Key,
		query: url.Values{"uploads": {""}, "rgwx-uid": {info.Owner}}, header: attrHeaders(info)})
	if err != nil {
		return "", err
	}
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal(data, &init); err != nil || init.UploadID == "" {
		return "", fmt.Errorf("%s: initiate answer without UploadId (%v): %.200s", op, err, data)
	}
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is over, or the parts stay on the gateway.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		q := maps.Clone(owner)
		q.Set("uploadId", init.UploadID)
		if _, _, aerr := c.send(actx, call{op: op + ": abort", method: http.MethodDelete,
			bucket: info.Bucket, key: info.Key, query: q}); aerr != nil && !errors.Is(aerr, ErrNotFound) {
			err = errors.Join(err, aerr)
		}
	}()
	type completedPart struct {
		PartNumber int
		ETag       string
	}
	var done []completedPart
	var offset int64
	for i, size := range info.PartSizes {
		n := i + 1
		etag, err := c.putPart(ctx, op, info, init.UploadID, n, offset, size, part)
		if err != nil {
			return "", err
		}
		done = append(done, completedPart{PartNumber: n, ETag: `"` + etag + `"`})
		offset += size
	}
	body, err := xml.Marshal(struct {
		XMLName xml.Name        `xml:"CompleteMultipartUpload"`
		Parts   []completedPart `xml:"Part"`
	}{Parts: done})
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	q := writeQuery(info.Owner, info.VersionID, versionedEpoch)
	q.Set("uploadId", init.UploadID)
	if _, _, err := c.send(ctx, call{op: op + ": complete", method: http.MethodPost, bucket: info.Bucket, key: info.Key,
		query: q, body: body}); err != nil {
		return "", err
	}
	// The object exists from here on: no abort (err stays nil below unless
	// the HEAD or the ACL fails, and an abort then finds no upload).
	head, err := c.Head(ctx, info.Bucket, info.Key, destVersion(info.VersionID))
	if err != nil {
		return "", fmt.Errorf("%s: after complete: %w", op, err)
	}
	if info.ACL != nil {
		if err := c.PutACL(ctx, info.Bucket, info.Key, info.VersionID, info.Owner, info.ACL); err != nil {
			return head.ETag, err
		}
	}
	return head.ETag, nil
}

// destVersion is the version to ask the destination for after a write of
// versionID: "null" and "" both mean "the current one".
func destVersion(versionID string) string {
	if versionID == "null" {
		return ""
	}
	return versionID
}

func (c *Client) putPart(ctx context.Context, op string, info ObjectInfo, uploadID string, n int, offset, size int64,
	part func(n int, offset, size int64) (io.ReadCloser, error)) (string, error) {
	rc, err := part(n, offset, size)
	if err != nil {
		return "", fmt.Errorf("%s: read part %d: %w", op, n, err)
	}
	defer rc.Close()
	q := url.Values{"rgwx-uid": {info.Owner}, "uploadId": {uploadID}, "partNumber": {strconv.Itoa(n)}}
	resp, _, err := c.send(ctx, call{op: fmt.Sprintf("%s: part %d", op, n), method: http.MethodPut,
		bucket: info.Bucket, key: info.Key, query: q, stream: rc, streamSize: size})
	if err != nil {
		return "", err
	}
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	if etag == "" {
		return "", fmt.Errorf("%s: part %d: answer without ETag", op, n)
	}
	return etag, nil
}

// Delete removes an object (versionID "": a plain delete, which makes a
// delete marker with a new id in a versioned bucket) or one version. An
// object or version that is not there counts as deleted.
func (c *Client) Delete(ctx context.Context, bucket, key, owner, versionID string) error {
	op := fmt.Sprintf("delete %s/%s", bucket, key)
	q := url.Values{"rgwx-uid": {owner}}
	_, _, err := c.send(ctx, call{op: op, method: http.MethodDelete, bucket: bucket, key: key,
		query: versionQuery(q, versionID)})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// DeleteVersion removes one version (or delete marker) with the source's
// OLH epoch of that removal (epoch 0: unknown, none sent). Without the epoch
// the destination gives the removal its own next epoch, which can pass the
// source's numbering: a later version or delete marker written with the
// source's epoch then fails to become current (measured on 16.2.15,
// TestVersionDeleteKeepsSourceEpoch). An absent version counts as deleted.
func (c *Client) DeleteVersion(ctx context.Context, bucket, key, owner, versionID string, epoch uint64) error {
	if versionID == "" {
		return fmt.Errorf("delete version of %s/%s: no version id", bucket, key)
	}
	q := url.Values{"rgwx-uid": {owner}, "versionId": {versionID}}
	if epoch > 0 {
		q.Set("rgwx-versioned-epoch", strconv.FormatUint(epoch, 10))
	}
	_, _, err := c.send(ctx, call{op: fmt.Sprintf("delete %s/%s?versionId=%s", bucket, key, versionID),
		method: http.MethodDelete, bucket: bucket, key: key, query: q})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// PutDeleteMarker creates a delete marker with the source's id and epoch
// (a system DELETE with rgwx-version-id and rgwx-versioned-epoch); it
// works on a key the destination does not have yet. The id "null" (a
// DELETE in a suspended bucket) works too, with the bucket enabled or
// suspended, and replaces a null version (FACTS.md section 13).
func (c *Client) PutDeleteMarker(ctx context.Context, bucket, key, owner, markerVersionID string, epoch uint64) error {
	op := fmt.Sprintf("put delete marker %s/%s %s", bucket, key, markerVersionID)
	if markerVersionID == "" {
		return fmt.Errorf("%s: a delete marker needs its version id", op)
	}
	resp, _, err := c.send(ctx, call{op: op, method: http.MethodDelete, bucket: bucket, key: key,
		query: writeQuery(owner, markerVersionID, epoch)})
	if err != nil {
		return err
	}
	got, dm := resp.Header.Get("X-Amz-Version-Id"), resp.Header.Get("X-Amz-Delete-Marker")
	if got == markerVersionID && dm == "" {
		return fmt.Errorf("%s: %w (answered with its version id and no x-amz-delete-marker)", op, ErrMarkerDeclined)
	}
	if got != markerVersionID || dm != "true" {
		return fmt.Errorf("%s: the gateway made version %q (delete marker %q): is the bucket versioned?",
			op, got, resp.Header.Get("X-Amz-Delete-Marker"))
	}
	return nil
}

// PutACL sets an object's ACL from the source's GET ?acl XML. versionID
// "null" is the key's null version, current or not, in every state of the
// bucket (FACTS.md section 16); "" the current version.
func (c *Client) PutACL(ctx context.Context, bucket, key, versionID, owner string, acl []byte) error {
	op := fmt.Sprintf("put acl %s/%s", bucket, key)
	if len(bytes.TrimSpace(acl)) == 0 {
		return fmt.Errorf("%s: empty ACL", op)
	}
	q := versionQuery(url.Values{"acl": {""}, "rgwx-uid": {owner}}, versionID)
	_, _, err := c.send(ctx, call{op: op, method: http.MethodPut, bucket: bucket, key: key, query: q, body: acl,
		header: http.Header{"Content-Type": {"application/xml"}}})
	return err
}

// PutTagging sets an existing object's (version's) tags in place: PUT
// ?tagging with the set, or DELETE ?tagging when tags is empty. Neither
// writes the object again (a version written again with its epoch can
// stop being current: FACTS.md). versionID as for PutACL.
func (c *Client) PutTagging(ctx context.Context, bucket, key, versionID, owner string, tags map[string]string) error {
	op := fmt.Sprintf("put tagging %s/%s", bucket, key)
	q := versionQuery(url.Values{"tagging": {""}, "rgwx-uid": {owner}}, versionID)
	if len(tags) == 0 {
		_, _, err := c.send(ctx, call{op: op, method: http.MethodDelete, bucket: bucket, key: key, query: q})
		return err
	}
	var b strings.Builder
	b.WriteString(`<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>`)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("<Tag><Key>")
		_ = xml.EscapeText(&b, []byte(k))
		b.WriteString("</Key><Value>")
		_ = xml.EscapeText(&b, []byte(tags[k]))
		b.WriteString("</Value></Tag>")
	}
	b.WriteString("</TagSet></Tagging>")
	_, _, err := c.send(ctx, call{op: op, method: http.MethodPut, bucket: bucket, key: key, query: q, body: []byte(b.String()),
		header: http.Header{"Content-Type": {"application/xml"}}})
	return err
}

// BucketVersioning is a bucket's versioning status: "Enabled",
// "Suspended", or "" (never enabled).
func (c *Client) BucketVersioning(ctx context.Context, bucket string) (string, error) {
	op := "get versioning of " + bucket
	_, data, err := c.send(ctx, call{op: op, method: http.MethodGet, bucket: bucket, query: url.Values{"versioning": {""}}})
	if err != nil {
		return "", err
	}
	// Only the gateway's own document is read: a 200 with anything else (a
	// proxy's HTML page) unmarshals without error into an empty Status,
	// "never versioned", which let null versions into an enabled bucket
	// (FACTS.md section 20).
	var v struct {
		XMLName xml.Name
		Status  string `xml:"Status"`
	}
	if err := xml.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("%s: not a versioning configuration (%w): %.200q", op, err, data)
	}
	if v.XMLName.Local != "VersioningConfiguration" {
		return "", fmt.Errorf("%s: not a versioning configuration: %.200q", op, data)
	}
	switch v.Status {
	case "", "Enabled", "Suspended":
		return v.Status, nil
	}
	return "", fmt.Errorf("%s: unknown status %q", op, v.Status)
}

// Head reads what the destination has: ETag, size, version id, content-*
// and x-amz-meta-*. Mtime is the time of the destination's write, not the
// source's. ErrNotFound when absent (a delete marker included).
func (c *Client) Head(ctx context.Context, bucket, key, versionID string) (ObjectInfo, error) {
	op := fmt.Sprintf("head %s/%s", bucket, key)
	resp, _, err := c.send(ctx, call{op: op, method: http.MethodHead, bucket: bucket, key: key,
		query: versionQuery(url.Values{}, versionID)})
	if err != nil {
		return ObjectInfo{}, err
	}
	return infoFromHeaders(bucket, key, resp.Header, resp.ContentLength), nil
}

func infoFromHeaders(bucket, key string, h http.Header, size int64) ObjectInfo {
	info := ObjectInfo{Bucket: bucket, Key: key, Size: size,
		ETag: strings.Trim(h.Get("ETag"), `"`), VersionID: h.Get("X-Amz-Version-Id"),
		ContentType: h.Get("Content-Type"), CacheControl: h.Get("Cache-Control"),
		ContentDisposition: h.Get("Content-Disposition"), ContentEncoding: h.Get("Content-Encoding"),
		ContentLanguage: h.Get("Content-Language"), Expires: h.Get("Expires")}
	info.Mtime, _ = time.Parse(http.TimeFormat, h.Get("Last-Modified"))
	for k, vs := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok && len(vs) > 0 {
			if info.UserMeta == nil {
				info.UserMeta = map[string]string{}
			}
			info.UserMeta[name] = vs[0]
		}
	}
	return info
}
