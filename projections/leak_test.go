package projections_test

import (
	"io"
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine a runtime started
// (runners, lock sessions, subscriptions, rebuilds) is still running after
// they end. The read models that log through slog's default logger (the
// catalog, on an event appended raw into another stream) are quietened:
// the read-model tests append such events by the hundred on purpose, and
// every runtime here logs to a discarded logger already.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	goleak.VerifyTestMain(m)
}
