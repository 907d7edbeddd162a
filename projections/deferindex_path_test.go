package projections_test

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/projections"
)

// A deferred index is made again as it was whatever the search_path of
// the session that makes it: its definition was written for
// search_path pg_catalog (only names outside pg_catalog qualified), and a
// Migrate from a pool whose path puts a schema before pg_catalog, with a
// function lower(text) of its own, made indexed_lower_type_idx on that
// function instead of pg_catalog's.
func TestDeferredIndexMadeAgainWhateverTheSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := databaseWith(t, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["search_path"] += ", pg_catalog"
	})
	if _, err := pool.Exec(ctx, `CREATE FUNCTION lower(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.upper($1)'`); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("pathing", true, indexedMigrations))
	runUntilCaughtUp(t, rt)
	cctx, cancel := context.WithCancel(ctx)
	if _, err := rt.Rebuild(cctx, "pathing", projections.RebuildOptions{Progress: func(projections.RebuildProgress) { cancel() }}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rebuild cancelled while loading: %v", err)
	}
	newer := fstest.MapFS{}
	for k, v := range indexedMigrations {
		newer[k] = v
	}
	newer["002_more.up.sql"] = &fstest.MapFile{Data: []byte(`CREATE INDEX indexed_stream_type_idx ON indexed (stream, type);`)}
	rt2 := newRuntime(t, pool, store, fastConfig(), indexedProjection("pathing", true, newer)) // Migrate makes the deferred indexes, then defers them again
	want := generationIndexes(t, pool, "pathing", 1)
	res, err := rt2.Rebuild(ctx, "pathing", projections.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := generationIndexes(t, pool, "pathing", res.Generation)
	if len(got) != len(want) {
		t.Errorf("after the swap, generation %d has the indexes %v, want %v", res.Generation, namesOf(got), namesOf(want))
	}
	for n, def := range want {
		if got[n] != def {
			t.Errorf("index %s after the swap:\n got %s\nwant %s", n, got[n], def)
		}
	}
}
