package projections_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

func TestOnce(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	pool := database(t)
	newRuntime(t, pool, store, fastConfig(), audit.Projection())
	ctx := context.Background()
	id := uuid.New()

	// A rolled-back transaction leaves the event unseen.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		first, err := projections.Once(ctx, tx, "mailer", id)
		if err != nil || !first {
			t.Fatalf("Once in a new transaction: %v %v, want first", first, err)
		}
		return errors.New("roll back")
	})
	if err == nil {
		t.Fatal("the transaction committed")
	}
	if seen, err := projections.Processed(ctx, pool, "mailer", id); err != nil || seen {
		t.Fatalf("after a rollback: processed %v %v, want false", seen, err)
	}
	for i, want := range []bool{true, false, false} {
		first, err := projections.Once(ctx, pool, "mailer", id)
		if err != nil || first != want {
			t.Fatalf("Once call %d: %v %v, want %v", i, first, err, want)
		}
	}
	// Consumers are independent.
	if first, err := projections.Once(ctx, pool, "indexer", id); err != nil || !first {
		t.Fatalf("another consumer: %v %v, want first", first, err)
	}
	if _, err := projections.Once(ctx, pool, "", id); err == nil {
		t.Fatal("Once accepted an empty consumer name")
	}
}

// A reaction acts once per event, also when the runtime replays the log
// into it (a rebuild), since processed_events outlives generations.
func TestReactionActsOnceAcrossReplay(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool := database(t)
	var mu sync.Mutex
	acted := map[uuid.UUID]int{}
	p := projections.Reaction("notify", "notify-on-failure", projections.Types(1, "course.generation.failed"),
		func(ctx context.Context, e eventstore.Event) error {
			mu.Lock()
			defer mu.Unlock()
			acted[e.ID]++
			return nil
		})
	rt := newRuntime(t, pool, store, fastConfig(), p)
	stop := run(t, rt)
	waitCaughtUp(t, rt)
	if _, err := rt.Rebuild(context.Background(), "notify", projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	fill(t, store, 70, 7)
	waitCaughtUp(t, rt)
	stop()

	failed := eventsOf(t, store, "course.generation.failed")
	if len(acted) != len(failed) || len(failed) == 0 {
		t.Fatalf("acted on %d events, want %d", len(acted), len(failed))
	}
	for id, n := range acted {
		if n != 1 {
			t.Fatalf("acted %d times on %s", n, id)
		}
	}
	var rows int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE consumer = 'notify-on-failure'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(failed) {
		t.Fatalf("processed_events holds %d rows, want %d", rows, len(failed))
	}
}
