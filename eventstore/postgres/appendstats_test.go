package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// Stats.Events counts the events the groups wrote, not those a retry got
// back as its original result: a retried append writes nothing, by the
// common path's lookup after a conflict (NoStream) or by the careful path
// (Any, its ids already stored). Before, each retry added its events
// again, so retries after timeouts inflated Events (and the bench's events
// per group) past what the log holds. AppendReporting
// (eventstore.WriteReporter) tells the same apart for each append: the
// server's metrics count written events by it.
func TestStatsCountRetriesAsNothingWritten(t *testing.T) {
	t.Parallel()
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1})
	ctx := context.Background()
	a, b := thing(1), thing(2)
	a.ID, b.ID = uuid.New(), uuid.New()
	first, wrote, err := s.AppendReporting(ctx, "stats", eventstore.NoStream, a, b)
	if err != nil || !wrote {
		t.Fatalf("first append: wrote %v, err %v; want written", wrote, err)
	}
	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any} {
		again, wrote, err := s.AppendReporting(ctx, "stats", expected, a, b)
		if err != nil || wrote || again.Position() != first.Position() {
			t.Fatalf("retry expecting %v: wrote %v, err %v, at %v; want the original result at %v, not written", expected, wrote, err, again.Position(), first.Position())
		}
	}
	var stored uint64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Events != stored || st.Appends != 3 {
		t.Fatalf("stats %+v after 3 appends that stored %d events: want Events %d", st, stored, stored)
	}
	if _, wrote, err := s.AppendReporting(ctx, "stats", eventstore.NoStream, thing(3)); err == nil || wrote {
		t.Fatalf("a conflicting append: wrote %v, err %v; want a conflict, not written", wrote, err)
	}
}
