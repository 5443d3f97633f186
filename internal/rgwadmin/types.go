package rgwadmin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LogInfo describes a log as a whole.
type LogInfo struct {
	NumShards  int
	Period     string // mdlog only: the current period id
	RealmEpoch int    // mdlog only
}

// ShardInfo is the newest position of one log shard. An empty shard has an
// empty Marker and a zero LastUpdate.
type ShardInfo struct {
	Marker     string
	LastUpdate time.Time
}

// ObjVersion is RGW's object version (obj_version).
type ObjVersion struct {
	Tag string `json:"tag"`
	Ver uint64 `json:"ver"`
}

// MDLogEntry is one metadata-log entry. Each change is logged twice, with
// Status "write" then "complete".
type MDLogEntry struct {
	ID, Section, Name         string // Section: "user", "bucket", "bucket.instance", …
	Timestamp                 time.Time
	ReadVersion, WriteVersion ObjVersion
	Status                    string // "write" | "complete"
}

// MDLogPage is one page of a metadata-log shard. Marker is the id of the
// last entry returned (the next page starts after it); Truncated says more
// entries follow.
type MDLogPage struct {
	Entries   []MDLogEntry
	Marker    string
	Truncated bool
}

// DataLogEntry is one data-log entry: a change in a bucket index shard.
type DataLogEntry struct {
	EntityType, Key string // "bucket", "<bucket>:<instance id>:<index shard>"
	Gen             uint64 // the index log generation of the shard (Reef and later; 0 on Pacific)
	Timestamp       time.Time
	LogID           string // the entry's own marker (trim up to it); set only with extra-info
}

// DataLogPage is one page of a data-log shard.
type DataLogPage struct {
	Entries   []DataLogEntry
	Marker    string
	Truncated bool
}

// BILogInfo describes the bucket-index log of a bucket instance (for the
// whole-bucket form, each field is "shard#value,…").
type BILogInfo struct {
	BucketVer, MasterVer, MaxMarker string // of the current generation's shard, whatever generation was asked
	SyncStopped                     bool
	// LatestGen is the current index log generation and Generations the
	// ones kept, with their shard counts (Reef and later; on Pacific one
	// generation, 0, which Generations leaves out). FACTS.md section 32.
	LatestGen   uint64
	Generations []BILogGeneration
	// HasGenerations: the answer names generations (latest_gen: Reef and
	// later); Pacific's does not.
	HasGenerations bool
}

// BILogGeneration is one index log generation of a bucket instance.
type BILogGeneration struct {
	Gen       uint64 `json:"gen"`
	NumShards int    `json:"num_shards"`
}

// BILogEntry is one bucket-index log entry.
type BILogEntry struct {
	OpID, OpTag, Op, Object, Instance, State string // Op: "write", "del", "link_olh", "link_olh_del", "unlink_instance", …
	IndexVer                                 uint64 // per index shard, increasing; a gap is a trim or an op the gateway did not log (FACTS.md §31)
	Timestamp                                time.Time
	Ver                                      struct {
		Pool  int64
		Epoch uint64
	}
	BILogFlags              int
	Versioned               bool
	Owner, OwnerDisplayName string
	ZonesTrace              []string // "<zone id>:<bucket>:<instance>" of each zone the change went through
}

// KeyPage is one page of metadata keys.
type KeyPage struct {
	Keys      []string
	Truncated bool
	Marker    string // pass back for the next page
	Count     int
}

// UpdateStatus is the outcome of a metadata PUT.
type UpdateStatus struct {
	// Applied is false when the gateway kept its own copy
	// (RGWX_UPDATE_STATUS: skipped, e.g. update-by-version with a version
	// that is not newer). Some sections (bucket) send no status header on
	// success: that is Applied with an empty Status.
	Applied bool
	Status  string // RGWX_UPDATE_STATUS: "applied", "skipped" or ""
	Version string // RGWX_UPDATE_VERSION, e.g. "ver:1,tag:_Zv-cXz-0S5o5I8a8yTo0Wnj"
}

// rgwTime decodes RGW timestamps: RFC 3339 ("2026-11-25T12:25:32.671183212Z"),
// or "sec.usec" (last_update of an empty shard is "0.000000": the zero time).
type rgwTime time.Time

func (t *rgwTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		// Some versions write the "sec.usec" form as a number.
		s = string(b)
	}
	if s == "" || s == "null" {
		*t = rgwTime{}
		return nil
	}
	if strings.ContainsRune(s, 'T') {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return err
		}
		*t = rgwTime(v)
		return nil
	}
	sec, frac, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", s, err)
	}
	var nanos int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		n, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return fmt.Errorf("timestamp %q: %w", s, err)
		}
		nanos = n
	}
	if secs == 0 && nanos == 0 {
		*t = rgwTime{}
		return nil
	}
	*t = rgwTime(time.Unix(secs, nanos).UTC())
	return nil
}

// flexBool decodes a JSON bool or RGW's "true"/"false" strings.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("boolean %q: %w", s, err)
		}
		*f = flexBool(v)
		return nil
	}
	var v bool
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = flexBool(v)
	return nil
}

// zoneTraceEntry is one zones_trace item: {"entry":"…"} (a bare string is accepted too).
type zoneTraceEntry string

func (z *zoneTraceEntry) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*z = zoneTraceEntry(s)
		return nil
	}
	var o struct {
		Entry string `json:"entry"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*z = zoneTraceEntry(o.Entry)
	return nil
}

// Wire forms of the answers.

type wireLogInfo struct {
	NumObjects *int   `json:"num_objects"`
	Period     string `json:"period"`
	RealmEpoch int    `json:"realm_epoch"`
}

type wireShardInfo struct {
	Marker     *string `json:"marker"`
	LastUpdate rgwTime `json:"last_update"`
}

type wireMDLogPage struct {
	Marker    string     `json:"marker"`
	Truncated flexBool   `json:"truncated"`
	Entries   *[]wireMDE `json:"entries"`
}

type wireMDE struct {
	ID        string  `json:"id"`
	Section   string  `json:"section"`
	Name      string  `json:"name"`
	Timestamp rgwTime `json:"timestamp"`
	Data      struct {
		ReadVersion  ObjVersion `json:"read_version"`
		WriteVersion ObjVersion `json:"write_version"`
		Status       struct {
			Status string `json:"status"`
		} `json:"status"`
	} `json:"data"`
}

type wireDataLogPage struct {
	Marker    string     `json:"marker"`
	Truncated flexBool   `json:"truncated"`
	Entries   *[]wireDLE `json:"entries"`
}

// wireDLE is a data-log entry with extra-info ({log_id, log_timestamp,
// entry{…}}) or without it (the inner object alone).
type wireDLE struct {
	LogID string        `json:"log_id"`
	Entry *wireDLEInner `json:"entry"`
	wireDLEInner
}

type wireDLEInner struct {
	EntityType string  `json:"entity_type"`
	Key        string  `json:"key"`
	Gen        uint64  `json:"gen"`
	Timestamp  rgwTime `json:"timestamp"`
}

func (w *wireDLE) toEntry() DataLogEntry {
	in := w.wireDLEInner
	if w.Entry != nil {
		in = *w.Entry
	}
	return DataLogEntry{EntityType: in.EntityType, Key: in.Key, Gen: in.Gen, Timestamp: time.Time(in.Timestamp), LogID: w.LogID}
}

type wireBILogInfo struct {
	BucketVer   string            `json:"bucket_ver"`
	MasterVer   string            `json:"master_ver"`
	MaxMarker   *string           `json:"max_marker"`
	SyncStopped flexBool          `json:"syncstopped"`
	LatestGen   *uint64           `json:"latest_gen"`
	Generations []BILogGeneration `json:"generations"`
}

type wireBILE struct {
	OpID      string  `json:"op_id"`
	OpTag     string  `json:"op_tag"`
	Op        string  `json:"op"`
	Object    string  `json:"object"`
	Instance  string  `json:"instance"`
	State     string  `json:"state"`
	IndexVer  uint64  `json:"index_ver"`
	Timestamp rgwTime `json:"timestamp"`
	Ver       struct {
		Pool  int64  `json:"pool"`
		Epoch uint64 `json:"epoch"`
	} `json:"ver"`
	BILogFlags       int              `json:"bilog_flags"`
	Versioned        flexBool         `json:"versioned"`
	Owner            string           `json:"owner"`
	OwnerDisplayName string           `json:"owner_display_name"`
	ZonesTrace       []zoneTraceEntry `json:"zones_trace"`
}

func (w *wireBILE) toEntry() BILogEntry {
	e := BILogEntry{
		OpID: w.OpID, OpTag: w.OpTag, Op: w.Op, Object: w.Object, Instance: w.Instance, State: w.State,
		IndexVer: w.IndexVer, Timestamp: time.Time(w.Timestamp), BILogFlags: w.BILogFlags,
		Versioned: bool(w.Versioned), Owner: w.Owner, OwnerDisplayName: w.OwnerDisplayName,
	}
	e.Ver.Pool, e.Ver.Epoch = w.Ver.Pool, w.Ver.Epoch
	for _, z := range w.ZonesTrace {
		e.ZonesTrace = append(e.ZonesTrace, string(z))
	}
	return e
}

type wireKeyPage struct {
	Keys      *[]string `json:"keys"`
	Truncated flexBool  `json:"truncated"`
	Count     int       `json:"count"`
	Marker    string    `json:"marker"`
}

type wirePeriod struct {
	ID        string `json:"id"`
	PeriodMap *struct {
		Zonegroups []struct {
			ID    string `json:"id"`
			Name  string `json:"name"`
			Zones []struct {
				ID        string   `json:"id"`
				Name      string   `json:"name"`
				Endpoints []string `json:"endpoints"`
			} `json:"zones"`
		} `json:"zonegroups"`
	} `json:"period_map"`
}
