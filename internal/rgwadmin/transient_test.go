package rgwadmin

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A start-up check against a gateway that answers garbage, then 503, then
// the recorded period: it waits the faults out. Wrong keys stop it at once.
func TestRetryTransient(t *testing.T) {
	r := newReplay(t, false, "realm-period")
	period := loadExchange(t, "realm-period")
	var calls atomic.Int32
	r.setHook(func(w http.ResponseWriter, req *http.Request) bool {
		switch calls.Add(1) {
		case 1: // a proxy's page with a 200: does not decode
			_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
			return true
		case 2: // truncated JSON
			_, _ = w.Write([]byte(period.Body[:len(period.Body)/2]))
			return true
		}
		return false
	})
	c := r.client(t, func(cfg *Config) { cfg.MaxRetries = -1 })
	endpoint := recordedZoneEndpoint(t)
	var id string
	err := RetryTransient(context.Background(), discard(), "read the destination", func(ctx context.Context) (err error) {
		id, _, err = c.ZoneID(ctx, endpoint)
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, id)
	require.EqualValues(t, 3, calls.Load())

	// An endpoint that is no zone's: permanent, one call.
	calls.Store(10)
	n := 0
	err = RetryTransient(context.Background(), discard(), "read the destination", func(ctx context.Context) (err error) {
		n++
		_, _, err = c.ZoneID(ctx, "http://10.9.9.9:1")
		return err
	})
	require.ErrorIs(t, err, ErrUnknownEndpoint)
	require.Equal(t, 1, n)

	// Wrong keys: permanent.
	auth := newReplay(t, false, "auth-bad-secret")
	ca := auth.client(t)
	n = 0
	err = RetryTransient(context.Background(), discard(), "read the source", func(ctx context.Context) error {
		n++
		_, err := ca.MDLogInfo(ctx)
		return err
	})
	require.ErrorIs(t, err, ErrAuth)
	require.Equal(t, 1, n)

	// Still failing when the time is up: the last error, named.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	r.setHook(func(w http.ResponseWriter, req *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	err = RetryTransient(ctx, discard(), "read the destination", func(ctx context.Context) (err error) {
		_, _, err = c.ZoneID(ctx, endpoint)
		return err
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "read the destination: gave up after")
	var ge *GatewayError
	require.True(t, errors.As(err, &ge))
	require.Equal(t, 503, ge.Status)
}

func TestTransient(t *testing.T) {
	require.False(t, Transient(nil))
	require.False(t, Transient(context.Canceled))
	require.False(t, Transient(ErrAuth))
	require.False(t, Transient(&GatewayError{Status: 404}))
	require.True(t, Transient(&GatewayError{Status: 500}))
	require.True(t, Transient(&GatewayError{Status: 429}))
	require.True(t, Transient(&DecodeError{Op: "x", Err: errors.New("eof")}))
	require.False(t, Transient(errors.New("source metadata log has 0 shards")))
}

// recordedZoneEndpoint is the first endpoint of the first zone of the
// recorded period.
func recordedZoneEndpoint(t *testing.T) string {
	zg := obj(obj(recordedJSON(t, "realm-period"))["period_map"])["zonegroups"].([]any)[0]
	z := obj(obj(zg)["zones"].([]any)[0])
	return z["endpoints"].([]any)[0].(string)
}
