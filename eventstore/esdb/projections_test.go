package esdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
)

// TestStandIn_ProjectionWithReadModelInPostgres runs a projection unchanged
// with the log on the EventStoreDB protocol stand-in and the read model in
// PostgreSQL: every event is applied once, the checkpoint (an EventStoreDB
// position) commits with the read model, and a second runtime resumes from
// it without applying anything twice.
func TestStandIn_ProjectionWithReadModelInPostgres(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	st, _ := standInStore(t, reg, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	u, _ := pgtest.Schema(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	t.Cleanup(func() {
		// The runtime keeps each generation of a read model in a schema
		// of its own; remove them with the test's schema.
		uctx, ucancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ucancel()
		if err := projections.Uninstall(uctx, pool); err != nil {
			t.Errorf("uninstall projections: %v", err)
		}
	})

	items := projections.Projection{
		Name:    "esdb_items",
		Handles: projections.Types(1, storetest.TypeAdded),
		Migrations: fstest.MapFS{"001_items.up.sql": {Data: []byte(
			`CREATE TABLE esdb_items (event_id uuid PRIMARY KEY, stream text NOT NULL, version bigint NOT NULL, name text NOT NULL)`)}},
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			var p struct{ Name string }
			if err := jsonUnmarshal(e.Payload, &p); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO esdb_items (event_id, stream, version, name) VALUES ($1, $2, $3, $4)`, e.ID, e.Stream, e.Version, p.Name)
			return err
		}),
	}
	cfg := projections.Config{
		BatchSize:          50,
		LockPollInterval:   50 * time.Millisecond,
		HeartbeatInterval:  100 * time.Millisecond,
		CheckpointInterval: 20 * time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	start := func() (*projections.Runtime, func()) {
		rt, err := projections.New(pool, st, reg, cfg, items)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(rctx) }()
		return rt, func() {
			stop()
			if err := <-done; err != nil && rctx.Err() == nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	appendSome := func(from, n int) {
		for i := from; i < from+n; i++ {
			e := added(fmt.Sprint("item-", i))
			if i%5 == 4 {
				e = renamedEvent(fmt.Sprint("item-", i)) // not handled: the checkpoint passes it
			}
			if _, err := st.Append(ctx, fmt.Sprintf("items-%d", i%3), eventstore.Any, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	caughtUp := func(rt *projections.Runtime) eventstore.Position {
		for {
			lag, err := rt.Lag(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(lag) == 1 && !lag[0].Head.IsZero() && lag[0].Position == lag[0].Head {
				return lag[0].Position
			}
			select {
			case <-ctx.Done():
				t.Fatalf("projection did not catch up: %+v", lag)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	count := func() (rows, distinct int) {
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM esdb_items`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}

	appendSome(0, 60) // catch-up
	rt, stop := start()
	appendSome(60, 40) // live
	at := caughtUp(rt)
	head, err := st.Head(ctx)
	if err != nil || at != head {
		t.Fatalf("projection at %v, store head %v (%v)", at, head, err)
	}
	if rows, distinct := count(); rows != 80 || distinct != 80 {
		t.Fatalf("read model: %d rows, %d distinct; want the 80 handled events once", rows, distinct)
	}
	stop()

	// A new runtime resumes from the stored EventStoreDB position.
	appendSome(100, 20)
	rt, stop = start()
	defer stop()
	caughtUp(rt)
	if rows, distinct := count(); rows != 96 || distinct != 96 {
		t.Fatalf("read model after a restart: %d rows, %d distinct; want 96 once each", rows, distinct)
	}
	all := readAll(t, st, eventstore.ReadAllOptions{Types: []string{storetest.TypeAdded}})
	var matched int
	for _, e := range all {
		var v int64
		if err := pool.QueryRow(ctx, `SELECT version FROM esdb_items WHERE event_id = $1 AND stream = $2`, e.ID, e.Stream).Scan(&v); err != nil || v != e.Version {
			t.Fatalf("event %s %s@%d: read model has version %d (%v)", e.ID, e.Stream, e.Version, v, err)
		}
		matched++
	}
	if matched != 96 {
		t.Fatalf("%d handled events in the log, want 96", matched)
	}
}

func renamedEvent(name string) eventstore.Event {
	return eventstore.Event{
		Type:    storetest.TypeRenamed,
		Source:  "esdb-test",
		Payload: []byte(fmt.Sprintf(`{"name":%q,"reason":"test"}`, name)),
		Meta:    eventstore.Meta{SchemaVersion: 2, TenantID: "tenant-a"},
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
