package filter

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBuckets(t *testing.T) {
	f, err := New([]string{"prod-*", "acme/*"}, []string{"prod-tmp*"})
	require.NoError(t, err)
	for _, tc := range []struct {
		section, key string
		want         bool
	}{
		{"bucket", "prod-photos", true},
		{"bucket", "prod-tmp1", false},
		{"bucket", "dev-photos", false},
		{"bucket", "acme/logs", true},
		{"bucket.instance", "prod-photos:5a752b8d-3653-495e-a193-937455983cc9.4176.1", true},
		{"bucket.instance", "acme/logs:5a752b8d-3653-495e-a193-937455983cc9.4176.4", true},
		{"bucket.instance", "dev-photos:5a752b8d-3653-495e-a193-937455983cc9.4176.2", false},
		{"user", "anyone", true},
	} {
		require.Equal(t, tc.want, f.Metadata(tc.section, tc.key), "%s %s", tc.section, tc.key)
	}
	var all *Buckets
	require.True(t, all.Bucket("x"))
	none, _ := New(nil, nil)
	require.True(t, none.Bucket("x"))
	_, err = New([]string{"["}, nil)
	require.ErrorContains(t, err, `pattern "["`)
}
