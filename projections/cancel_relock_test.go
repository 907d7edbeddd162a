package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// slowOnce is a projection whose handler, the first time it runs while
// slow is set, signals started and then runs a statement on the server for
// several seconds: a Rebuild or CatchUp cancelled during it leaves the
// server busy with its statement after the client has gone.
func slowOnce(name string, slow *atomic.Bool, started chan<- struct{}) projections.Projection {
	p := seenProjection(name, func(eventstore.Event) error { return nil })
	inner := p.Handler
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		if slow.CompareAndSwap(true, false) {
			close(started)
			if _, err := tx.Exec(ctx, `SELECT pg_sleep(5)`); err != nil {
				return err
			}
		}
		return inner.Handle(ctx, tx, evs)
	})
	return p
}

// A Rebuild or CatchUp cancelled while its handler's statement runs on
// the server can be called again at once: it goes on from its checkpoint
// instead of finding its own lock, still held by the abandoned session,
// and answering ErrBusy ("already running") until the server has ended
// that session.
func TestCalledAgainAtOnceAfterCancelWhileApplying(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"rebuild", "catch-up"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			store := logStore(t)
			fill(t, store, 40, 4)
			pool := database(t)
			slow := &atomic.Bool{}
			started := make(chan struct{})
			rt := newRuntime(t, pool, store, fastConfig(), slowOnce("slow", slow, started))
			call := func(ctx context.Context) error {
				if op == "rebuild" {
					_, err := rt.Rebuild(ctx, "slow", projections.RebuildOptions{})
					return err
				}
				_, err := rt.CatchUp(ctx, "slow", 0)
				return err
			}

			slow.Store(true)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- call(ctx) }()
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("the handler did not start")
			}
			time.Sleep(100 * time.Millisecond) // the statement is running on the server
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled %s: %v, want context.Canceled", op, err)
			}

			begun := time.Now()
			if err := call(context.Background()); err != nil {
				t.Fatalf("%s called again at once after a cancel: %v", op, err)
			}
			if d := time.Since(begun); d > 4*time.Second {
				t.Fatalf("%s called again took %v: it waited for the abandoned statement", op, d)
			}
			if got, want := seenCount(t, pool), countHandled(t, store); got != want {
				t.Fatalf("read model has %d rows, want %d", got, want)
			}
		})
	}
}
