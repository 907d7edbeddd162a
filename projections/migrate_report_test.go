package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/brainhq/eventstream/projections"
)

// bMigrations are the migrations of the read model b of
// TestMigrateReportOfConcurrentRuntimes, whose tables differ from a's.
var bMigrations = fstest.MapFS{
	"001_b_rows.up.sql":   {Data: []byte(`CREATE TABLE b_rows (x int)`)},
	"002_b_column.up.sql": {Data: []byte(`ALTER TABLE b_rows ADD COLUMN y int`)},
}

// TestMigrateReportOfConcurrentRuntimes: runtimes of several processes
// migrating one database at once each report, with MigrateReport, only
// the migrations they ran: between them every migration of the runtime
// and of each read model is reported once, in the generation it ran in,
// and recorded once. So too for a read model's new migration brought by
// a new release while the others are current. Several rounds, each on a
// fresh schema.
func TestMigrateReportOfConcurrentRuntimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	runtimeMs, err := projections.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	const runtimes, rounds = 4, 3
	migrateAll := func(t *testing.T, rts []*projections.Runtime) []string {
		t.Helper()
		reports := make([][]projections.AppliedMigration, len(rts))
		errs := make([]error, len(rts))
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		for i, rt := range rts {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				reports[i], errs[i] = rt.MigrateReport(ctx)
			}()
		}
		ready.Wait()
		close(start)
		done.Wait()
		var all []string
		for i := range rts {
			if errs[i] != nil {
				t.Fatalf("runtime %d: MigrateReport: %v", i, errs[i])
			}
			for _, m := range reports[i] {
				if m.Building || (m.Component == projections.Component) != (m.Generation == 0) || (m.Projection != "" && m.Component != "projection:"+m.Projection) {
					t.Errorf("runtime %d reports %+v", i, m)
				}
				all = append(all, fmt.Sprintf("%s %d %03d_%s", m.Component, m.Generation, m.Version, m.Name))
			}
		}
		slices.Sort(all)
		return all
	}
	for round := range rounds {
		pool := database(t)
		store := memoryStore(t)
		build := func(a, b projections.Projection) []*projections.Runtime {
			rts := make([]*projections.Runtime, runtimes)
			for i := range rts {
				rt, err := projections.New(pool, store, registry(t), fastConfig(), a, b)
				if err != nil {
					t.Fatal(err)
				}
				rts[i] = rt
			}
			return rts
		}
		got := migrateAll(t, build(indexedProjection("a", false, indexedMigrations), indexedProjection("b", false, bMigrations)))
		var want []string
		for _, m := range runtimeMs {
			want = append(want, fmt.Sprintf("%s 0 %03d_%s", projections.Component, m.Version, m.Name))
		}
		want = append(want, "projection:a 1 001_indexed", "projection:b 1 001_b_rows", "projection:b 1 002_b_column")
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("round %d: the runtimes report between them %q; want each migration once, %q", round, got, want)
		}
		// A new release brings a's second migration.
		got = migrateAll(t, build(indexedProjection("a", false, reindexedMigrations()), indexedProjection("b", false, bMigrations)))
		if want := []string{"projection:a 1 002_reindex"}; !slices.Equal(got, want) {
			t.Errorf("round %d: the runtimes of the new release report between them %q; want %q", round, got, want)
		}
		var records, generations int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM eventstream_migrations WHERE component = $1`, projections.Component).Scan(&records); err != nil || records != len(runtimeMs) {
			t.Errorf("round %d: the runtime's migrations are recorded %d times (%v), want %d", round, records, err, len(runtimeMs))
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_generations`).Scan(&generations); err != nil || generations != 2 {
			t.Errorf("round %d: %d generations (%v), want 2: one per read model", round, generations, err)
		}
		for _, name := range []string{"a", "b"} {
			var schema string
			if err := pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = $1`, name).Scan(&schema); err != nil {
				t.Fatal(err)
			}
			var n, distinct int
			if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), count(DISTINCT version) FROM %q.eventstream_migrations WHERE component = $1`, schema), "projection:"+name).Scan(&n, &distinct); err != nil || n != 2 || distinct != 2 {
				t.Errorf("round %d: %s's generation records %d migrations, %d distinct (%v); want 2", round, name, n, distinct, err)
			}
		}
	}
}

// TestMigrateReportOfARebuildInProgress: a new release's migration runs
// in the active generation and in the one an interrupted rebuild (with
// DeferIndexes, its plain indexes dropped while it loads) is building;
// MigrateReport reports it once for each, the second marked Building
// with that generation's number, and reports nothing when run again.
func TestMigrateReportOfARebuildInProgress(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("reported", true, indexedMigrations))
	runUntilCaughtUp(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := rt.Rebuild(ctx, "reported", projections.RebuildOptions{Progress: func(projections.RebuildProgress) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Rebuild cancelled while loading: %v", err)
	}
	if r := deferredRecords(t, pool, "reported"); !sameNames(r, deferredDropped) {
		t.Fatalf("after the interruption, deferred indexes recorded: %v, want %v", r, deferredDropped)
	}
	rt2, err := projections.New(pool, store, registry(t), fastConfig(), indexedProjection("reported", true, reindexedMigrations()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := rt2.MigrateReport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []projections.AppliedMigration{
		{Component: "projection:reported", Projection: "reported", Generation: 1, Version: 2, Name: "reindex"},
		{Component: "projection:reported", Projection: "reported", Generation: 2, Building: true, Version: 2, Name: "reindex"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("MigrateReport with a rebuild in progress reports %+v; want %+v", got, want)
	}
	for gen := 1; gen <= 2; gen++ {
		if ix := generationIndexes(t, pool, "reported", gen); gen == 1 && len(ix) != 7 {
			t.Errorf("generation 1 has the indexes %v after the migration, want the 7 of both migrations", namesOf(ix))
		}
	}
	if got, err := rt2.MigrateReport(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("MigrateReport run again reports %+v, %v; want nothing", got, err)
	}
}
