package projections_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/brainhq/eventstream/projections"
)

// An index with a setting pg_get_indexdef does not write out is kept
// while a rebuild with DeferIndexes loads, as one with a tablespace of
// its own is: the index a table is clustered on (ALTER TABLE ... CLUSTER
// ON; made again, the table had none, and a plain CLUSTER of it failed)
// and an expression column's statistics target of 0 (statistics turned
// off, which the deferral missed, looking for a target above 0 only).
func TestRebuildKeepsIndexesWithSettingsTheDefinitionLacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := database(t)
	migrations := fstest.MapFS{}
	for k, v := range indexedMigrations {
		migrations[k] = v
	}
	migrations["002_settings.up.sql"] = &fstest.MapFile{Data: []byte(`
ALTER TABLE indexed CLUSTER ON indexed_type_idx;
ALTER INDEX indexed_lower_type_idx ALTER COLUMN 1 SET STATISTICS 0;
`)}
	rt := newRuntime(t, pool, store, fastConfig(), indexedProjection("settings", true, migrations))
	runUntilCaughtUp(t, rt)
	settings := func() (clustered string, target int) {
		t.Helper()
		err := pool.QueryRow(ctx, `WITH g AS (SELECT g.schema_name FROM projection_state s JOIN projection_generations g
				ON g.projection = s.projection AND g.generation = s.active_generation WHERE s.projection = 'settings')
			SELECT (SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid, g
				WHERE t.relnamespace::regnamespace::text = g.schema_name AND t.relname = 'indexed' AND i.indisclustered),
			(SELECT a.attstattarget FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, g
				WHERE c.relnamespace::regnamespace::text = g.schema_name AND c.relname = 'indexed_lower_type_idx' AND a.attnum = 1)`).Scan(&clustered, &target)
		if err != nil {
			t.Fatal(err)
		}
		return clustered, target
	}
	if c, n := settings(); c != "indexed_type_idx" || n != 0 {
		t.Fatalf("generation 1: clustered on %q, statistics target %d", c, n)
	}
	var recorded []string
	if _, err := rt.Rebuild(ctx, "settings", projections.RebuildOptions{Progress: func(projections.RebuildProgress) {
		if recorded == nil {
			recorded = deferredRecords(t, pool, "settings")
		}
	}}); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if !sameNames(recorded, []string{"indexed_stream_idx", "indexed_tenant_idx"}) {
		t.Errorf("while loading, deferred indexes recorded: %v, want indexed_stream_idx and indexed_tenant_idx only", recorded)
	}
	if c, n := settings(); c != "indexed_type_idx" || n != 0 {
		t.Errorf("after the swap: clustered on %q, statistics target %d; want indexed_type_idx and 0", c, n)
	}
}
