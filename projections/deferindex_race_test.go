package projections_test

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
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

	// Once the rebuild has loaded every event, the test holds a lock on
	// the new generation's table that its CREATE INDEX waits for.
	var schema string
	var holder pgx.Tx
	locked := make(chan struct{})
	type result struct {
		res projections.RebuildResult
		err error
	}
	rebuilt := make(chan result, 1)
	go func() {
		res, err := rt.Rebuild(ctx, "racing", projections.RebuildOptions{KeepOld: true, Progress: func(p projections.RebuildProgress) {
			if holder != nil || p.Events < int64(total) {
				return
			}
			if err := pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'racing' AND generation = $1`, p.Generation).Scan(&schema); err != nil {
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
		rebuilt <- result{res, err}
	}()
	select {
	case <-locked:
	case r := <-rebuilt:
		t.Fatalf("Rebuild ended before it loaded every event: %+v %v", r.res, r.err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			_ = holder.Rollback(context.Background())
		}
	}
	defer release()
	waiting := func(app string, other bool) {
		t.Helper()
		for {
			var n int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()
				AND CASE WHEN $2 THEN application_name = $1 ELSE query LIKE 'CREATE INDEX%' AND strpos(query, $3) > 0 END`, app, other, schema).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waiting("", false) // the rebuild's first CREATE INDEX waits

	// Another process, on the new release, migrates meanwhile.
	newer := fstest.MapFS{}
	for k, v := range indexedMigrations {
		newer[k] = v
	}
	newer["002_reindex.up.sql"] = &fstest.MapFile{Data: []byte(`
ALTER INDEX indexed_tenant_idx RENAME TO indexed_tenant_nonempty_idx;
DROP INDEX indexed_lower_type_idx;
CREATE INDEX indexed_lower_type_idx ON indexed (lower(type), tenant_id);
CREATE INDEX indexed_stream_type_idx ON indexed (stream, type);
`)}
	app := fmt.Sprintf("deferrace-%d", time.Now().UnixNano())
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool2, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	rt2, err := projections.New(pool2, store, registry(t), fastConfig(), indexedProjection("racing", true, newer))
	if err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- rt2.Migrate(ctx) }()
	waiting(app, true) // Migrate waits for the rebuild
	release()

	if err := <-migrated; err != nil {
		t.Errorf("Migrate while the rebuild made its indexes: %v", err)
	}
	r := <-rebuilt
	if r.err != nil {
		t.Fatalf("Rebuild: %v", r.err)
	}
	want := generationIndexes(t, pool, "racing", 1) // migrated by rt2, kept (KeepOld)
	got := generationIndexes(t, pool, "racing", r.res.Generation)
	if len(got) != len(want) || len(want) != 7 {
		t.Errorf("after the swap, generation %d has the indexes %v, want %v", r.res.Generation, namesOf(got), namesOf(want))
	}
	for n, def := range want {
		if got[n] != def {
			t.Errorf("index %s after the swap:\n got %s\nwant %s", n, got[n], def)
		}
	}
	if rec := deferredRecords(t, pool, "racing"); len(rec) != 0 {
		t.Errorf("after the swap, deferred indexes still recorded: %v", rec)
	}
}
