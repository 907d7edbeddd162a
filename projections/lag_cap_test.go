package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// gappedStore is a store that does not promise gapless positions (as
// EventStoreDB does not), so Lag counts the events after a position.
type gappedStore struct{ eventstore.Store }

func (s gappedStore) Features() eventstore.Features {
	f := s.Store.Features()
	f.GaplessPositions = false
	return f
}

// On a backend without gapless positions, LagEvents is counted up to
// 10,000 and never reported above that, wherever the projection stands
// (here on an event, which the first page read from it includes).
func TestLagEventsCountedUpToTheCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memoryStore(t)
	view := func() eventstore.Event {
		return ev("distribution.viewed", 1, "acme", map[string]any{"distribution_id": uuid.New(), "course_id": uuid.New(), "visitor_id": "v"})
	}
	for range 12 {
		evs := make([]eventstore.Event, 1000)
		for i := range evs {
			evs[i] = view()
		}
		appendTo(t, mem, "web-acme", evs...)
	}
	pool := database(t)
	rt := newRuntime(t, pool, gappedStore{mem}, fastConfig(), seenProjection("seen", func(eventstore.Event) error { return nil }))
	if _, err := pool.Exec(ctx, `UPDATE projection_checkpoints SET commit_position = 5, prepare_position = 5 WHERE projection = 'seen'`); err != nil {
		t.Fatal(err)
	}
	lag, err := rt.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lag[0].Position, eventstore.Pos(5); got != want {
		t.Fatalf("position %s, want %s", got, want)
	}
	if got, want := lag[0].LagEvents, int64(10_000); got != want {
		t.Fatalf("LagEvents %d, want %d (the cap: 11,995 events are after the position)", got, want)
	}
}
