package projections_test

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// A rebuild from a position past the head of the log is refused: the new
// generation would start after events not yet appended, and once swapped
// in, the live runner would go on from there and never apply the events
// appended up to that position. Reprocess refuses to skip events for the
// same reason.
func TestRebuildFromPastTheHeadIsRefused(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 40, 10)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), seenProjection("seen", func(eventstore.Event) error { return nil }))
	runUntilCaughtUp(t, rt)
	head := headOf(t, store)
	past := eventstore.Pos(head.Commit + 20)
	if res, err := rt.Rebuild(context.Background(), "seen", projections.RebuildOptions{From: past}); err == nil {
		t.Fatalf("Rebuild from %s, past the head %s: %+v, want an error", past, head, res)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[0]; l.Generation != 1 || l.Rebuilding != 0 {
		t.Fatalf("after the refused rebuild: %+v, want generation 1 and no rebuild", l)
	}
	// The events appended up to that position are all applied.
	fill(t, store, 40, 10)
	runUntilCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("seen %d events, want %d", got, want)
	}
	// From the head itself is a rebuild of nothing so far, and allowed.
	if _, err := rt.Rebuild(context.Background(), "seen", projections.RebuildOptions{From: headOf(t, store)}); err != nil {
		t.Fatalf("Rebuild from the head: %v", err)
	}
}
