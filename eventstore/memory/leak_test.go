package memory_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine the store started
// (committers, LISTEN connections, subscriptions, pool workers) is still
// running after they end: Close must release everything.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
