package projections_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// indexedMigrations make a table with indexes of every kind the rebuild
// treats differently: a primary key and a unique index (kept), and
// plain, partial, expression, hash and commented indexes (deferred).
var indexedMigrations = fstest.MapFS{"001_indexed.up.sql": {Data: []byte(`
CREATE TABLE indexed (
    position   bigint NOT NULL PRIMARY KEY,
    event_id   uuid   NOT NULL,
    type       text   NOT NULL,
    tenant_id  text   NOT NULL,
    stream     text   NOT NULL
);
CREATE UNIQUE INDEX indexed_event_id_key ON indexed (event_id);
CREATE INDEX indexed_type_idx ON indexed (type, position DESC);
CREATE INDEX indexed_tenant_idx ON indexed (tenant_id) WHERE tenant_id <> '';
CREATE INDEX indexed_lower_type_idx ON indexed (lower(type));
CREATE INDEX indexed_stream_idx ON indexed USING hash (stream);
COMMENT ON INDEX indexed_type_idx IS 'by type, newest first; it''s quoted';
`)}}

// deferredKept and deferredDropped are the indexes of indexedMigrations a
// rebuild with DeferIndexes keeps and drops while it loads.
var (
	deferredKept    = []string{"indexed_event_id_key", "indexed_pkey"}
	deferredDropped = []string{"indexed_lower_type_idx", "indexed_stream_idx", "indexed_tenant_idx", "indexed_type_idx"}
)

func indexedProjection(name string, deferIndexes bool, migrations fstest.MapFS) projections.Projection {
	return projections.Projection{
		Name:         name,
		AllTypes:     true,
		DeferIndexes: deferIndexes,
		Migrations:   migrations,
		Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
			rows := make([][]any, len(evs))
			for i, e := range evs {
				rows[i] = []any{int64(e.Position.Commit), e.ID, e.Type, e.Meta.TenantID, e.Stream}
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"indexed"}, []string{"position", "event_id", "type", "tenant_id", "stream"}, pgx.CopyFromRows(rows))
			return err
		}),
	}
}

// generationIndexes is every index of the generation's schema with its
// definition and comment, the schema's name taken out so that two
// generations compare.
func generationIndexes(tb testing.TB, pool *pgxpool.Pool, name string, gen int) map[string]string {
	tb.Helper()
	var schema string
	if err := pool.QueryRow(context.Background(), `SELECT schema_name FROM projection_generations WHERE projection = $1 AND generation = $2`, name, gen).Scan(&schema); err != nil {
		tb.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT indexname, indexdef || ' -- ' || coalesce(obj_description(format('%I.%I', schemaname, indexname)::regclass, 'pg_class'), '')
		FROM pg_indexes WHERE schemaname = $1 AND tablename <> 'eventstream_migrations'`, schema)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var n, def string
		if err := rows.Scan(&n, &def); err != nil {
			tb.Fatal(err)
		}
		out[n] = strings.ReplaceAll(def, schema, "<schema>")
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func deferredRecords(tb testing.TB, pool *pgxpool.Pool, name string) []string {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT index_name FROM projection_deferred_indexes WHERE projection = $1 ORDER BY index_name`, name)
	if err != nil {
		tb.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func sameNames(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

func namesOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out) // as deferredRecords lists them
	return out
}

func indexedRows(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(DISTINCT event_id) FROM indexed`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// A rebuild with DeferIndexes loads the new generation without its plain
// indexes, keeping the unique ones, and makes every one of them again
// before the swap: the swapped-in generation has exactly the indexes,
// definitions and comments its migrations made, and every event.
func TestRebuildDefersIndexesAndMakesThemBeforeTheSwap(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool := database(t)
	cfg := fastConfig()
	rt := newRuntime(t, pool, store, cfg, indexedProjection("deferring", true, indexedMigrations))
	runUntilCaughtUp(t, rt)
	want := generationIndexes(t, pool, "deferring", 1)
	all := slices.Sorted(slices.Values(append(slices.Clone(deferredKept), deferredDropped...)))
	if !sameNames(namesOf(want), all) {
		t.Fatalf("generation 1 has the indexes %v, want %v", namesOf(want), all)
	}

	var during map[string]string
	var recorded []string
	res, err := rt.Rebuild(context.Background(), "deferring", projections.RebuildOptions{Progress: func(p projections.RebuildProgress) {
		if during == nil {
			during = generationIndexes(t, pool, "deferring", p.Generation)
			recorded = deferredRecords(t, pool, "deferring")
		}
	}})
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if !sameNames(namesOf(during), deferredKept) {
		t.Errorf("while loading, the new generation had the indexes %v, want only %v", namesOf(during), deferredKept)
	}
	if !sameNames(recorded, deferredDropped) {
		t.Errorf("while loading, the deferred indexes recorded were %v, want %v", recorded, deferredDropped)
	}
	checkIndexesAfterSwap(t, pool, "deferring", res.Generation, want)
	if got, want := indexedRows(t, pool), countAll(t, store); got != want {
		t.Errorf("the rebuilt read model holds %d events, want %d", got, want)
	}
	// The index made again is one the planner uses.
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(context.Background(), `EXPLAIN (COSTS OFF) SELECT * FROM indexed WHERE lower(type) = 'x'`)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "indexed_lower_type_idx") {
			t.Errorf("a query by lower(type) does not use the index made again:\n%s", plan)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Without DeferIndexes a rebuild keeps every index while it loads, and
// records nothing.
func TestRebuildWithoutDeferIndexesKeepsThem(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("keeping", false, indexedMigrations))
	runUntilCaughtUp(t, rt)
	want := generationIndexes(t, pool, "keeping", 1)
	var during map[string]string
	var recorded []string
	if _, err := rt.Rebuild(context.Background(), "keeping", projections.RebuildOptions{Progress: func(p projections.RebuildProgress) {
		if during == nil {
			during = generationIndexes(t, pool, "keeping", p.Generation)
			recorded = deferredRecords(t, pool, "keeping")
		}
	}}); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if !sameNames(namesOf(during), namesOf(want)) || len(recorded) != 0 {
		t.Errorf("while loading: indexes %v and records %v, want %v and none", namesOf(during), recorded, namesOf(want))
	}
}

// A rebuild interrupted while loading keeps the record of what it
// dropped. A Migrate that brings a new migration meanwhile makes the
// deferred indexes first (the migration drops one and makes it again
// otherwise, and adds one), then defers them again; the resumed rebuild
// makes them all before the swap, as the migrations define them.
func TestInterruptedRebuildStillMakesItsDeferredIndexes(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("resuming", true, indexedMigrations))
	runUntilCaughtUp(t, rt)

	ctx, cancel := context.WithCancel(context.Background())
	_, err := rt.Rebuild(ctx, "resuming", projections.RebuildOptions{Progress: func(projections.RebuildProgress) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Rebuild cancelled while loading: %v", err)
	}
	if r := deferredRecords(t, pool, "resuming"); !sameNames(r, deferredDropped) {
		t.Fatalf("after the interruption, deferred indexes recorded: %v, want %v", r, deferredDropped)
	}

	// A new release: one more migration.
	newer := reindexedMigrations()
	rt2 := newRuntime(t, pool, store, fastConfig(), indexedProjection("resuming", true, newer))
	wantDropped := []string{"indexed_lower_type_idx", "indexed_stream_idx", "indexed_stream_type_idx", "indexed_tenant_nonempty_idx", "indexed_type_idx"}
	if r := deferredRecords(t, pool, "resuming"); !sameNames(r, wantDropped) {
		t.Fatalf("after Migrate with the new migration, deferred indexes recorded: %v, want %v", r, wantDropped)
	}
	// The live generation 1 was migrated by the same Migrate: its indexes
	// are what the migrations define.
	want := generationIndexes(t, pool, "resuming", 1)
	res, err := rt2.Rebuild(context.Background(), "resuming", projections.RebuildOptions{})
	if err != nil || !res.Resumed {
		t.Fatalf("Rebuild resumed: %+v, %v", res, err)
	}
	if len(want) != 7 {
		t.Fatalf("generation 1 has the indexes %v, want the 7 of both migrations", namesOf(want))
	}
	checkIndexesAfterSwap(t, pool, "resuming", res.Generation, want)
	if got, want := indexedRows(t, pool), countAll(t, store); got != want {
		t.Errorf("the rebuilt read model holds %d events, want %d", got, want)
	}
}

// CancelRebuild forgets the indexes of the generation it drops.
func TestCancelRebuildForgetsDeferredIndexes(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("cancelling", true, indexedMigrations))
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := rt.Rebuild(ctx, "cancelling", projections.RebuildOptions{Progress: func(projections.RebuildProgress) { cancel() }}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rebuild cancelled while loading: %v", err)
	}
	if r := deferredRecords(t, pool, "cancelling"); len(r) == 0 {
		t.Fatal("nothing recorded for the interrupted rebuild")
	}
	if gen, err := rt.CancelRebuild(context.Background(), "cancelling"); err != nil || gen != 2 {
		t.Fatalf("CancelRebuild = %d, %v; want generation 2 dropped", gen, err)
	}
	if gen, err := rt.CancelRebuild(context.Background(), "cancelling"); err != nil || gen != 0 {
		t.Fatalf("CancelRebuild again = %d, %v; want 0: nothing left to drop", gen, err)
	}
	if r := deferredRecords(t, pool, "cancelling"); len(r) != 0 {
		t.Errorf("after CancelRebuild, deferred indexes still recorded: %v", r)
	}
}

func countAll(tb testing.TB, store eventstore.Store) int {
	tb.Helper()
	page, err := store.ReadAll(context.Background(), eventstore.ReadAllOptions{Limit: 100_000})
	if err != nil {
		tb.Fatal(err)
	}
	return len(page.Events)
}

// reindexedMigrations are indexedMigrations with a second release's
// migration, which needs a deferred index to be there (ALTER INDEX fails
// on a missing one), makes one again otherwise and adds one.
func reindexedMigrations() fstest.MapFS {
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
	return newer
}

// checkIndexesAfterSwap checks that generation gen of the projection has
// exactly the indexes want (generationIndexes of a generation its
// migrations made), and that no deferred index is left recorded.
func checkIndexesAfterSwap(tb testing.TB, pool *pgxpool.Pool, name string, gen int, want map[string]string) {
	tb.Helper()
	got := generationIndexes(tb, pool, name, gen)
	if len(got) != len(want) {
		tb.Errorf("after the swap, generation %d has the indexes %v, want %v", gen, namesOf(got), namesOf(want))
	}
	for n, def := range want {
		if got[n] != def {
			tb.Errorf("index %s after the swap:\n got %s\nwant %s", n, got[n], def)
		}
	}
	if r := deferredRecords(tb, pool, name); len(r) != 0 {
		tb.Errorf("after the swap, deferred indexes still recorded: %v", r)
	}
}
