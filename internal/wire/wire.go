// Package wire is what both services share of the gRPC link: the
// conversions between rgwsync's own values (rgwlog's units and logs) and
// their protobuf forms, so that the log model does not depend on the wire
// format, and the two pumps of a bidirectional stream (Receive, Send).
package wire

import (
	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
	"github.com/rgwsync/rgwsync/internal/rgwobj"
	"google.golang.org/protobuf/types/known/timestamppb"
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

// Attrs is the wire form of an object's attributes.
func Attrs(info rgwobj.ObjectInfo) *v1.ObjectAttrs {
	return &v1.ObjectAttrs{
		Size: info.Size, Etag: info.ETag, ContentType: info.ContentType, CacheControl: info.CacheControl,
		ContentDisposition: info.ContentDisposition, ContentEncoding: info.ContentEncoding,
		ContentLanguage: info.ContentLanguage, Expires: info.Expires, UserMeta: info.UserMeta, Tags: info.Tags,
		Acl: info.ACL, PartSizes: info.PartSizes, SourceMtime: timestamppb.New(info.Mtime),
	}
}

// Info is an object's attributes as rgwobj writes and compares them (the
// source's mtime is not kept: the destination has its own).
func Info(bucket, key, versionID, owner string, a *v1.ObjectAttrs) rgwobj.ObjectInfo {
	return rgwobj.ObjectInfo{
		Bucket: bucket, Key: key, VersionID: versionID, Owner: owner,
		Size: a.GetSize(), ETag: a.GetEtag(), ContentType: a.GetContentType(), CacheControl: a.GetCacheControl(),
		ContentDisposition: a.GetContentDisposition(), ContentEncoding: a.GetContentEncoding(),
		ContentLanguage: a.GetContentLanguage(), Expires: a.GetExpires(), UserMeta: a.GetUserMeta(), Tags: a.GetTags(),
		ACL: a.GetAcl(), PartSizes: a.GetPartSizes(),
	}
}
