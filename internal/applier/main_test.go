package applier

import (
	"testing"

	"go.uber.org/goleak"
)

// No test leaves a goroutine behind (a worker, a pump, a renewal).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
