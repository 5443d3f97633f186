package rgwadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Values of PutMetadata's updateType.
const (
	// UpdateByVersion applies a blob whose version has the same tag as the
	// gateway's copy and a higher ver. A key the gateway does not have has
	// the tag "", so it is always skipped: create with "" first.
	UpdateByVersion = "update-by-version"
	// UpdateByTimestamp applies a blob whose mtime is newer than the
	// gateway's copy (an absent user is older than anything). PutMetadata
	// refuses it for bucket.instance: radosgw 16.2.15 segfaults
	// (RGWMetadataHandlerPut_SObj::put_pre) on such a PUT of a key it does
	// not have.
	UpdateByTimestamp = "update-by-timestamp"
)

// DefaultKeyPageSize is the page size ListMetadataKeys asks for when max <= 0.
const DefaultKeyPageSize = 1000

func metadataPath(section string) string {
	return "/admin/metadata/" + section
}

func checkSection(op, section string) error {
	if section == "" || strings.ContainsAny(section, "/?#") {
		return fmt.Errorf("%s: bad metadata section %q", op, section)
	}
	return nil
}

// ListMetadataSections lists the metadata sections ("bucket",
// "bucket.instance", "otp", "user", …).
func (c *Client) ListMetadataSections(ctx context.Context) ([]string, error) {
	const op = "list metadata sections"
	out, body, err := getJSON[[]string](ctx, c, request{op: op, method: http.MethodGet, path: "/admin/metadata", query: url.Values{}})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, missing(op, body, "[sections]")
	}
	return out, nil
}

// ListMetadataKeys lists one page of a section's keys after marker (""
// = from the start; then the Marker of the previous page), at most max
// (max <= 0: DefaultKeyPageSize). The gateway answers the paged form
// ({keys, truncated, count, marker}) only when max-entries is given, so it
// always is.
func (c *Client) ListMetadataKeys(ctx context.Context, section, marker string, max int) (KeyPage, error) {
	op := fmt.Sprintf("list metadata keys of %s", section)
	if err := checkSection(op, section); err != nil {
		return KeyPage{}, err
	}
	if max <= 0 {
		max = DefaultKeyPageSize
	}
	q := url.Values{}
	setPaging(q, "marker", marker, max)
	w, body, err := getJSON[wireKeyPage](ctx, c, request{op: op, method: http.MethodGet, path: metadataPath(section), query: q})
	if err != nil {
		return KeyPage{}, err
	}
	if w.Keys == nil {
		return KeyPage{}, missing(op, body, "keys")
	}
	return KeyPage{Keys: *w.Keys, Truncated: bool(w.Truncated), Marker: w.Marker, Count: w.Count}, nil
}

// GetMetadata returns the raw JSON of one metadata entry
// ({"key","ver","mtime","data"}), ready for PutMetadata on another zone.
// ErrNotFound when there is no such key.
func (c *Client) GetMetadata(ctx context.Context, section, key string) ([]byte, error) {
	op := fmt.Sprintf("get metadata %s:%s", section, key)
	if err := checkSection(op, section); err != nil {
		return nil, err
	}
	if key == "" {
		return nil, fmt.Errorf("%s: empty key", op)
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: metadataPath(section),
		query: url.Values{"key": {key}}})
	if err != nil {
		return nil, err
	}
	if !json.Valid(resp.body) {
		// Unmarshal again only to get a precise syntax error.
		var v any
		err := json.Unmarshal(resp.body, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, &DecodeError{Op: op, Body: resp.body, Err: err}
	}
	return resp.body, nil
}

// PutMetadata writes a metadata entry (a blob from GetMetadata). With
// updateType UpdateByVersion or UpdateByTimestamp the gateway keeps its own
// copy when the blob is not newer (Applied false, Status "skipped"); beware
// that UpdateByVersion also skips keys the gateway does not have yet.
// updateType "" writes unconditionally. Write a bucket.instance before its
// bucket.
func (c *Client) PutMetadata(ctx context.Context, section, key string, blob []byte, updateType string) (UpdateStatus, error) {
	op := fmt.Sprintf("put metadata %s:%s", section, key)
	if err := checkSection(op, section); err != nil {
		return UpdateStatus{}, err
	}
	if key == "" {
		return UpdateStatus{}, fmt.Errorf("%s: empty key", op)
	}
	if len(blob) == 0 {
		return UpdateStatus{}, fmt.Errorf("%s: empty blob", op)
	}
	if updateType == UpdateByTimestamp && section == "bucket.instance" {
		return UpdateStatus{}, fmt.Errorf("%s: refused: %s on a bucket.instance the gateway does not have crashes radosgw 16.2.15; use %q or none", op, updateType, UpdateByVersion)
	}
	q := url.Values{"key": {key}}
	if updateType != "" {
		q.Set("update-type", updateType)
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodPut, path: metadataPath(section), query: q, body: blob})
	if err != nil {
		return UpdateStatus{}, err
	}
	st := UpdateStatus{
		Status:  resp.header.Get("RGWX_UPDATE_STATUS"),
		Version: resp.header.Get("RGWX_UPDATE_VERSION"),
	}
	st.Applied = st.Status != "skipped"
	return st, nil
}

// DeleteMetadata removes a metadata entry. ErrNotFound when there is none
// (including when a retried attempt finds the first one did the job).
func (c *Client) DeleteMetadata(ctx context.Context, section, key string) error {
	op := fmt.Sprintf("delete metadata %s:%s", section, key)
	if err := checkSection(op, section); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("%s: empty key", op)
	}
	_, err := c.do(ctx, request{op: op, method: http.MethodDelete, path: metadataPath(section),
		query: url.Values{"key": {key}}})
	return err
}

// BucketVersions is the number of object versions a bucket's index counts
// (GET /admin/bucket?bucket=B&stats=true: usage."rgw.main".num_objects;
// delete markers are not counted). bucket is "name", "tenant/name" or
// "tenant:name".
func (c *Client) BucketVersions(ctx context.Context, bucket string) (int64, error) {
	op := "bucket stats of " + bucket
	// A tenant's bucket is "tenant/name" in the bucket parameter; with a
	// tenant parameter, or as "tenant:name", the gateway answers 404
	// (FACTS.md section 6).
	q := url.Values{"stats": {"true"}, "bucket": {strings.Replace(bucket, ":", "/", 1)}}
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: "/admin/bucket", query: q})
	if err != nil {
		return 0, err
	}
	var v struct {
		Usage map[string]struct {
			NumObjects int64 `json:"num_objects"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(resp.body, &v); err != nil {
		return 0, &DecodeError{Op: op, Body: resp.body, Err: err}
	}
	return v.Usage["rgw.main"].NumObjects, nil
}
