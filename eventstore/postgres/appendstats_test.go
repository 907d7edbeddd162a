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
// per group) past what the log holds.
func TestStatsCountRetriesAsNothingWritten(t *testing.T) {
	t.Parallel()
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1})
	ctx := context.Background()
	a, b := thing(1), thing(2)
	a.ID, b.ID = uuid.New(), uuid.New()
	first, err := s.Append(ctx, "stats", eventstore.NoStream, a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any} {
		again, err := s.Append(ctx, "stats", expected, a, b)
		if err != nil || again.Position() != first.Position() {
			t.Fatalf("retry expecting %v: %v at %v, want the original result at %v", expected, err, again.Position(), first.Position())
		}
	}
	var stored uint64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Events != stored || st.Appends != 3 {
		t.Fatalf("stats %+v after 3 appends that stored %d events: want Events %d", st, stored, stored)
	}
}
