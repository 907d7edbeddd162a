package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/projections"
)

// A Migrate, in another process, that brings a new migration while the
// rebuild makes its deferred indexes again neither fails nor leaves the
// swapped-in generation without an index, nor with one as the old
// migrations defined it: the rebuild makes each index from its record
// as it stands once Migrate has committed, and makes those Migrate
// deferred again.
func TestMigrateWhileTheRebuildMakesTheDeferredIndexes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("racing", true, indexedMigrations))
	runUntilCaughtUp(t, rt)
	total := countAll(t, store)

	rebuilt, release, waiting := rebuildWaitingInCreateIndex(t, ctx, pool, rt, "racing", total)
	defer release()

	// Another process, on the new release, migrates meanwhile.
	newer := reindexedMigrations()
	app := fmt.Sprintf("deferrace-%d", time.Now().UnixNano())
	pool2 := poolNamed(t, ctx, pool, app)
	rt2, err := projections.New(pool2, store, registry(t), fastConfig(), indexedProjection("racing", true, newer))
	if err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- rt2.Migrate(ctx) }()
	waiting(app) // Migrate waits for the rebuild
	release()

	if err := <-migrated; err != nil {
		t.Errorf("Migrate while the rebuild made its indexes: %v", err)
	}
	r := <-rebuilt
	if r.err != nil {
		t.Fatalf("Rebuild: %v", r.err)
	}
	want := generationIndexes(t, pool, "racing", 1) // migrated by rt2, kept (KeepOld)
	if len(want) != 7 {
		t.Errorf("generation 1 has the indexes %v, want the 7 of both migrations", namesOf(want))
	}
	checkIndexesAfterSwap(t, pool, "racing", r.res.Generation, want)
}

type rebuildResult struct {
	res projections.RebuildResult
	err error
}

// rebuildWaitingInCreateIndex starts a rebuild (KeepOld) of the
// projection name of rt and returns once it waits in the CREATE INDEX of
// its first deferred index, for a lock on the new generation's table the
// test took once every event was loaded; release lets it go on. waiting
// returns once a session of the application app waits for a lock.
func rebuildWaitingInCreateIndex(t *testing.T, ctx context.Context, pool *pgxpool.Pool, rt *projections.Runtime, name string, total int) (rebuilt chan rebuildResult, release func(), waiting func(app string)) {
	t.Helper()
	var schema string
	var holder pgx.Tx
	locked := make(chan struct{})
	rebuilt = make(chan rebuildResult, 1)
	go func() {
		res, err := rt.Rebuild(ctx, name, projections.RebuildOptions{KeepOld: true, Progress: func(p projections.RebuildProgress) {
			if holder != nil || p.Events < int64(total) {
				return
			}
			if err := pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = $1 AND generation = $2`, name, p.Generation).Scan(&schema); err != nil {
				panic(err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				panic(err)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{schema, "indexed"}.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
				panic(err)
			}
			holder = tx
			close(locked)
		}})
		rebuilt <- rebuildResult{res, err}
	}()
	select {
	case <-locked:
	case r := <-rebuilt:
		t.Fatalf("Rebuild ended before it loaded every event: %+v %v", r.res, r.err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			_ = holder.Rollback(context.Background())
		}
	}
	wait := func(app string, other bool) {
		t.Helper()
		for {
			var n int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()
				AND CASE WHEN $2 THEN application_name = $1 ELSE query LIKE 'CREATE INDEX%' AND strpos(query, $3) > 0 END`, app, other, schema).Scan(&n)
			if err != nil {
				release()
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("", false) // the rebuild's first CREATE INDEX waits
	return rebuilt, release, func(app string) { wait(app, true) }
}

// poolNamed is another pool on pool's database and schema, its sessions
// named app.
func poolNamed(t *testing.T, ctx context.Context, pool *pgxpool.Pool, app string) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// A Migrate that brings nothing new to the generation being built does
// not wait for the index the rebuild is making (which, for the audit log,
// takes minutes, with the projection's state row locked meanwhile).
func TestMigrateWithNothingNewDoesNotWaitForTheDeferredIndexes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("waiting", true, indexedMigrations))
	runUntilCaughtUp(t, rt)
	rebuilt, release, _ := rebuildWaitingInCreateIndex(t, ctx, pool, rt, "waiting", countAll(t, store))
	defer release()
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
	defer mcancel()
	if err := rt.Migrate(mctx); err != nil {
		t.Errorf("Migrate while the rebuild makes an index: %v", err)
	}
	release()
	if r := <-rebuilt; r.err != nil {
		t.Fatalf("Rebuild: %v", r.err)
	}
}
