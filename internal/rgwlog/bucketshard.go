package rgwlog

import (
	"fmt"
	"strconv"
	"strings"
)

// BucketShard names a bucket index shard as the logs do (datalog entries,
// bounds, full-sync work): "[tenant/]name:instance[:shard]", and
// "…@<gen>" for the index log generation <gen> > 0 (a reshard on Reef and
// later keeps the instance and starts a new generation of index shards and
// logs: FACTS.md section 32). It is parsed here and nowhere else.
type BucketShard struct {
	Key      string // the log's key, with "@<gen>" when Gen > 0
	Bucket   string // "[tenant/]name"
	Instance string // the bucket instance id
	Shard    int    // -1: an unsharded index
	Gen      uint64 // the index log generation: 0 before a reshard, always on Pacific
}

// BucketShardKey is the key of the bucket shard a datalog entry names: its
// key ("[tenant/]name:instance[:shard]") in generation gen.
func BucketShardKey(logKey string, gen uint64) string {
	if gen == 0 {
		return logKey
	}
	return logKey + "@" + strconv.FormatUint(gen, 10)
}

// LogKey is the key without its generation, as the gateway's logs and
// admin API name the shard ("[tenant/]name:instance[:shard]").
func (b BucketShard) LogKey() string {
	if i := strings.LastIndexByte(b.Key, '@'); i > 0 && b.Gen > 0 {
		return b.Key[:i]
	}
	return b.Key
}

// ParseBucketShard reads a bucket shard key.
func ParseBucketShard(key string) (BucketShard, error) {
	bs := BucketShard{Key: key, Shard: -1}
	rest := key
	if i := strings.LastIndexByte(rest, '@'); i > 0 {
		g, err := strconv.ParseUint(rest[i+1:], 10, 64)
		if err != nil || g == 0 {
			return bs, fmt.Errorf("bucket shard %q: want [tenant/]bucket:instance[:shard][@generation>0]", key)
		}
		bs.Gen, rest = g, rest[:i]
	}
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
	k := b.LogKey()
	if tenant, _, ok := strings.Cut(b.Bucket, "/"); ok {
		return k[len(tenant)+1:]
	}
	return k
}

// InGen is the shard numbered shard (-1: unsharded) of the same bucket
// instance in generation gen.
func (b BucketShard) InGen(shard int, gen uint64) BucketShard {
	k := b.InstanceKey()
	if shard >= 0 {
		k += ":" + strconv.Itoa(shard)
	}
	return BucketShard{Key: BucketShardKey(k, gen), Bucket: b.Bucket, Instance: b.Instance, Shard: shard, Gen: gen}
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

// LaterGen says whether the bucket shard key (a valid one) names an index
// log generation after the first, without parsing it all.
func LaterGen(key string) bool { return strings.LastIndexByte(key, '@') > 0 }
