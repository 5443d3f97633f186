package rgwlog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBucketShard(t *testing.T) {
	for _, tc := range []struct {
		key, bucket, instance string
		shard                 int
		s3Bucket, param       string
		gen                   uint64
	}{
		{"photos:5a752b8d-3653-495e-a193-937455983cc9.4176.1:8", "photos", "5a752b8d-3653-495e-a193-937455983cc9.4176.1", 8,
			"photos", "photos:5a752b8d-3653-495e-a193-937455983cc9.4176.1:8", 0},
		{"acme/logs:5a75.4176.4:0", "acme/logs", "5a75.4176.4", 0, "acme:logs", "logs:5a75.4176.4:0", 0},
		{"single:5a75.4176.9", "single", "5a75.4176.9", -1, "single", "single:5a75.4176.9", 0},
		// Generations (Reef and later reshard in place: FACTS.md section 32).
		{"rs1:eaaf.4186.1:2@1", "rs1", "eaaf.4186.1", 2, "rs1", "rs1:eaaf.4186.1:2", 1},
		{"acme/logs:5a75.4176.4:0@12", "acme/logs", "5a75.4176.4", 0, "acme:logs", "logs:5a75.4176.4:0", 12},
		{"single:5a75.4176.9@3", "single", "5a75.4176.9", -1, "single", "single:5a75.4176.9", 3},
	} {
		bs, err := ParseBucketShard(tc.key)
		require.NoError(t, err)
		require.Equal(t, BucketShard{Key: tc.key, Bucket: tc.bucket, Instance: tc.instance, Shard: tc.shard, Gen: tc.gen}, bs)
		require.Equal(t, tc.key, BucketShardKey(bs.LogKey(), bs.Gen))
		require.Equal(t, bs, bs.InGen(tc.shard, tc.gen))
		require.Equal(t, tc.s3Bucket, bs.S3Bucket())
		require.Equal(t, tc.param, bs.InstanceParam(), "the gateway answers 404 to a tenant in rgwx-bucket-instance")
		require.Equal(t, tc.bucket+":"+tc.instance, bs.InstanceKey())
	}
	for _, bad := range []string{"", "nocolon", ":inst", "b:", "acme/:inst", "/b:inst", "b:i:1@0", "b:i:1@x", "b:i:1@"} {
		_, err := ParseBucketShard(bad)
		require.Error(t, err, bad)
	}
}

// The shards the lab's zone-a logged these keys in (FACTS.md section 28).
func TestMDLogShard(t *testing.T) {
	for _, c := range []struct {
		section, key string
		shard        int
	}{
		{"user", "mdu1", 62}, {"user", "mdu2", 46}, {"user", "mdu3", 30}, {"user", "tx$mdu4", 36},
		{"bucket", "mdb1", 26}, {"bucket", "mdb2", 10}, {"bucket", "mdb3", 58}, {"bucket", "tx/mdtb", 36},
		{"bucket.instance", "mdb1:0e6bc6b6-1978-42c5-a1cd-2aae12412df5.4172.6", 26},
		{"bucket.instance", "mdb2:0e6bc6b6-1978-42c5-a1cd-2aae12412df5.4172.7", 10},
		{"bucket.instance", "tx/mdtb:0e6bc6b6-1978-42c5-a1cd-2aae12412df5.4172.9", 36},
	} {
		if got := MDLogShard(c.section, c.key, 64); got != c.shard {
			t.Errorf("%s:%s: shard %d, the gateway logged it in %d", c.section, c.key, got, c.shard)
		}
	}
}
