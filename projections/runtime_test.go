package projections_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/schemas"
)

func nop(context.Context, pgx.Tx, []eventstore.Event) error { return nil }

func TestNewRefusesBadDeclarations(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	store, err := memory.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	pool := database(t)
	h := projections.HandlerFunc(nop)
	cases := []struct {
		name  string
		p     projections.Projection
		is    error
		field string
	}{
		{"unknown type", projections.Projection{Name: "x", Handler: h, Handles: projections.Types(1, "course.generation.requested", "course.teleported")}, schemas.ErrUnknownType, "course.teleported"},
		{"unknown version", projections.Projection{Name: "x", Handler: h, Handles: []projections.EventType{{Type: "course.generation.requested", Versions: []int{1, 2, 3}}}}, schemas.ErrUnknownVersion, "v3"},
		{"no versions", projections.Projection{Name: "x", Handler: h, Handles: []projections.EventType{{Type: "course.generation.requested"}}}, nil, "no schema version"},
		{"no types", projections.Projection{Name: "x", Handler: h}, nil, "handles no event type"},
		{"both", projections.Projection{Name: "x", Handler: h, AllTypes: true, Handles: projections.Types(1, "course.generation.requested")}, nil, "exclusive"},
		{"no handler", projections.Projection{Name: "x", AllTypes: true}, nil, "no Handler"},
		{"bad name", projections.Projection{Name: "Audit; DROP TABLE events", Handler: h, AllTypes: true}, nil, "name must be"},
		{"bad migration", projections.Projection{Name: "x", Handler: h, AllTypes: true, Migrations: fstest.MapFS{"create.sql": {Data: []byte("SELECT 1")}}}, nil, "migrations"},
		{"twice", projections.Projection{Name: "x", Handler: h, Handles: append(projections.Types(1, "distribution.viewed"), projections.Types(1, "distribution.viewed")...)}, nil, "declared twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, err := projections.New(pool, store, reg, projections.Config{}, c.p)
			if err == nil {
				t.Fatalf("New accepted %+v", c.p)
			}
			if rt != nil {
				t.Fatal("New returned a runtime with its error")
			}
			var de *projections.DeclarationError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DeclarationError", err, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %v does not match %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %q", err, c.field)
			}
		})
	}
	// Two projections with one name.
	p := projections.Projection{Name: "x", Handler: h, AllTypes: true}
	if _, err := projections.New(pool, store, reg, projections.Config{}, p, p); err == nil {
		t.Fatal("New accepted two projections named x")
	}
	// Nothing was written: New does not touch the database.
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("New created %d tables", n)
	}
}

func TestRunRefusesUnmigrated(t *testing.T) {
	t.Parallel()
	pool := database(t)
	store := logStore(t)
	rt, err := projections.New(pool, store, registry(t), fastConfig(), audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Run(context.Background()); !errors.Is(err, projections.ErrNotMigrated) {
		t.Fatalf("Run before Migrate: %v, want ErrNotMigrated", err)
	}
	if err := rt.Run(context.Background(), "nope"); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Fatalf("Run of an unknown projection: %v, want ErrUnknownProjection", err)
	}
}

// TestRunAppliesTheLogOnce runs audit and analytics live while events are
// appended and checks the read models hold every event once.
func TestRunAppliesTheLogOnce(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	pool := database(t)
	fill(t, store, 700, 50)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection(), analytics.Projection())
	if err := rt.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	run(t, rt)
	fill(t, store, 700, 7) // live, in small appends
	waitCaughtUp(t, rt)

	var rows, sum int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM audit_events`).Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	if rows != 1400 || sum != 1400 {
		t.Fatalf("audit_events: %d rows, %d distinct ids; want 1400", rows, sum)
	}
	if err := pool.QueryRow(context.Background(), `SELECT sum(events) FROM analytics_event_counts`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 1400 {
		t.Fatalf("analytics counts sum to %d, want 1400", sum)
	}
	var requested, completed, failed int64
	var rate *float64
	if err := pool.QueryRow(context.Background(), `SELECT sum(requested), sum(completed), sum(failed), (sum(completed)::float8 / (sum(completed) + sum(failed))) FROM analytics_generation_daily`).Scan(&requested, &completed, &failed, &rate); err != nil {
		t.Fatal(err)
	}
	if requested != 200 || completed != 200 || failed != 200 || rate == nil || *rate != 0.5 {
		t.Fatalf("generation: requested %d completed %d failed %d rate %v; want 200 each, 0.5", requested, completed, failed, rate)
	}
	var subjectRows int64
	if err := pool.QueryRow(context.Background(), `SELECT sum(completed + failed) FROM analytics_outcomes WHERE subject = 'course.generation'`).Scan(&subjectRows); err != nil {
		t.Fatal(err)
	}
	if subjectRows != 400 {
		t.Fatalf("outcomes of course.generation: %d, want 400", subjectRows)
	}
	if err := pool.QueryRow(context.Background(), `SELECT sum(failed) FROM analytics_outcomes WHERE subject = 'ir.dag_diff'`).Scan(&subjectRows); err != nil {
		t.Fatal(err)
	}
	if subjectRows != 200 {
		t.Fatalf("outcomes of ir.dag_diff: %d failed, want 200", subjectRows)
	}

	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	head := headOf(t, store)
	for _, l := range lag {
		if l.Position != head || l.LagEvents != 0 || l.LagSeconds != 0 || !l.Running || !l.Held || l.Parked != 0 || l.Generation != 1 {
			t.Fatalf("lag of %s: %+v, want caught up at %s, running", l.Projection, l, head)
		}
	}
	sameRows(t, dump(t, pool), reference(t, store))
}

// TestViewConflictRefused: a projection cannot take the name of a
// relation it does not own, and a refused install leaves nothing.
func TestViewConflictRefused(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	pool := database(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE audit_events (x int)`); err != nil {
		t.Fatal(err)
	}
	rt, err := projections.New(pool, store, registry(t), fastConfig(), audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Migrate(context.Background())
	var vc *projections.ViewConflictError
	if !errors.As(err, &vc) || vc.Name != "audit_events" {
		t.Fatalf("Migrate over a foreign audit_events table: %v, want a *ViewConflictError", err)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM projection_generations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a refused install left %d generations", n)
	}
}

func TestRunEndsWhenTheStoreCloses(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	store, err := memory.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, store, 50, 10)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	done := make(chan error, 1)
	go func() { done <- rt.Run(context.Background()) }()
	waitCaughtUp(t, rt)
	store.Close()
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Run after the store closed: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end when the store closed")
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 50 {
		t.Fatalf("audit rows from the memory store: %d %v", n, err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	store, _ := memory.New(reg)
	pool := database(t)
	if _, err := projections.New(pool, store, reg, projections.Config{SynchronousCommit: "maybe"}, audit.Projection()); err == nil {
		t.Fatal("New accepted synchronous_commit = maybe")
	}
	if _, err := projections.New(nil, store, reg, projections.Config{}, audit.Projection()); err == nil {
		t.Fatal("New accepted a nil pool")
	}
	if _, err := projections.New(pool, nil, reg, projections.Config{}, audit.Projection()); err == nil {
		t.Fatal("New accepted a nil store")
	}
	if _, err := projections.New(pool, store, nil, projections.Config{}, audit.Projection()); err == nil {
		t.Fatal("New accepted a nil registry")
	}
}

// Processes that migrate at once wait for each other whatever the
// lock_timeout of the database or role: the second waits for the first's
// install of a projection (its state row) instead of failing on it.
func TestConcurrentMigrateUnderALowLockTimeout(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	for round := range 4 {
		pools := []*pgxpool.Pool{databaseWith(t, func(cfg *pgxpool.Config) {
			cfg.ConnConfig.RuntimeParams["lock_timeout"] = "20ms"
		})}
		for range 2 {
			other, err := pgxpool.NewWithConfig(context.Background(), pools[0].Config().Copy())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(other.Close)
			pools = append(pools, other)
		}
		never := func(eventstore.Event) error { return nil }
		var wg sync.WaitGroup
		errs := make([]error, len(pools))
		for i, pool := range pools {
			second := seenProjection("second", never)
			second.Migrations = fstest.MapFS{"001_marks.up.sql": {Data: []byte(`CREATE TABLE marks (n bigserial PRIMARY KEY)`)}}
			second.Handler = projections.EachEvent(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
			rt, err := projections.New(pool, store, registry(t), fastConfig(), seenProjection("first", never), second)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = rt.Migrate(context.Background())
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: process %d of %d: Migrate: %v", round, i+1, len(pools), err)
			}
		}
		var gens int
		if err := pools[0].QueryRow(context.Background(), `SELECT count(*) FROM projection_generations`).Scan(&gens); err != nil {
			t.Fatal(err)
		}
		if gens != 2 {
			t.Fatalf("round %d: %d generations, want 2 (one per projection, installed once)", round, gens)
		}
	}
}

// Migrate leaves a current view alone, so a reader's open query on it does
// not hold up a process's start; a migration that adds a column still
// gets the view replaced, with the column.
func TestMigrateLeavesCurrentViewsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	pool := database(t)
	v1 := fstest.MapFS{"001_marks.up.sql": {Data: []byte(`CREATE TABLE marks (n bigserial PRIMARY KEY, tenant_id text)`)}}
	projection := func(ms fstest.MapFS) projections.Projection {
		p := seenProjection("marks", func(eventstore.Event) error { return nil })
		p.Migrations = ms
		p.Handler = projections.EachEvent(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
		return p
	}
	newRuntime(t, pool, store, fastConfig(), projection(v1))

	reader, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Release()
	tx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM marks`); err != nil {
		t.Fatal(err)
	}
	rt, err := projections.New(pool, store, registry(t), fastConfig(), projection(v1))
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := rt.Migrate(mctx); err != nil {
		t.Fatalf("Migrate while a reader's query holds the view: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	v2 := fstest.MapFS{
		"001_marks.up.sql": v1["001_marks.up.sql"],
		"002_note.up.sql":  {Data: []byte(`ALTER TABLE marks ADD COLUMN note text`)},
	}
	newRuntime(t, pool, store, fastConfig(), projection(v2))
	var note *string
	if err := pool.QueryRow(ctx, `SELECT note FROM marks LIMIT 1`).Scan(&note); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("the view after a migration that added a column: %v", err)
	}
}

// Run ended while it starts (its context cancelled before it has read
// the projections' state) returns nil, as when it is ended later: a
// process told to stop at once has not failed.
func TestRunEndedWhileStartingReturnsNil(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, database(t), memoryStore(t), fastConfig(), seenProjection("starting", func(eventstore.Event) error { return nil }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rt.Run(ctx); err != nil {
		t.Fatalf("Run with its context already ended: %v, want nil", err)
	}
}

// Rebuild and CatchUp, like Run, refuse a database whose runtime tables
// were last migrated by an earlier release (here: before runtime migration
// 004, which made projection_deferred_indexes) with ErrNotMigrated,
// instead of failing on the first table that release did not make.
func TestRebuildAndCatchUpRefuseARuntimeNotMigratedSinceTheUpgrade(t *testing.T) {
	t.Parallel()
	pool := database(t)
	store := logStore(t)
	fill(t, store, 20, 5)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	ctx := context.Background()
	for _, q := range []string{
		`DROP TABLE projection_deferred_indexes`,
		`DELETE FROM eventstream_migrations WHERE component = 'projections' AND version >= 4`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{}); !errors.Is(err, projections.ErrNotMigrated) {
		t.Errorf("Rebuild on a runtime not migrated since the upgrade: %v, want ErrNotMigrated", err)
	}
	if _, err := rt.CatchUp(ctx, audit.Name, 0); !errors.Is(err, projections.ErrNotMigrated) {
		t.Errorf("CatchUp on a runtime not migrated since the upgrade: %v, want ErrNotMigrated", err)
	}
	// Migrate brings it up to date; both work again.
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Errorf("CatchUp after Migrate: %v", err)
	}
	if _, err := rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{}); err != nil {
		t.Errorf("Rebuild after Migrate: %v", err)
	}
}
