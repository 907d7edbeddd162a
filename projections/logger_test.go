package projections_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/syncbuf"
	"github.com/brainhq/eventstream/projections"
)

// What the runtime calls logs to its logger (Config.Logger), found with
// projections.Logger(ctx), and not to slog's default: a handler (the
// catalog warned through slog.Default(), which bypassed a command's
// --log-level and format), Rewind (called by Reprocess) and
// Config.OnPublish (by Migrate).
func TestRuntimeCallsLogThroughTheRuntimesLogger(t *testing.T) {
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
	logging := projections.Projection{
		Name:     "logging",
		AllTypes: true,
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			projections.Logger(ctx).Warn("handler saw an event", "event_id", e.ID)
			return nil
		}),
		Rewind: func(ctx context.Context, tx pgx.Tx, after eventstore.Position) error {
			projections.Logger(ctx).Warn("rewind was called")
			return nil
		},
	}
	rt := newRuntime(t, database(t), store, cfg, logging)
	if _, err := rt.CatchUp(ctx, "logging", 0); err != nil {
		t.Fatal(err)
	}
	if n := out.Lines("handler saw an event"); n != 3 {
		t.Fatalf("the runtime's logger got %d of the handler's 3 warnings:\n%s", n, out.String())
	}
	if err := rt.Reprocess(ctx, "logging", eventstore.Start); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"on publish was called", "rewind was called"} {
		if out.Lines(want) == 0 {
			t.Fatalf("the runtime's logger did not get %q:\n%s", want, out.String())
		}
	}
	if projections.Logger(ctx) != slog.Default() {
		t.Fatal("outside a runtime's call, Logger is not slog's default")
	}
}
