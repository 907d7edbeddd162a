package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
)

// TestMigrateInAReadOnlySession: once the projections are installed and
// current, Migrate from a read-only session (a standby, a role whose
// sessions default to read-only) succeeds and changes nothing; a
// projection that is not installed yet is refused there with a message
// that says why, and nothing is written.
func TestMigrateInAReadOnlySession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := database(t)
	store := logStore(t)
	newRuntime(t, pool, store, fastConfig(), audit.Projection())

	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	ro, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ro.Close)
	states := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_state`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := states()

	rt, err := projections.New(ro, store, registry(t), fastConfig(), audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("Migrate of an installed projection in a read-only session: %v", err)
	}

	rt, err = projections.New(ro, store, registry(t), fastConfig(), audit.Projection(), analytics.Projection())
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), analytics.Projection().Name) {
		t.Fatalf("Migrate of a new projection in a read-only session: %v, want a refusal naming it and the read-only session", err)
	}
	if n := states(); n != before {
		t.Fatalf("projection_state has %d rows after the read-only Migrates, %d before", n, before)
	}
}
