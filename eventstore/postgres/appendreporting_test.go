package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// AppendReporting (eventstore.WriteReporter) tells an append that wrote
// from an idempotent retry, which wrote nothing and got the original
// result, on the common path (a retry expecting NoStream conflicts, then
// finds its ids) and the careful one (Any, its ids already stored), as
// Stats.Events counts them: the server's metrics count written events by
// it.
func TestAppendReportingTellsRetriesFromWrites(t *testing.T) {
	t.Parallel()
	s, _ := newStoreWith(t, 0, postgres.Options{Committers: 1})
	ctx := context.Background()
	a, b := thing(1), thing(2)
	a.ID, b.ID = uuid.New(), uuid.New()
	first, wrote, err := s.AppendReporting(ctx, "reporting", eventstore.NoStream, a, b)
	if err != nil || !wrote {
		t.Fatalf("first append: wrote %v, err %v; want written", wrote, err)
	}
	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any} {
		again, wrote, err := s.AppendReporting(ctx, "reporting", expected, a, b)
		if err != nil || wrote || again.Position() != first.Position() {
			t.Fatalf("retry expecting %v: wrote %v, err %v, at %v; want the original result at %v, not written", expected, wrote, err, again.Position(), first.Position())
		}
	}
	if _, wrote, err := s.AppendReporting(ctx, "reporting", eventstore.NoStream, thing(3)); err == nil || wrote {
		t.Fatalf("a conflicting append: wrote %v, err %v; want a conflict, not written", wrote, err)
	}
}
