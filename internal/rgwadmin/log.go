package rgwadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const logPath = "/admin/log"

// decodeJSON decodes a 2xx answer; anything else than the expected JSON is a *DecodeError.
func decodeJSON(op string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return &DecodeError{Op: op, Body: body, Err: err}
	}
	return nil
}

// getJSON sends r and decodes its 2xx answer into a T; the answer's body
// is returned too, for the error of a field found missing.
func getJSON[T any](ctx context.Context, c *Client, r request) (T, []byte, error) {
	var w T
	resp, err := c.do(ctx, r)
	if err != nil {
		return w, nil, err
	}
	if err := decodeJSON(r.op, resp.body, &w); err != nil {
		return w, nil, err
	}
	return w, resp.body, nil
}

func missing(op string, body []byte, field string) error {
	return &DecodeError{Op: op, Body: body, Err: fmt.Errorf("no %q in the answer", field)}
}

func checkShard(op string, shard int) error {
	if shard < 0 {
		return fmt.Errorf("%s: negative shard id %d", op, shard)
	}
	return nil
}

// MDLogInfo returns the metadata log's shard count and current period.
func (c *Client) MDLogInfo(ctx context.Context) (LogInfo, error) {
	const op = "get mdlog info"
	w, body, err := getJSON[wireLogInfo](ctx, c, request{op: op, method: http.MethodGet, path: logPath,
		query: url.Values{"type": {"metadata"}}})
	if err != nil {
		return LogInfo{}, err
	}
	if w.NumObjects == nil {
		return LogInfo{}, missing(op, body, "num_objects")
	}
	return LogInfo{NumShards: *w.NumObjects, Period: w.Period, RealmEpoch: w.RealmEpoch}, nil
}

func mdlogQuery(period string, shard int) url.Values {
	q := url.Values{"type": {"metadata"}, "id": {strconv.Itoa(shard)}}
	if period != "" {
		q.Set("period", period)
	}
	return q
}

// MDLogShardInfo returns the newest marker of a metadata-log shard. An
// empty period means the gateway's current one.
func (c *Client) MDLogShardInfo(ctx context.Context, period string, shard int) (ShardInfo, error) {
	op := fmt.Sprintf("get mdlog shard %d info", shard)
	if err := checkShard(op, shard); err != nil {
		return ShardInfo{}, err
	}
	q := mdlogQuery(period, shard)
	q.Set("info", "")
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return ShardInfo{}, err
	}
	return decodeShardInfo(op, resp.body)
}

func decodeShardInfo(op string, body []byte) (ShardInfo, error) {
	var w wireShardInfo
	if err := decodeJSON(op, body, &w); err != nil {
		return ShardInfo{}, err
	}
	if w.Marker == nil {
		return ShardInfo{}, missing(op, body, "marker")
	}
	return ShardInfo{Marker: *w.Marker, LastUpdate: time.Time(w.LastUpdate)}, nil
}

// ListMDLog lists a metadata-log shard after marker (exclusive; "" = from
// the start), at most max entries (max <= 0: the gateway's default).
func (c *Client) ListMDLog(ctx context.Context, period string, shard int, marker string, max int) (MDLogPage, error) {
	op := fmt.Sprintf("list mdlog shard %d", shard)
	if err := checkShard(op, shard); err != nil {
		return MDLogPage{}, err
	}
	q := mdlogQuery(period, shard)
	setPaging(q, "marker", marker, max)
	w, body, err := getJSON[wireMDLogPage](ctx, c, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return MDLogPage{}, err
	}
	if w.Entries == nil {
		return MDLogPage{}, missing(op, body, "entries")
	}
	page := MDLogPage{Marker: w.Marker, Truncated: bool(w.Truncated), Entries: make([]MDLogEntry, 0, len(*w.Entries))}
	for _, e := range *w.Entries {
		page.Entries = append(page.Entries, MDLogEntry{
			ID: e.ID, Section: e.Section, Name: e.Name, Timestamp: time.Time(e.Timestamp),
			ReadVersion: e.Data.ReadVersion, WriteVersion: e.Data.WriteVersion, Status: e.Data.Status.Status,
		})
	}
	return page, nil
}

func setPaging(q url.Values, markerParam, marker string, max int) {
	if marker != "" {
		q.Set(markerParam, marker)
	}
	if max > 0 {
		q.Set("max-entries", strconv.Itoa(max))
	}
}

// DataLogInfo returns the data log's shard count (NumShards only).
func (c *Client) DataLogInfo(ctx context.Context) (LogInfo, error) {
	const op = "get datalog info"
	w, body, err := getJSON[wireLogInfo](ctx, c, request{op: op, method: http.MethodGet, path: logPath,
		query: url.Values{"type": {"data"}}})
	if err != nil {
		return LogInfo{}, err
	}
	if w.NumObjects == nil || *w.NumObjects <= 0 {
		return LogInfo{}, missing(op, body, "num_objects")
	}
	c.mu.Lock()
	c.dataShards = *w.NumObjects
	c.mu.Unlock()
	return LogInfo{NumShards: *w.NumObjects}, nil
}

// ErrBadShard: a data-log shard id outside [0, shard count). The client
// refuses to send it because radosgw 16.2.15 aborts on such a request.
var ErrBadShard = errors.New("rgwadmin: data-log shard id out of range")

// checkDataShard refuses shard ids the gateway would crash on, learning the
// shard count with DataLogInfo on first use.
func (c *Client) checkDataShard(ctx context.Context, op string, shard int) error {
	c.mu.Lock()
	n := c.dataShards
	c.mu.Unlock()
	if n == 0 && shard >= 0 {
		info, err := c.DataLogInfo(ctx)
		if err != nil {
			return fmt.Errorf("%s: learn the data-log shard count: %w", op, err)
		}
		n = info.NumShards
	}
	if shard < 0 || shard >= n {
		return fmt.Errorf("%s: %w: %d not in [0, %d)", op, ErrBadShard, shard, n)
	}
	return nil
}

// DataLogShardInfo returns the newest marker of a data-log shard.
func (c *Client) DataLogShardInfo(ctx context.Context, shard int) (ShardInfo, error) {
	op := fmt.Sprintf("get datalog shard %d info", shard)
	if err := c.checkDataShard(ctx, op, shard); err != nil {
		return ShardInfo{}, err
	}
	q := url.Values{"type": {"data"}, "id": {strconv.Itoa(shard)}, "info": {""}}
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return ShardInfo{}, err
	}
	return decodeShardInfo(op, resp.body)
}

// ListDataLog lists a data-log shard after marker (exclusive), at most max
// entries. It asks for extra-info, so each entry carries its LogID, the
// marker to trim up to.
func (c *Client) ListDataLog(ctx context.Context, shard int, marker string, max int) (DataLogPage, error) {
	op := fmt.Sprintf("list datalog shard %d", shard)
	if err := c.checkDataShard(ctx, op, shard); err != nil {
		return DataLogPage{}, err
	}
	q := url.Values{"type": {"data"}, "id": {strconv.Itoa(shard)}, "extra-info": {"true"}}
	setPaging(q, "marker", marker, max)
	w, body, err := getJSON[wireDataLogPage](ctx, c, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return DataLogPage{}, err
	}
	if w.Entries == nil {
		return DataLogPage{}, missing(op, body, "entries")
	}
	page := DataLogPage{Marker: w.Marker, Truncated: bool(w.Truncated), Entries: make([]DataLogEntry, 0, len(*w.Entries))}
	for i := range *w.Entries {
		page.Entries = append(page.Entries, (*w.Entries)[i].toEntry())
	}
	return page, nil
}

// BILogInfo describes the bucket-index log of "bucket:instance" (every
// index shard, values "shard#value,…") or "bucket:instance:shard" (one).
func (c *Client) BILogInfo(ctx context.Context, bucketInstance string) (BILogInfo, error) {
	op := fmt.Sprintf("get bilog info of %s", bucketInstance)
	q := bilogQuery(bucketInstance)
	q.Set("info", "")
	w, body, err := getJSON[wireBILogInfo](ctx, c, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return BILogInfo{}, err
	}
	if w.MaxMarker == nil {
		return BILogInfo{}, missing(op, body, "max_marker")
	}
	info := BILogInfo{BucketVer: w.BucketVer, MasterVer: w.MasterVer, MaxMarker: *w.MaxMarker, SyncStopped: bool(w.SyncStopped),
		Generations: w.Generations}
	if w.LatestGen != nil {
		info.LatestGen, info.HasGenerations = *w.LatestGen, true
	}
	return info, nil
}

// bilogQuery names a bucket shard's index log for the admin API: a key
// "…@<gen>" (rgwlog.BucketShard) is that generation's log. The generation
// is always sent: without it Reef and later answer the current one, which
// after a reshard is not the log of a generation-0 key; Pacific ignores it
// (FACTS.md section 32).
func bilogQuery(bucketInstance string) url.Values {
	inst, gen := bucketInstance, "0"
	if i := strings.LastIndexByte(bucketInstance, '@'); i > 0 {
		inst, gen = bucketInstance[:i], bucketInstance[i+1:]
	}
	return url.Values{"type": {"bucket-index"}, "bucket-instance": {inst}, "generation": {gen}}
}

// ListBILog lists the bucket-index log of bucketInstance after marker
// (exclusive; an OpID of a previous page), at most max entries (max <= 0:
// the gateway's default). The answer has no "truncated" flag: a page
// shorter than max is the last.
func (c *Client) ListBILog(ctx context.Context, bucketInstance, marker string, max int) ([]BILogEntry, error) {
	op := fmt.Sprintf("list bilog of %s", bucketInstance)
	q := bilogQuery(bucketInstance)
	setPaging(q, "marker", marker, max)
	w, body, err := getJSON[[]wireBILE](ctx, c, request{op: op, method: http.MethodGet, path: logPath, query: q})
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, missing(op, body, "[entries]")
	}
	out := make([]BILogEntry, 0, len(w))
	for i := range w {
		out = append(out, w[i].toEntry())
	}
	return out, nil
}

// lockSeconds turns a lease length into the gateway's whole seconds,
// rounding up: a holder must never believe it holds the lock longer than
// the gateway does.
func lockSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// LockMDLogShard takes or renews (same lockerID) the lock of a
// metadata-log shard for length. ErrLocked when another locker holds it.
// The gateway accepts shard ids past the mdlog's shard count, so these
// locks can serve as leases on anything numbered.
func (c *Client) LockMDLogShard(ctx context.Context, period string, shard int, length time.Duration, zoneID, lockerID string) error {
	op := fmt.Sprintf("lock mdlog shard %d", shard)
	if err := checkShard(op, shard); err != nil {
		return err
	}
	if zoneID == "" || lockerID == "" {
		return fmt.Errorf("%s: zone id and locker id must not be empty", op)
	}
	q := mdlogQuery(period, shard)
	q.Set("lock", "")
	q.Set("length", strconv.FormatInt(lockSeconds(length), 10))
	q.Set("zone-id", zoneID)
	q.Set("locker-id", lockerID)
	_, err := c.do(ctx, request{op: op, method: http.MethodPost, path: logPath, query: q})
	return err
}

// UnlockMDLogShard releases a lock taken by LockMDLogShard. ErrNotFound
// when lockerID does not hold it (or, after a retried attempt, already
// released it).
func (c *Client) UnlockMDLogShard(ctx context.Context, period string, shard int, zoneID, lockerID string) error {
	op := fmt.Sprintf("unlock mdlog shard %d", shard)
	if err := checkShard(op, shard); err != nil {
		return err
	}
	if zoneID == "" || lockerID == "" {
		return fmt.Errorf("%s: zone id and locker id must not be empty", op)
	}
	q := mdlogQuery(period, shard)
	q.Set("unlock", "")
	q.Set("zone-id", zoneID)
	q.Set("locker-id", lockerID)
	_, err := c.do(ctx, request{op: op, method: http.MethodPost, path: logPath, query: q})
	return err
}

// maxTrimRounds bounds TrimMDLog's DELETEs (each removes up to 1000
// entries): 10 million entries on one shard is not a log, it is a bug.
const maxTrimRounds = 10000

// TrimMDLog deletes the entries of a metadata-log shard up to and
// including marker (an entry ID). Trimming again is not an error.
//
// Each gateway call removes at most 1000 entries (cls_log), and answers
// 500 UnknownError (-ENODATA) when it removed none. So TrimMDLog repeats
// the call until a listing shows nothing at or before marker, and takes a
// 500 for "done" only when that listing says so. Mind the marker: entries
// are compared as strings, so a marker that sorts after every id (a typo)
// trims the whole shard.
func (c *Client) TrimMDLog(ctx context.Context, period string, shard int, marker string) error {
	op := fmt.Sprintf("trim mdlog shard %d", shard)
	if err := checkShard(op, shard); err != nil {
		return err
	}
	if marker == "" {
		return fmt.Errorf("%s: empty marker", op)
	}
	q := mdlogQuery(period, shard)
	q.Set("marker", marker)
	trimmed := func(ctx context.Context) (bool, error) {
		p, err := c.ListMDLog(ctx, period, shard, "", 1)
		if err != nil {
			return false, err
		}
		return len(p.Entries) == 0 || p.Entries[0].ID > marker, nil
	}
	settle := func(ctx context.Context, status int) (bool, error) {
		if status != http.StatusInternalServerError {
			return false, nil
		}
		return trimmed(ctx)
	}
	for range maxTrimRounds {
		resp, err := c.do(ctx, request{op: op, method: http.MethodDelete, path: logPath, query: q, settle: settle})
		if err != nil {
			return err
		}
		if resp.settled {
			return nil
		}
		done, err := trimmed(ctx)
		if err != nil {
			return fmt.Errorf("%s: check what is left: %w", op, err)
		}
		if done {
			return nil
		}
	}
	return fmt.Errorf("%s: entries up to %s still listed after %d trims", op, marker, maxTrimRounds)
}

// TrimDataLog deletes the entries of a data-log shard up to and including
// marker (an entry's LogID).
func (c *Client) TrimDataLog(ctx context.Context, shard int, marker string) error {
	op := fmt.Sprintf("trim datalog shard %d", shard)
	if marker == "" {
		return fmt.Errorf("%s: empty marker", op)
	}
	if err := c.checkDataShard(ctx, op, shard); err != nil {
		return err
	}
	q := url.Values{"type": {"data"}, "id": {strconv.Itoa(shard)}, "marker": {marker}}
	_, err := c.do(ctx, request{op: op, method: http.MethodDelete, path: logPath, query: q})
	return err
}

// TrimBILog deletes the bucket-index log entries of bucketInstance up to
// and including endMarker.
func (c *Client) TrimBILog(ctx context.Context, bucketInstance, endMarker string) error {
	op := fmt.Sprintf("trim bilog of %s", bucketInstance)
	if endMarker == "" {
		return fmt.Errorf("%s: empty end marker", op)
	}
	q := bilogQuery(bucketInstance)
	q.Set("end-marker", endMarker)
	_, err := c.do(ctx, request{op: op, method: http.MethodDelete, path: logPath, query: q})
	return err
}
