// Package rgwlog holds the vocabulary shared by the exporter and the applier
// about the gateway's logs: which units of work exist (log shards and the
// full-sync pseudo-shard), how they map to bound keys and to the gateway's
// log-lock ids (leases), and the metadata sections and their apply order.
package rgwlog

import (
	"fmt"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/checkpoint"
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
)

// Unit is one leasable, boundable unit of work.
type Unit struct {
	Log   v1.LogType
	Shard uint32
}

func (u Unit) String() string { return fmt.Sprintf("%s/%d", LogName(u.Log), u.Shard) }

// Ref is the proto form.
func (u Unit) Ref() *v1.ShardRef { return &v1.ShardRef{LogType: u.Log, Shard: u.Shard} }

// UnitOf converts a proto ref.
func UnitOf(r *v1.ShardRef) Unit { return Unit{Log: r.GetLogType(), Shard: r.GetShard()} }

// LockID is the gateway lock id of the unit's lease.
func (u Unit) LockID(base int) int {
	switch u.Log {
	case v1.LogType_LOG_TYPE_METADATA_FULL:
		return base + lockMetadataFull + int(u.Shard)
	case v1.LogType_LOG_TYPE_DATA:
		return base + lockData + int(u.Shard)
	default:
		return base + lockMetadataShard + int(u.Shard)
	}
}

// Key is the unit's bound key for a destination.
func (u Unit) Key(destination string) checkpoint.Key {
	return checkpoint.Key{Destination: destination, Log: LogName(u.Log), Shard: u.Shard}
}

// LogName is the bound-store name of a log type.
func LogName(t v1.LogType) string {
	switch t {
	case v1.LogType_LOG_TYPE_METADATA:
		return checkpoint.LogMetadata
	case v1.LogType_LOG_TYPE_METADATA_FULL:
		return checkpoint.LogMetadataFull
	case v1.LogType_LOG_TYPE_DATA:
		return checkpoint.LogData
	case v1.LogType_LOG_TYPE_BUCKET_INDEX:
		return checkpoint.LogBucketIndex
	}
	return "unknown"
}

// LogTypeOf is the inverse of LogName.
func LogTypeOf(name string) (v1.LogType, error) {
	for _, t := range []v1.LogType{v1.LogType_LOG_TYPE_METADATA, v1.LogType_LOG_TYPE_METADATA_FULL, v1.LogType_LOG_TYPE_DATA, v1.LogType_LOG_TYPE_BUCKET_INDEX} {
		if LogName(t) == name {
			return t, nil
		}
	}
	return v1.LogType_LOG_TYPE_UNSPECIFIED, fmt.Errorf("unknown log %q (want metadata, metadata.full, data or bucket-index)", name)
}

// MetadataUnits lists the metadata units of work: the full-sync pseudo
// shard first, then every mdlog shard.
func MetadataUnits(mdlogShards int) []Unit {
	units := []Unit{{Log: v1.LogType_LOG_TYPE_METADATA_FULL}}
	for i := range mdlogShards {
		units = append(units, Unit{Log: v1.LogType_LOG_TYPE_METADATA, Shard: uint32(i)})
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
