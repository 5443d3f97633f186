package wire

import (
	"testing"

	"github.com/stretchr/testify/require"

	v1 "github.com/rgwsync/rgwsync/gen/rgwsync/v1"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Every log crosses the wire and comes back as itself, and every proto log
// type but UNSPECIFIED names a log: a log added on one side only fails here.
func TestLogRoundTrip(t *testing.T) {
	for l := rgwlog.LogMetadata; l <= rgwlog.LogBucketIndex; l++ {
		require.NotEqual(t, v1.LogType_LOG_TYPE_UNSPECIFIED, LogType(l), "%s", l)
		require.Equal(t, l, Log(LogType(l)))
		u := rgwlog.Unit{Log: l, Shard: 7}
		require.Equal(t, u, Unit(Ref(u)))
	}
	for n := range v1.LogType_name {
		if t0 := v1.LogType(n); t0 != v1.LogType_LOG_TYPE_UNSPECIFIED {
			require.NotZero(t, Log(t0), "%s has no rgwlog.Log", t0)
		}
	}
	require.Zero(t, Log(v1.LogType_LOG_TYPE_UNSPECIFIED))
}
