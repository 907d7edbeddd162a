package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// TestGroupTimeoutIsUnavailable: a group the database does not answer
// (the network stalls mid-group) fails after the committer's own bound
// (groupTimeout, shortened here) with eventstore.ErrUnavailable, as the
// contract says of a failed network: its result is unknown, and a retry
// with the same ids is safe. It must not look like the caller's own
// deadline (context.DeadlineExceeded): the caller set none. Once the
// network heals, the retry stores the append once.
func TestGroupTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newStallEnv(t)
	postgres.SetGroupTimeout(e.a, time.Second)
	ctx := context.Background()
	if _, err := e.a.Append(ctx, "timeout-warm", eventstore.NoStream, thing(0)); err != nil {
		t.Fatal(err)
	}
	ev := thing(1)
	ev.ID = eventstore.NewID()
	e.proxy.SetStall(true)
	start := time.Now()
	_, err := e.a.Append(ctx, "timeout-1", eventstore.NoStream, ev)
	wantUnavailable(t, "Append whose group the database does not answer", err)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the append returned after %v, want about the 1 s group timeout", took)
	}
	e.proxy.SetStall(false)
	e.proxy.CutAll() // the stalled connection is of no use any more

	var res eventstore.AppendResult
	waitFor(t, 10*time.Second, func() bool {
		res, err = e.a.Append(ctx, "timeout-1", eventstore.NoStream, ev)
		return err == nil || !errors.Is(err, eventstore.ErrUnavailable)
	}, func() string { return "the store did not recover after the stall" })
	if err != nil || len(res.Events) != 1 || res.Events[0].ID != ev.ID || res.Events[0].Version != 1 {
		t.Fatalf("retry after the stall: %+v, %v; want the event at version 1", res, err)
	}
	if evs, err := e.b.ReadStream(ctx, "timeout-1", 1, 0); err != nil || len(evs) != 1 {
		t.Fatalf("timeout-1 holds %d events (%v), want 1", len(evs), err)
	}
}
