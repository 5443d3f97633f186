package rgwlog

import (
	"fmt"
	"strconv"
	"strings"
)

// BucketShard names a bucket index shard as the logs do (datalog entries,
// bounds, full-sync work): "[tenant/]name:instance[:shard]". It is parsed
// here and nowhere else.
type BucketShard struct {
	Key      string // as the log wrote it
	Bucket   string // "[tenant/]name"
	Instance string // the bucket instance id
	Shard    int    // -1: an unsharded index
}

// ParseBucketShard reads a bucket shard key.
func ParseBucketShard(key string) (BucketShard, error) {
	bs := BucketShard{Key: key, Shard: -1}
	rest := key
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		if n, err := strconv.Atoi(rest[i+1:]); err == nil && strings.Count(rest, ":") >= 2 {
			bs.Shard = n
			rest = rest[:i]
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 || strings.HasPrefix(rest, "/") || strings.HasSuffix(rest[:i], "/") {
		return bs, fmt.Errorf("bucket shard %q: want [tenant/]bucket:instance[:shard]", key)
	}
	bs.Bucket, bs.Instance = rest[:i], rest[i+1:]
	return bs, nil
}

// S3Bucket is the bucket as an S3 request's path names it (a tenant's
// bucket is "tenant:name").
func (b BucketShard) S3Bucket() string { return strings.Replace(b.Bucket, "/", ":", 1) }

// InstanceKey is the bucket instance's metadata key, "[tenant/]name:instance".
func (b BucketShard) InstanceKey() string { return b.Bucket + ":" + b.Instance }

// InstanceParam is the value of the rgwx-bucket-instance parameter that
// names this shard in a listing: the key without the tenant. The gateway
// answers 404 NoSuchBucket to "tenant/name:instance:shard"; the tenant
// comes from the path (/tenant:name). FACTS.md.
func (b BucketShard) InstanceParam() string {
	if tenant, _, ok := strings.Cut(b.Bucket, "/"); ok {
		return b.Key[len(tenant)+1:]
	}
	return b.Key
}

// InstanceS3Bucket is the bucket of a bucket instance's metadata key
// ("[tenant/]name:instance") as S3 requests and object ops name it:
// "name", or "tenant:name".
func InstanceS3Bucket(key string) string {
	name, _, _ := strings.Cut(key, ":")
	return strings.Replace(name, "/", ":", 1)
}

// MDLogShard is the mdlog shard that logs a change of the metadata key
// section:key, of numShards: ceph_str_hash_linux("section:key") %
// numShards, where a bucket instance hashes as its bucket entry point
// ("bucket:[tenant/]name", so both land in one shard). Measured on 16.2.15
// (FACTS.md section 28).
func MDLogShard(section, key string, numShards int) int {
	if section == SectionBucketInstance {
		name, _, _ := strings.Cut(key, ":")
		section, key = SectionBucket, name
	}
	var h uint32
	s := section + ":" + key
	for i := 0; i < len(s); i++ {
		c := uint32(s[i])
		h = (h + (c << 4) + (c >> 4)) * 11
	}
	return int(h % uint32(numShards))
}
