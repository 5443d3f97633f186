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

// DependsOnVersioning: an object op whose write on zone-b lands according
// to its bucket's versioning state there (FACTS.md section 9): a write
// without a version id, or of the null version. The exporter says whether
// the metadata it waits for is applied (metadata_settled); the applier
// checks zone-b's state before writing it.
func DependsOnVersioning(op *v1.ObjectOp) bool {
	v := op.GetVersionId()
	return op.GetKind() == v1.ObjectOpKind_OBJECT_OP_KIND_PUT && (v == "" || v == "null")
}
