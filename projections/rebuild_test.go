package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// A StopOnError projection whose rebuild meets an event it cannot apply
// stops the rebuild, not the live projection: the live runner keeps
// applying new events to the generation readers see, and the rebuild
// resumes from before the event once the handler is fixed.
func TestRebuildFailureLeavesTheLiveProjectionRunning(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 200, 20)
	page, err := store.ReadAll(context.Background(), eventstore.ReadAllOptions{Types: []string{"distribution.viewed"}})
	if err != nil {
		t.Fatal(err)
	}
	poison := page.Events[50]
	// The new code fails on an event the old code applied.
	var newCode atomic.Bool
	p := seenProjection("strict", func(e eventstore.Event) error {
		if newCode.Load() && e.ID == poison.ID {
			return errors.New("cannot apply any more")
		}
		return nil
	})
	p.StopOnError = true
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	run(t, rt)
	waitCaughtUp(t, rt)

	newCode.Store(true)
	_, err = rt.Rebuild(context.Background(), "strict", projections.RebuildOptions{})
	if err == nil || !containsAll(err.Error(), poison.ID.String(), "cannot apply any more") {
		t.Fatalf("Rebuild over the failing event: %v, want its error", err)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[0]; l.Stopped || l.Generation != 1 || l.Rebuilding != 2 || l.RebuildPosition.Compare(poison.Position) >= 0 {
		t.Fatalf("after the failed rebuild: %+v, want generation 1 running, generation 2 stopped before the event", l)
	}
	fill(t, store, 70, 7)
	waitCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("the live generation has %d events, want %d", got, want)
	}

	newCode.Store(false)
	res, err := rt.Rebuild(context.Background(), "strict", projections.RebuildOptions{})
	if err != nil || !res.Resumed || res.Generation != 2 {
		t.Fatalf("Rebuild after the fix: %+v %v, want generation 2 resumed", res, err)
	}
	waitCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("the rebuilt generation has %d events, want %d", got, want)
	}
}
