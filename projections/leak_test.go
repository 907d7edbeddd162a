package projections_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine a runtime started
// (runners, lock sessions, subscriptions, rebuilds) is still running after
// they end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
