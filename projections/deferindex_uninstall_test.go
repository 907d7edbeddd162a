package projections_test

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/projections"
)

// Uninstall removes a runtime last migrated by a release from before
// projection_deferred_indexes (an upgraded binary run before Migrate).
func TestUninstallARuntimeFromBeforeDeferredIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := database(t)
	ms, _ := runtimeMigration(t, "deferred_indexes")
	if _, err := migrate.Apply(ctx, pool, projections.Component, ms[:3]); err != nil {
		t.Fatal(err)
	}
	if err := projections.Uninstall(ctx, pool); err != nil {
		t.Fatalf("Uninstall of a runtime at version 3: %v", err)
	}
	var left bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('projection_state') IS NOT NULL`).Scan(&left); err != nil || left {
		t.Fatalf("after Uninstall, projection_state is still there (%v)", err)
	}
}
