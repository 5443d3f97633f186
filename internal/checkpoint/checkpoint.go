// Package checkpoint is the durable store of replica_log bounds: for each
// (destination, log, shard) the marker applied through, the oldest unapplied
// change and the items still to retry. A bound is written (and fsynced by
// bbolt's commit) before anything acts on it; every value carries a CRC so a
// damaged file is reported as such, never read as "no bound" (which would
// restart a full sync) or as a wrong marker (which would skip entries).
package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Log names, as used in keys: the logs of rgwlog by their names
// (UnitKey), and the exporter's own lists of promised work.
const (
	LogMetadata     = "metadata"      // rgwlog.LogMetadata
	LogMetadataFull = "metadata.full" // rgwlog.LogMetadataFull
	LogData         = "data"          // rgwlog.LogData
	LogBucketIndex  = "bucket-index"  // rgwlog.LogBucketIndex
	// Work the exporter has promised to do, kept until it is done (not
	// bounds of a source log; nothing reads a marker from them):
	// LogInstanceCheck, a bucket whose entry point zone-b took and whose
	// instance is still to be checked (Instance: the bucket); LogInstanceMet,
	// a bucket instance the data sync met before zone-b had its entry point
	// (Instance: "bucket:instance"); LogRelist, a bucket shard to be listed
	// again (Shard: its datalog shard, Instance: the bucket shard key);
	// LogResync, object versions an operator asked to be sent again
	// (Retries of the bound; Shard, Instance: as LogRelist), until the
	// bucket shard's worker has moved them into its bound's retries.
	LogInstanceCheck = "bucket-instance.check"
	LogInstanceMet   = "bucket-instance.met"
	LogRelist        = "bucket-index.relist"
	LogResync        = "bucket-index.resync"
	// LogMDResync: metadata keys an operator asked to resync, per mdlog
	// shard (Instance "section:key"), until the shard's worker has them
	// in its bound's retries.
	LogMDResync = "metadata.resync"
)

// ErrCorrupt means a stored bound failed its checksum or could not be
// decoded. The store refuses to guess; the operator restores or removes it.
var ErrCorrupt = errors.New("checkpoint corrupt")

// Key names one bound.
type Key struct {
	Destination string
	Log         string
	Shard       uint32
	Instance    string // bucket instance, for LogBucketIndex
}

// UnitKey is the key of a unit of work's bound for a destination.
func UnitKey(destination string, u rgwlog.Unit) Key {
	return Key{Destination: destination, Log: u.Log.String(), Shard: u.Shard}
}

func (k Key) String() string {
	s := k.Destination + "/" + k.Log + "/" + strconv.FormatUint(uint64(k.Shard), 10)
	if k.Instance != "" {
		s += "/" + k.Instance
	}
	return s
}

// Retry is an item that failed to apply and is sent again later.
type Retry struct {
	Section   string `json:"section"`
	Name      string `json:"name"`
	VersionID string `json:"version_id,omitempty"` // objects
	// Epoch: for an object version, the source's OLH epoch of the op that
	// failed (a version delete's epoch cannot be read back from the source).
	Epoch uint64 `json:"epoch,omitempty"`
	// Removal: a removal of the null version (with its Epoch), resent as
	// that removal. The id "null" is reused: the source's null version of
	// later is another op of the key, which comes after it in its own
	// retry (an object can have both).
	Removal     bool      `json:"removal,omitempty"`
	Error       string    `json:"error,omitempty"`
	Attempts    uint32    `json:"attempts"`
	Timestamp   time.Time `json:"timestamp"` // when the change was logged (first seen)
	NextAttempt time.Time `json:"next_attempt"`
	// LastAttempt: when the last attempt failed (zero in bounds written
	// before it was kept).
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

// Phase is where a shard's bound stands in its state machine. Stored as
// its string: the values are part of the bounds file's format.
type Phase string

// The phases of the bounds of every log.
const (
	// A metadata shard (and the metadata full sync, LogMetadataFull).
	PhaseFullSync    Phase = "full-sync"   // the destination's metadata full sync has not finished
	PhaseDone        Phase = "done"        // the metadata full sync is done
	PhaseIncremental Phase = "incremental" // following the log from Marker (mdlog, datalog, bilog shards)
	// A datalog shard whose bucket shards must be re-checked (set on every
	// data shard of a destination when one found its log trimmed past its
	// bound; survives restarts).
	PhaseResync Phase = "resync"
	// A bucket index shard being listed; FullStart holds the bilog marker
	// to go on from (then PhaseIncremental).
	PhaseBucketFull Phase = "full"
)

// Bound is what has been applied of one shard.
type Bound struct {
	Marker     string    `json:"marker"`
	OldestTime time.Time `json:"oldest_time"`
	Retries    []Retry   `json:"retries,omitempty"`
	// Phase is the shard's position in its state machine (the Phase
	// constants); "" for a bound that has none yet.
	Phase     Phase     `json:"phase,omitempty"`
	Applier   string    `json:"applier,omitempty"` // who acked last
	UpdatedAt time.Time `json:"updated_at"`
	// TrimSafe is the previous Marker: the source log may be trimmed up to
	// it (inclusive) for this destination. The entry at Marker itself is
	// kept, so that a reader can tell a log trimmed past its bound (the
	// bound's entry is gone) from one it trimmed itself.
	TrimSafe string `json:"trim_safe,omitempty"`
	// FullStart, for a bucket index shard in full sync, is the bilog
	// marker recorded before its listing began: where its incremental sync
	// starts.
	FullStart string `json:"full_start,omitempty"`
	// Resyncs counts the full re-syncs this shard needed because the
	// source log was trimmed past its bound.
	Resyncs uint32 `json:"resyncs,omitempty"`
}

// Entry is a key with its bound.
type Entry struct {
	Key   Key
	Bound Bound
}

// Store keeps bounds in a bbolt file.
type Store struct {
	db   *bolt.DB
	path string
}

var bucketBounds = []byte("bounds")

const formatVersion = 1

// Open opens (creating if needed) the bounds file. A file locked by another
// process fails after a short wait instead of blocking forever.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open bounds file %s: locked by another process", path)
		}
		return nil, fmt.Errorf("open bounds file %s: %w", path, err)
	}
	// Only a new file is written to at open: a write transaction commits a
	// new meta page even when it changes nothing, and a damaged file must
	// be left exactly as it was found (the operator's evidence).
	var exists bool
	_ = db.View(func(tx *bolt.Tx) error { exists = tx.Bucket(bucketBounds) != nil; return nil })
	if !exists {
		err = db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketBounds)
			return err
		})
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("init bounds file %s: %w", path, err)
		}
	}
	s := &Store{db: db, path: path}
	// Read everything once so a damaged file is reported at start, not when
	// a shard is first touched.
	if _, err := s.List(""); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Get returns the bound of k; ok is false when there is none.
func (s *Store) Get(k Key) (b Bound, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBounds).Get(encodeKey(k))
		if v == nil {
			return nil
		}
		ok = true
		b, err = decode(k, v)
		return err
	})
	return b, ok, err
}

// Put stores bounds durably (one transaction, fsynced) before returning.
func (s *Store) Put(entries ...Entry) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBounds)
		for _, e := range entries {
			v, err := encode(e.Bound)
			if err != nil {
				return fmt.Errorf("encode bound %s: %w", e.Key, err)
			}
			if err := bk.Put(encodeKey(e.Key), v); err != nil {
				return fmt.Errorf("store bound %s: %w", e.Key, err)
			}
		}
		return nil
	})
}

// Delete removes bounds.
func (s *Store) Delete(keys ...Key) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBounds)
		for _, k := range keys {
			if err := bk.Delete(encodeKey(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteIf removes k when del says so of its bound, read and removed in
// one transaction (a Put of k by another goroutine lands before or after,
// never in between).
func (s *Store) DeleteIf(k Key, del func(Bound) bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBounds)
		v := bk.Get(encodeKey(k))
		if v == nil {
			return nil
		}
		b, err := decode(k, v)
		if err != nil {
			return err
		}
		if !del(b) {
			return nil
		}
		return bk.Delete(encodeKey(k))
	})
}

// List returns the bounds of one destination (all when empty), in key order.
func (s *Store) List(destination string) ([]Entry, error) {
	var prefix []byte
	if destination != "" {
		prefix = append([]byte(destination), 0)
	}
	return s.listPrefix(prefix)
}

// ListLog returns the bounds of one log of a destination, in key order:
// a reader of the mdlog or datalog bounds does not decode the bucket-index
// bounds too (tens of thousands in a zone with many buckets).
func (s *Store) ListLog(destination, log string) ([]Entry, error) {
	return s.listPrefix([]byte(destination + "\x00" + log + "\x00"))
}

// ListLogShard returns the bounds of one shard of a destination's log, in
// key order: the bucket shards one datalog shard logs. A data worker reads
// its own at start instead of the whole store (every worker of 128 did:
// O(workers × bounds) at each start).
func (s *Store) ListLogShard(destination, log string, shard uint32) ([]Entry, error) {
	return s.listPrefix(encodeKey(Key{Destination: destination, Log: log, Shard: shard}))
}

func (s *Store) listPrefix(prefix []byte) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBounds).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			key, err := decodeKey(k)
			if err != nil {
				return fmt.Errorf("%s: %w: key %q: %v", s.path, ErrCorrupt, k, err)
			}
			b, err := decode(key, v)
			if err != nil {
				return fmt.Errorf("%s: %w", s.path, err)
			}
			out = append(out, Entry{Key: key, Bound: b})
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return lessKey(out[i].Key, out[j].Key) })
	return out, err
}

func lessKey(a, b Key) bool {
	if a.Destination != b.Destination {
		return a.Destination < b.Destination
	}
	if a.Log != b.Log {
		return a.Log < b.Log
	}
	if a.Shard != b.Shard {
		return a.Shard < b.Shard
	}
	return a.Instance < b.Instance
}

// Keys are "dest\x00log\x00shard(4 bytes BE)\x00instance" so one
// destination's bounds are contiguous and shards sort numerically.
func encodeKey(k Key) []byte {
	var b bytes.Buffer
	b.WriteString(k.Destination)
	b.WriteByte(0)
	b.WriteString(k.Log)
	b.WriteByte(0)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], k.Shard)
	b.Write(n[:])
	b.WriteByte(0)
	b.WriteString(k.Instance)
	return b.Bytes()
}

func decodeKey(raw []byte) (Key, error) {
	dest, rest, ok := bytes.Cut(raw, []byte{0})
	if !ok {
		return Key{}, errors.New("no destination separator")
	}
	log, rest, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(rest) < 5 || rest[4] != 0 {
		return Key{}, errors.New("bad log/shard part")
	}
	return Key{
		Destination: string(dest),
		Log:         string(log),
		Shard:       binary.BigEndian.Uint32(rest[:4]),
		Instance:    string(rest[5:]),
	}, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Values are: version byte, CRC32C of the JSON (4 bytes BE), JSON.
func encode(b Bound) ([]byte, error) {
	js, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(js))
	out[0] = formatVersion
	binary.BigEndian.PutUint32(out[1:5], crc32.Checksum(js, castagnoli))
	return append(out, js...), nil
}

func decode(k Key, v []byte) (Bound, error) {
	var b Bound
	if len(v) < 5 {
		return b, fmt.Errorf("%w: bound %s: %d bytes, too short", ErrCorrupt, k, len(v))
	}
	if v[0] != formatVersion {
		return b, fmt.Errorf("%w: bound %s: unknown format version %d", ErrCorrupt, k, v[0])
	}
	js := v[5:]
	if got, want := crc32.Checksum(js, castagnoli), binary.BigEndian.Uint32(v[1:5]); got != want {
		return b, fmt.Errorf("%w: bound %s: checksum %08x, stored %08x", ErrCorrupt, k, got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%w: bound %s: %v", ErrCorrupt, k, err)
	}
	return b, nil
}

// ParseKey parses Key.String's form (for operators' tools).
func ParseKey(s string) (Key, error) {
	parts := strings.SplitN(s, "/", 4)
	if len(parts) < 3 {
		return Key{}, fmt.Errorf("bound key %q: want destination/log/shard[/instance]", s)
	}
	n, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return Key{}, fmt.Errorf("bound key %q: shard: %w", s, err)
	}
	k := Key{Destination: parts[0], Log: parts[1], Shard: uint32(n)}
	if len(parts) == 4 {
		k.Instance = parts[3]
	}
	return k, nil
}
