package projections_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/internal/syncbuf"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// TestMonitorRefusesAnUnmigratedRuntime: Monitor on a database whose
// projections runtime is not migrated (never, or not since an upgrade)
// returns ErrNotMigrated at once, as Run, Rebuild and CatchUp do. It used
// to log "measure lag" warnings every MetricsInterval for as long as ctx
// lasted, and return nothing. Once migrated, it runs until ctx ends and
// returns nil.
func TestMonitorRefusesAnUnmigratedRuntime(t *testing.T) {
	t.Parallel()
	pool := database(t)
	store := logStore(t)
	var logs syncbuf.Buffer
	cfg := fastConfig()
	cfg.Registerer = prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	rt, err := projections.New(pool, store, registry(t), cfg, audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	monitor := func(within time.Duration) (error, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- rt.Monitor(ctx) }()
		select {
		case err := <-done:
			return err, ctx.Err() == nil
		case <-time.After(within + 10*time.Second):
			t.Fatal("Monitor did not return when its context ended")
			return nil, false
		}
	}

	// Never migrated.
	if err, early := monitor(5 * time.Second); !errors.Is(err, projections.ErrNotMigrated) || !early {
		t.Fatalf("Monitor before Migrate: %v (returned before ctx ended: %v), want ErrNotMigrated at once\n%s", err, early, logs.String())
	}
	if strings.Contains(logs.String(), "measure lag") {
		t.Fatalf("Monitor before Migrate measured the lag:\n%s", logs.String())
	}

	// Migrated, then not since an "upgrade" (migration 4 undone).
	ctx := context.Background()
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP TABLE projection_deferred_indexes`,
		`DELETE FROM eventstream_migrations WHERE component = 'projections' AND version >= 4`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err, early := monitor(5 * time.Second); !errors.Is(err, projections.ErrNotMigrated) || !early {
		t.Fatalf("Monitor on a runtime not migrated since the upgrade: %v (returned before ctx ended: %v), want ErrNotMigrated at once", err, early)
	}

	// Migrated: it measures until ctx ends, then returns nil.
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err, early := monitor(500 * time.Millisecond); err != nil || early {
		t.Fatalf("Monitor on a migrated runtime: %v (returned before ctx ended: %v), want nil when ctx ends", err, early)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("Monitor on a migrated runtime warned:\n%s", logs.String())
	}
}
