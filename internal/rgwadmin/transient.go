package rgwadmin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"
)

// Transient says whether err may go away on its own and is worth trying
// again at a higher level: a 5xx (after the client's own retries), 408 or
// 429, an answer that does not decode (a proxy's page, a truncated body), a
// connection failure or a per-attempt timeout. Not: wrong keys, another
// 4xx, a certificate that does not verify, a cancelled context.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return true
	}
	var ge *GatewayError
	if errors.As(err, &ge) {
		return ge.Status >= 500 || ge.Status == 408 || ge.Status == 429
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return retryableTransportError(ue.Err)
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// RetryTransient runs fn until it succeeds, fails for good (not
// Transient), or ctx ends; each transient failure is logged with what is
// being done. It is for start-up checks: a gateway answering 503 or garbage
// for a few seconds should delay a service, not stop it.
func RetryTransient(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !Transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		}
		log.Warn("start-up check failed; retrying", "check", what, "attempt", attempt, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 8*time.Second)
	}
}
