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
	}{
		{"photos:5a752b8d-3653-495e-a193-937455983cc9.4176.1:8", "photos", "5a752b8d-3653-495e-a193-937455983cc9.4176.1", 8,
			"photos", "photos:5a752b8d-3653-495e-a193-937455983cc9.4176.1:8"},
		{"acme/logs:5a75.4176.4:0", "acme/logs", "5a75.4176.4", 0, "acme:logs", "logs:5a75.4176.4:0"},
		{"single:5a75.4176.9", "single", "5a75.4176.9", -1, "single", "single:5a75.4176.9"},
	} {
		bs, err := ParseBucketShard(tc.key)
		require.NoError(t, err)
		require.Equal(t, BucketShard{Key: tc.key, Bucket: tc.bucket, Instance: tc.instance, Shard: tc.shard}, bs)
		require.Equal(t, tc.s3Bucket, bs.S3Bucket())
		require.Equal(t, tc.param, bs.InstanceParam(), "the gateway answers 404 to a tenant in rgwx-bucket-instance")
		require.Equal(t, tc.bucket+":"+tc.instance, bs.InstanceKey())
	}
	for _, bad := range []string{"", "nocolon", ":inst", "b:", "acme/:inst", "/b:inst"} {
		_, err := ParseBucketShard(bad)
		require.Error(t, err, bad)
	}
}
