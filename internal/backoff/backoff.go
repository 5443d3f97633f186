// Package backoff is the one rule for the wait between attempts in
// rgwsync: exponential from a base to a cap, spread over its upper half so
// that shards and clients failing together do not retry together.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter spreads d over [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Delay is the wait before retry n (0-based): Jitter(min(max, base<<n)).
func Delay(base, max time.Duration, n int) time.Duration {
	d := max
	if n >= 0 && n < 32 {
		if b := base << n; b > 0 && b < d {
			d = b
		}
	}
	return Jitter(d)
}
