// Package rgwlog holds the vocabulary shared by the exporter and the applier
// about the gateway's logs: which units of work exist (log shards and the
// full-sync pseudo-shard), how they map to bound keys and to the gateway's
// log-lock ids (leases), and the metadata sections and their apply order.
package rgwlog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Lock ids. The gateway's mdlog lock (POST /admin/log?type=metadata&lock)
// accepts any shard id, so every unit of work gets its own id range above
// the 64 real mdlog shards; base shifts all of them (two independent
// deployments writing into one destination cluster use different bases).
const (
	lockMetadataShard = 0     // + shard: 0..63
	lockMetadataFull  = 10000 // the full-sync pseudo shard
	lockData          = 20000 // + data log shard (data sync)
	LockMemberSlot    = 30000 // + slot: applier membership
	LockExclusive     = 40000 // + hash of a name: one applier at a time (lease.Manager.Exclusive)
	LockExclusiveIDs  = 9973  // ids in LockExclusive's range
)

// Log names one of the logs rgwsync follows. The zero value is no log.
type Log uint8

// The logs. Their names (String) are also the bound store's log names
// (checkpoint.LogMetadata, …).
const (
	LogMetadata     Log = iota + 1 // the metadata log, one unit per mdlog shard
	LogMetadataFull                // the metadata full sync (one pseudo shard)
	LogData                        // the data log, one unit per datalog shard
	LogBucketIndex                 // a bucket-index log (bounds only, no unit of work)
)

var logNames = [...]string{LogMetadata: "metadata", LogMetadataFull: "metadata.full", LogData: "data", LogBucketIndex: "bucket-index"}

func (l Log) String() string {
	if l == 0 || int(l) >= len(logNames) {
		return "unknown"
	}
	return logNames[l]
}

// ParseLog is the inverse of Log.String.
func ParseLog(name string) (Log, error) {
	for l := LogMetadata; l <= LogBucketIndex; l++ {
		if l.String() == name {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown log %q (want metadata, metadata.full, data or bucket-index)", name)
}

// Unit is one leasable, boundable unit of work.
type Unit struct {
	Log   Log
	Shard uint32
}

func (u Unit) String() string { return fmt.Sprintf("%s/%d", u.Log, u.Shard) }

// Compare orders units by log, then shard (for slices.SortFunc).
func (u Unit) Compare(v Unit) int {
	if c := cmp.Compare(u.Log, v.Log); c != 0 {
		return c
	}
	return cmp.Compare(u.Shard, v.Shard)
}

// LockID is the gateway lock id of the unit's lease.
func (u Unit) LockID(base int) int {
	switch u.Log {
	case LogMetadataFull:
		return base + lockMetadataFull + int(u.Shard)
	case LogData:
		return base + lockData + int(u.Shard)
	default:
		return base + lockMetadataShard + int(u.Shard)
	}
}

// MetadataUnits lists the metadata units of work: the full-sync pseudo
// shard first, then every mdlog shard.
func MetadataUnits(mdlogShards int) []Unit {
	units := []Unit{{Log: LogMetadataFull}}
	for i := range mdlogShards {
		units = append(units, Unit{Log: LogMetadata, Shard: uint32(i)})
	}
	return units
}

// DataUnits lists the data units of work: one per datalog shard.
func DataUnits(dataShards int) []Unit {
	units := make([]Unit, 0, dataShards)
	for i := range dataShards {
		units = append(units, Unit{Log: LogData, Shard: uint32(i)})
	}
	return units
}

// Metadata sections, in the order a full sync writes them: owners before
// what they own, bucket instances before the bucket entry points that point
// at them.
const (
	SectionUser           = "user"
	SectionBucketInstance = "bucket.instance"
	SectionBucket         = "bucket"
)

// BucketID is the bucket_id a bucket entry point blob (GET
// /admin/metadata/bucket?key=…) names: the bucket's current instance ("" if
// the blob has none).
func BucketID(entryPoint []byte) (string, error) {
	var ep struct {
		Data struct {
			Bucket struct {
				BucketID string `json:"bucket_id"`
			} `json:"bucket"`
		} `json:"data"`
	}
	if err := json.Unmarshal(entryPoint, &ep); err != nil {
		return "", fmt.Errorf("bucket entry point: %w", err)
	}
	return ep.Data.Bucket.BucketID, nil
}

// bucketInfo is what rgwsync reads of a bucket instance blob (GET
// /admin/metadata/bucket.instance?key=…).
type bucketInfo struct {
	NumShards     int    `json:"num_shards"`
	ReshardStatus int    `json:"reshard_status"`
	NewInstance   string `json:"new_bucket_instance_id"`
	Flags         uint32 `json:"flags"`
}

func decodeBucketInfo(instance []byte) (bucketInfo, error) {
	var bi struct {
		Data struct {
			BucketInfo bucketInfo `json:"bucket_info"`
		} `json:"data"`
	}
	if err := json.Unmarshal(instance, &bi); err != nil {
		return bucketInfo{}, fmt.Errorf("bucket instance: %w", err)
	}
	return bi.Data.BucketInfo, nil
}

// NumShards is the number of index shards a bucket instance blob gives its
// bucket: 0 for an unsharded index.
func NumShards(instance []byte) (int, error) {
	bi, err := decodeBucketInfo(instance)
	return bi.NumShards, err
}

// Resharding tells whether a bucket instance blob is one the source is
// resharding away: reshard_status 1 (in progress) or 2 (done), with the
// instance that replaces it in new_bucket_instance_id. Pacific removes such
// an instance moments after its last logged write, and logs no entry for
// the removal (FACTS.md section 17): whoever copied the blob must look
// again to learn that it is gone.
func Resharding(instance []byte) (bool, error) {
	bi, err := decodeBucketInfo(instance)
	return err == nil && (bi.ReshardStatus != 0 || bi.NewInstance != ""), err
}

// bucketDeletedFlag is RGWBucketInfo's BUCKET_DELETED flag.
const bucketDeletedFlag = 0x40

// BucketDeleted tells whether a bucket instance blob is that of a removed
// bucket: Tentacle keeps a removed bucket's instance, rewritten with flags
// 64 (BUCKET_DELETED), where Pacific removes it (FACTS.md section 19).
func BucketDeleted(instance []byte) (bool, error) {
	bi, err := decodeBucketInfo(instance)
	return err == nil && bi.Flags&bucketDeletedFlag != 0, err
}

// RGWBucketInfo's versioning flags: BUCKET_VERSIONED, and with it
// BUCKET_VERSIONS_SUSPENDED for a suspended bucket (flags 2: Enabled, 6:
// Suspended; FACTS.md section 9).
const (
	bucketVersionedFlag  = 0x2
	bucketSuspendedFlag  = 0x4
	bucketVersioningMask = bucketVersionedFlag | bucketSuspendedFlag
)

// Versioning is the S3 versioning status a bucket instance blob gives its
// bucket: "Enabled", "Suspended", or "" (never versioned).
func Versioning(instance []byte) (string, error) {
	bi, err := decodeBucketInfo(instance)
	if err != nil {
		return "", err
	}
	switch bi.Flags & bucketVersioningMask {
	case bucketVersionedFlag:
		return "Enabled", nil
	case bucketVersioningMask:
		return "Suspended", nil
	}
	return "", nil
}

// SuspensionTag prefixes the version tag (ver.tag) of a bucket instance
// blob that rgwsync's applier put on zone-b to write one null version in a
// suspension (applier/suspension.go): the gateway stores the tag a put
// gives (FACTS.md section 24), so a blob left so by a process killed
// before it put the instance back is recognised (WithoutSuspension).
const SuspensionTag = "rgwsync-suspension:"

// WithVersioningSuspended is the bucket instance blob with its versioning
// flags saying Suspended and its version tag marked with SuspensionTag,
// every other field as it was (numbers kept literally). Refused for a blob
// that is not a versioned bucket's instance.
func WithVersioningSuspended(instance []byte) ([]byte, error) {
	return editInstance(instance, func(flags uint64, tag string) (uint64, string, error) {
		if flags&bucketVersionedFlag == 0 {
			return 0, "", fmt.Errorf("bucket instance: flags %d: the bucket was never versioned", flags)
		}
		return flags | bucketSuspendedFlag, SuspensionTag + tag, nil
	})
}

// WithoutSuspension undoes WithVersioningSuspended: for a blob whose version
// tag carries SuspensionTag, the blob as it was (ok true); else ok false.
func WithoutSuspension(instance []byte) (orig []byte, ok bool, err error) {
	orig, err = editInstance(instance, func(flags uint64, tag string) (uint64, string, error) {
		t, found := strings.CutPrefix(tag, SuspensionTag)
		ok = found
		return flags &^ bucketSuspendedFlag, t, nil
	})
	if err != nil || !ok {
		return nil, false, err
	}
	return orig, true, nil
}

// WithNumShards is a bucket instance blob with data.bucket_info.num_shards
// n, every other field as it was. A put of an instance zone-b has, with
// another number of shards, lays zone-b's index anew over the shard objects
// it has: entries written before stay where no request looks for them
// (FACTS.md section 32), so the applier keeps zone-b's number.
func WithNumShards(instance []byte, n int) ([]byte, error) {
	blob, err := decodeBlob(instance)
	if err != nil {
		return nil, err
	}
	data, _ := blob["data"].(map[string]any)
	info, _ := data["bucket_info"].(map[string]any)
	if _, ok := info["num_shards"].(json.Number); !ok {
		return nil, errors.New("bucket instance: no data.bucket_info.num_shards")
	}
	info["num_shards"] = json.Number(strconv.Itoa(n))
	return encodeBlob(blob)
}

func decodeBlob(instance []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(instance))
	dec.UseNumber()
	var blob map[string]any
	if err := dec.Decode(&blob); err != nil {
		return nil, fmt.Errorf("bucket instance: %w", err)
	}
	return blob, nil
}

func encodeBlob(blob map[string]any) ([]byte, error) {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // the gateway's names and attrs as they were
	if err := enc.Encode(blob); err != nil {
		return nil, fmt.Errorf("bucket instance: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// editInstance rewrites a bucket instance blob's data.bucket_info.flags
// and ver.tag with edit, every other field as it was.
func editInstance(instance []byte, edit func(flags uint64, tag string) (uint64, string, error)) ([]byte, error) {
	blob, err := decodeBlob(instance)
	if err != nil {
		return nil, err
	}
	data, _ := blob["data"].(map[string]any)
	info, _ := data["bucket_info"].(map[string]any)
	n, ok := info["flags"].(json.Number)
	if !ok {
		return nil, errors.New("bucket instance: no data.bucket_info.flags")
	}
	ver, _ := blob["ver"].(map[string]any)
	tag, ok := ver["tag"].(string)
	if !ok {
		return nil, errors.New("bucket instance: no ver.tag")
	}
	flags, err := strconv.ParseUint(n.String(), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bucket instance: flags %q: %w", n, err)
	}
	flags, tag, err = edit(flags, tag)
	if err != nil {
		return nil, err
	}
	info["flags"] = json.Number(strconv.FormatUint(flags, 10))
	ver["tag"] = tag
	return encodeBlob(blob)
}

// DefaultSections are the metadata sections replicated by default.
var DefaultSections = []string{SectionUser, SectionBucketInstance, SectionBucket}

// ApplyRank orders the writes of one batch: puts of users, then bucket
// instances, then buckets; then deletes in the reverse order (a bucket entry
// point goes before its instance, buckets before their owner).
func ApplyRank(section string, del bool) int {
	r := 3
	switch section {
	case SectionUser:
		r = 0
	case SectionBucketInstance:
		r = 1
	case SectionBucket:
		r = 2
	}
	if del {
		return 10 + (3 - r)
	}
	return r
}

// HeldPrefix starts the error of an object op's retry item that was not
// sent (exporter) or not tried (applier) because an earlier op of its key
// has not gone through: the versions of a key must reach the destination
// in the source's order. Both sides read it (Held); it is not a failure
// of its own.
const HeldPrefix = "held: "

// Held says whether a retry item's error is a hold (HeldPrefix).
func Held(errText string) bool { return strings.HasPrefix(errText, HeldPrefix) }

// ParkedPrefix starts the error of an object op the destination cannot
// store in its present state, for good as far as is known: the null
// version of a key written while the source's bucket was suspended, when
// zone-b's bucket never showed suspended (the source enabled versioning
// again before the bucket's metadata was synced) and the key has versions
// there (FACTS.md section 9). It is retried and shown like any failure,
// but it does not hold the later ops of its key: they carry higher epochs,
// so whenever it is written it lands below them, as on the source.
const ParkedPrefix = "parked: "

// Parked says whether a retry item's error is parked (ParkedPrefix).
func Parked(errText string) bool { return strings.HasPrefix(errText, ParkedPrefix) }
