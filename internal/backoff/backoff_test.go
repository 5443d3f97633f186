package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDelay(t *testing.T) {
	for n := range 70 {
		want := min(time.Second, 100*time.Millisecond<<min(n, 20))
		for range 20 {
			d := Delay(100*time.Millisecond, time.Second, n)
			assert.GreaterOrEqual(t, d, want/2, "retry %d", n)
			assert.LessOrEqual(t, d, want, "retry %d", n)
		}
	}
	assert.Equal(t, time.Duration(1), Jitter(1))
	assert.Zero(t, Jitter(0))
}
