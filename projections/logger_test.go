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
