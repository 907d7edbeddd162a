package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// TestCloseDuringAStallAnswersTheQueueInGroups: Close writes what is
// queued before it returns, and a database that does not answer makes
// every group wait for the committer's bound (groupTimeout, shortened
// here to 2 s). The queue must still go in groups after Close, as it
// would before: written one append at a time, 20 queued appends held
// Close, and the last of their callers, for 20 bounds (with the default
// bound, 20 minutes; a full queue, days). Every caller is answered with
// ErrUnavailable, and Close returns within a few bounds.
func TestCloseDuringAStallAnswersTheQueueInGroups(t *testing.T) {
	t.Parallel()
	e := newStallEnv(t)
	postgres.SetGroupTimeout(e.a, 2*time.Second)
	ctx := context.Background()
	if _, err := e.a.Append(ctx, "close-warm", eventstore.NoStream, thing(0)); err != nil {
		t.Fatal(err)
	}
	// The warm-up's group has ended (its Append returns before the
	// committer counts the group done): the committer is idle.
	waitFor(t, 30*time.Second, func() bool { return postgres.GroupsInFlight(e.a) == 0 },
		func() string { return "the warm-up's group never ended" })
	e.proxy.SetStall(true)
	const queued = 20
	errs := make(chan error, queued+1)
	go func() { _, err := e.a.Append(ctx, "close-first", eventstore.NoStream, thing(1)); errs <- err }()
	// The only committer waits for the stalled group: the others queue.
	// (Queued is 0 before the first append is queued too: what tells that
	// the committer took it is its group in flight.)
	waitFor(t, 30*time.Second, func() bool { return postgres.GroupsInFlight(e.a) == 1 },
		func() string { return "the committer did not take the first append" })
	for i := range queued {
		go func() {
			_, err := e.a.Append(ctx, fmt.Sprintf("close-%d", i), eventstore.NoStream, thing(i))
			errs <- err
		}()
	}
	waitFor(t, 10*time.Second, func() bool { return e.a.Stats().Queued == queued },
		func() string { return fmt.Sprintf("%d appends queued, want %d", e.a.Stats().Queued, queued) })
	start := time.Now()
	e.a.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close took %v with %d appends queued and a 2 s group bound, want a few seconds", took, queued)
	}
	// Close has answered them all; their goroutines pass it on.
	for range queued + 1 {
		select {
		case err := <-errs:
			wantUnavailable(t, "queued Append during a stall", err)
		case <-time.After(5 * time.Second):
			t.Fatal("a queued append was not answered when Close returned")
		}
	}
}
