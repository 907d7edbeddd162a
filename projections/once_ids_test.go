package projections_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/projections"
)

// Two events with one id in two streams (EventStoreDB's per-stream ids)
// are two events to a reaction: it acts on each, once, also across a
// rebuild. Keyed by id alone, processed_events took the second for the
// first and the reaction silently skipped it.
func TestReactionActsOnEventsWithOneIdInTwoStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memoryStore(t)
	viewed := func() eventstore.Event {
		return ev("distribution.viewed", 1, "acme", map[string]any{"distribution_id": uuid.New(), "course_id": uuid.New(), "visitor_id": "v"})
	}
	a := appendTo(t, mem, "distribution-a", viewed())[0]
	fill(t, mem, 20, 5)
	b := appendTo(t, mem, "distribution-b", viewed())[0]
	store := sharedIDStore{Store: mem, from: b.ID, to: a.ID}

	var mu sync.Mutex
	acted := map[string]int{}
	p := projections.Reaction("shared", "react-on-view", projections.Types(1, "distribution.viewed"),
		func(ctx context.Context, e eventstore.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if e.ID == a.ID {
				acted[e.Stream]++
			}
			return nil
		})
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	if _, err := rt.CatchUp(ctx, "shared", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Rebuild(ctx, "shared", projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(acted) != 2 || acted["distribution-a"] != 1 || acted["distribution-b"] != 1 {
		t.Fatalf("acted on the shared id %v, want once in each of distribution-a and distribution-b", acted)
	}
}

// OnceEvent tells apart events with one id in two streams, and two
// versions of one stream (EventStoreDB may store an id twice in a stream);
// a record of the id alone (Once) counts for all of them.
func TestOnceEventKeysByStreamAndVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := database(t)
	newRuntime(t, pool, logStore(t), fastConfig())
	id := uuid.New()
	a := eventstore.Event{ID: id, Stream: "distribution-a", Version: 1}
	b := eventstore.Event{ID: id, Stream: "distribution-b", Version: 1}
	a2 := eventstore.Event{ID: id, Stream: "distribution-a", Version: 2}
	for i, c := range []struct {
		e    eventstore.Event
		want bool
	}{{a, true}, {b, true}, {a, false}, {a2, true}, {b, false}} {
		first, err := projections.OnceEvent(ctx, pool, "mailer", c.e)
		if err != nil || first != c.want {
			t.Fatalf("OnceEvent call %d (%s@%d): %v %v, want %v", i, c.e.Stream, c.e.Version, first, err, c.want)
		}
	}
	if seen, err := projections.ProcessedEvent(ctx, pool, "mailer", eventstore.Event{ID: id, Stream: "distribution-c", Version: 1}); err != nil || seen {
		t.Fatalf("an event of the id in a third stream: processed %v %v, want false", seen, err)
	}
	if first, err := projections.Once(ctx, pool, "mailer", id); err != nil || first {
		t.Fatalf("Once on an id OnceEvent recorded: %v %v, want not first", first, err)
	}

	other := uuid.New()
	if first, err := projections.Once(ctx, pool, "indexer", other); err != nil || !first {
		t.Fatalf("Once: %v %v, want first", first, err)
	}
	c := eventstore.Event{ID: other, Stream: "distribution-c", Version: 3}
	if first, err := projections.OnceEvent(ctx, pool, "indexer", c); err != nil || first {
		t.Fatalf("OnceEvent on an id Once recorded: %v %v, want not first", first, err)
	}
	if seen, err := projections.ProcessedEvent(ctx, pool, "indexer", c); err != nil || !seen {
		t.Fatalf("ProcessedEvent on an id Once recorded: %v %v, want true", seen, err)
	}
	if _, err := projections.OnceEvent(ctx, pool, "", c); err == nil {
		t.Fatal("OnceEvent accepted an empty consumer name")
	}
}

// The migration that keys processed_events by stream and version keeps
// the rows recorded before it: a reaction does not act again on an event
// it acted on under the old key, whatever stream the event is in. Run a
// second time, it changes nothing.
func TestProcessedEventsKeyMigrationKeepsOldRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := database(t)
	ms, sql := runtimeMigration(t, "processed_events_keyed_by_stream")
	// The runtime as it was before: migrations 1 and 2, and a record.
	if _, err := migrate.Apply(ctx, pool, projections.Component, ms[:2]); err != nil {
		t.Fatal(err)
	}
	old := uuid.New()
	if _, err := pool.Exec(ctx, `INSERT INTO processed_events (consumer, event_id) VALUES ('mailer', $1)`, old); err != nil {
		t.Fatal(err)
	}

	newRuntime(t, pool, logStore(t), fastConfig()) // migrates to the binary's version
	if _, err := pool.Exec(ctx, sql); err != nil {
		t.Fatalf("the migration run a second time: %v", err)
	}
	e := eventstore.Event{ID: old, Stream: "course-1", Version: 4}
	if first, err := projections.OnceEvent(ctx, pool, "mailer", e); err != nil || first {
		t.Fatalf("OnceEvent on an event recorded before the migration: %v %v, want not first", first, err)
	}
	if first, err := projections.OnceEvent(ctx, pool, "mailer", eventstore.Event{ID: uuid.New(), Stream: "course-1", Version: 5}); err != nil || !first {
		t.Fatalf("OnceEvent on a new event: %v %v, want first", first, err)
	}
	rows, err := pool.Query(ctx, `SELECT pg_get_indexdef(indexrelid) FROM pg_index
		WHERE indrelid = 'processed_events'::regclass AND indisunique`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 1 || !strings.Contains(defs[0], "(consumer, event_id, stream, stream_version)") {
		t.Fatalf("unique keys of processed_events: %q, want the one by id, stream and version", defs)
	}
}
