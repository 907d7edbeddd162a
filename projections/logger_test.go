package projections_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/syncbuf"
	"github.com/brainhq/eventstream/projections"
)

// A handler's warnings go to the runtime's logger (Config.Logger), found
// with projections.Logger(ctx), and not to slog's default: the catalog
// warned through slog.Default(), which bypassed a command's --log-level
// and format.
func TestHandlersLogThroughTheRuntimesLogger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 3, 3)
	var out syncbuf.Buffer
	cfg := fastConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&out, nil))
	logging := projections.Projection{
		Name:     "logging",
		AllTypes: true,
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			projections.Logger(ctx).Warn("handler saw an event", "event_id", e.ID)
			return nil
		}),
	}
	rt := newRuntime(t, database(t), store, cfg, logging)
	if _, err := rt.CatchUp(ctx, "logging", 0); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "handler saw an event"); n != 3 {
		t.Fatalf("the runtime's logger got %d of the handler's 3 warnings:\n%s", n, out.String())
	}
	if projections.Logger(ctx) != slog.Default() {
		t.Fatal("outside a runtime's call, Logger is not slog's default")
	}
}

// Rewind (called by Reprocess) and Config.OnPublish (by Migrate) are the
// runtime's calls too: projections.Logger(ctx) in them is the runtime's
// logger, not slog's default.
func TestRewindAndOnPublishLogThroughTheRuntimesLogger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 3, 3)
	var out syncbuf.Buffer
	cfg := fastConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&out, nil))
	cfg.OnPublish = func(ctx context.Context, tx pgx.Tx, pub projections.Publication) error {
		projections.Logger(ctx).Warn("on publish was called", "projection", pub.Projection)
		return nil
	}
	p := seenProjection("rewound_logging", func(eventstore.Event) error { return nil })
	p.Rewind = func(ctx context.Context, tx pgx.Tx, after eventstore.Position) error {
		projections.Logger(ctx).Warn("rewind was called")
		_, err := tx.Exec(ctx, `DELETE FROM seen`)
		return err
	}
	rt := newRuntime(t, database(t), store, cfg, p)
	if _, err := rt.CatchUp(ctx, "rewound_logging", 0); err != nil {
		t.Fatal(err)
	}
	if err := rt.Reprocess(ctx, "rewound_logging", eventstore.Start); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"on publish was called", "rewind was called"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the runtime's logger did not get %q:\n%s", want, out.String())
		}
	}
}
