//go:build !integration

package rgwobj

import (
	"testing"

	"go.uber.org/goleak"
)

// The integration build has its own TestMain (it stops the lab).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
