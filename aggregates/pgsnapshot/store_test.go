package pgsnapshot_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// TestMigrateKeepsSnapshotsWithoutEventID: a table written before
// snapshots recorded their event's id is upgraded in place, twice safely;
// its rows load with no event id (which the repository does not trust)
// and the first save replaces them, whatever its version.
func TestMigrateKeepsSnapshotsWithoutEventID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, err := pgsnapshot.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, pgsnapshot.Component, ms[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, state)
		VALUES ('counter-1', 1, 'counter', 7, '{"total": 7}')`); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := pgsnapshot.Migrate(ctx, pool); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	if ran, err := migrate.Apply(ctx, pool, pgsnapshot.Component, ms); err != nil || len(ran) != 0 {
		t.Fatalf("a third apply ran %d migrations (%v), want none", len(ran), err)
	}

	store := pgsnapshot.New(pool)
	got, ok, err := store.Load(ctx, "counter-1", 1)
	if err != nil || !ok || got.Version != 7 || got.EventID != uuid.Nil || got.Aggregate != "counter" {
		t.Fatalf("the old row loads as v%d at event %s of %q (%v %v), want v7 with no event id", got.Version, got.EventID, got.Aggregate, ok, err)
	}

	id := uuid.New()
	if err := store.Save(ctx, aggregates.Snapshot{Stream: "counter-1", Aggregate: "counter", Version: 5, EventID: id, SchemaVersion: 1,
		State: json.RawMessage(`{"total": 5}`)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err = store.Load(ctx, "counter-1", 1)
	if err != nil || !ok || got.Version != 5 || got.EventID != id {
		t.Fatalf("after a save at v5: v%d at event %s (%v %v), want v5 at %s over the row without an event id", got.Version, got.EventID, ok, err, id)
	}
}
