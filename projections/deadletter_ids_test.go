package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// sharedIDStore shows the event whose id is from with the id to, as
// EventStoreDB would two events with one id in two streams (its
// Features().PerStreamIDs); the memory and PostgreSQL stores refuse a
// second event with an id, so the tests cannot append one.
type sharedIDStore struct {
	eventstore.Store
	from, to uuid.UUID
}

func (s sharedIDStore) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	page, err := s.Store.ReadAll(ctx, opts)
	for i := range page.Events {
		if page.Events[i].ID == s.from {
			page.Events[i].ID = s.to
		}
	}
	return page, err
}

// Two events with one id in two streams, both parked, keep an entry each:
// both are listed, and each is retried (or skipped) on its own.
func TestEventsWithOneIdInTwoStreamsAreParkedApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memoryStore(t)
	a := appendTo(t, mem, "distribution-a", ev("distribution.viewed", 1, "acme", map[string]any{"distribution_id": uuid.New(), "course_id": uuid.New(), "visitor_id": "v"}))[0]
	fill(t, mem, 20, 5)
	b := appendTo(t, mem, "distribution-b", ev("distribution.viewed", 1, "acme", map[string]any{"distribution_id": uuid.New(), "course_id": uuid.New(), "visitor_id": "v"}))[0]
	store := sharedIDStore{Store: mem, from: b.ID, to: a.ID}

	failing := map[eventstore.Position]bool{a.Position: true, b.Position: true}
	fail := func(e eventstore.Event) error {
		if failing[e.Position] {
			return projections.Permanent(errTest)
		}
		return nil
	}
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), seenProjection("shared", func(e eventstore.Event) error { return fail(e) }))
	if _, err := rt.CatchUp(ctx, "shared", 0); err != nil {
		t.Fatal(err)
	}
	parked, err := rt.ListParked(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].EventID != a.ID || parked[1].EventID != a.ID ||
		parked[0].Position != a.Position || parked[1].Position != b.Position ||
		parked[0].Stream != "distribution-a" || parked[1].Stream != "distribution-b" ||
		parked[0].Attempts != 1 || parked[1].Attempts != 1 {
		t.Fatalf("parked %+v, want one entry of one attempt for each event", parked)
	}

	// Retrying the second applies it alone; the first stays parked.
	delete(failing, b.Position)
	if err := rt.RetryParked(ctx, parked[1].ID); err != nil {
		t.Fatal(err)
	}
	left, err := rt.ListParked(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].ID != parked[0].ID {
		t.Fatalf("after retrying the second: %+v, want the first alone", left)
	}
	if n := seenTimes(t, pool, a.ID.String()); n != 1 {
		t.Fatalf("the shared id is in the read model %d times, want 1 (the retried event)", n)
	}
}

// The migration that keys parked events by id and position drops the key
// by id alone, and running it again changes nothing.
func TestDeadLetterKeyMigrationRunsTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := database(t)
	mem := memoryStore(t)
	newRuntime(t, pool, mem, fastConfig(), audit.Projection())
	_, sql := runtimeMigration(t, "dead_letters_keyed_by_position")
	if _, err := pool.Exec(ctx, sql); err != nil {
		t.Fatalf("the migration run a second time: %v", err)
	}
	// pg_index by the table's oid, not pg_indexes: that view reads the
	// definitions of other tests' indexes too, which they may be dropping.
	rows, err := pool.Query(ctx, `SELECT pg_get_indexdef(indexrelid) FROM pg_index
		WHERE indrelid = 'projection_dead_letters'::regclass AND indisunique`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, d := range defs {
		if strings.Contains(d, "event_id") {
			keys = append(keys, d)
		}
	}
	if len(keys) != 1 || !strings.Contains(keys[0], "(projection, generation, event_id, commit_position, prepare_position)") {
		t.Fatalf("unique keys of projection_dead_letters with event_id: %q, want the one by id and position", keys)
	}
}

// Run refuses a database whose runtime migrations lag behind the binary:
// parking would otherwise fail on the missing key by id and position
// (migration 2), and a reaction on the missing key by stream and version
// of processed_events (migration 3).
func TestRunRefusesARuntimeNotMigratedToTheDeadLetterKey(t *testing.T) {
	t.Parallel()
	for _, at := range []int{1, 2} {
		t.Run(fmt.Sprintf("at migration %d", at), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := database(t)
			mem := memoryStore(t)
			rt := newRuntime(t, pool, mem, fastConfig(), audit.Projection())
			if _, err := pool.Exec(ctx, `DELETE FROM eventstream_migrations WHERE component = $1 AND version > $2`, projections.Component, at); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second) // Run lasts as long as its context unless refused
			defer cancel()
			if err := rt.Run(rctx); !errors.Is(err, projections.ErrNotMigrated) {
				t.Fatalf("Run on a runtime at migration %d: %v, want ErrNotMigrated", at, err)
			}
		})
	}
}
