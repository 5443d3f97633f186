// Package wire is what both services share of the gRPC link: the
// conversions between rgwsync's own values (rgwlog's units and logs) and
// their protobuf forms, so that the log model does not depend on the wire
// format, and the two pumps of a bidirectional stream (Receive, Send).
package wire

import (
	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// LogType is the proto form of a log.
func LogType(l rgwlog.Log) v1.LogType {
	switch l {
	case rgwlog.LogMetadata:
		return v1.LogType_LOG_TYPE_METADATA
	case rgwlog.LogMetadataFull:
		return v1.LogType_LOG_TYPE_METADATA_FULL
	case rgwlog.LogData:
		return v1.LogType_LOG_TYPE_DATA
	case rgwlog.LogBucketIndex:
		return v1.LogType_LOG_TYPE_BUCKET_INDEX
	}
	return v1.LogType_LOG_TYPE_UNSPECIFIED
}

// Log is the inverse of LogType (0 for LOG_TYPE_UNSPECIFIED and unknown values).
func Log(t v1.LogType) rgwlog.Log {
	switch t {
	case v1.LogType_LOG_TYPE_METADATA:
		return rgwlog.LogMetadata
	case v1.LogType_LOG_TYPE_METADATA_FULL:
		return rgwlog.LogMetadataFull
	case v1.LogType_LOG_TYPE_DATA:
		return rgwlog.LogData
	case v1.LogType_LOG_TYPE_BUCKET_INDEX:
		return rgwlog.LogBucketIndex
	}
	return 0
}

// Ref is the proto form of a unit.
func Ref(u rgwlog.Unit) *v1.ShardRef { return &v1.ShardRef{LogType: LogType(u.Log), Shard: u.Shard} }

// Unit is the unit a proto ref names.
func Unit(r *v1.ShardRef) rgwlog.Unit {
	return rgwlog.Unit{Log: Log(r.GetLogType()), Shard: r.GetShard()}
}
