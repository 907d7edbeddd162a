package esdb_test

import (
	"errors"
	"testing"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// The EventStoreDB store tells an append that wrote from an idempotent
// retry (eventstore.WriteReporter), as the PostgreSQL and memory stores
// do: the server's metrics count a retry under outcome "retry", not as
// written events. EventStoreDB answers both with the same success
// message; the store tells them apart by the stream's version read before
// the append.
func TestStandIn_AppendReportingTellsRetriesFromWrites(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	var wr eventstore.WriteReporter
	if err := func() error {
		var s eventstore.Store = st
		var ok bool
		if wr, ok = s.(eventstore.WriteReporter); !ok {
			return errors.New("*esdb.Store is no eventstore.WriteReporter: its retries are counted as writes")
		}
		return nil
	}(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	withID := func(name string) eventstore.Event {
		e := added(name)
		e.ID = uuid.New()
		return e
	}
	report := func(what, stream string, exp eventstore.ExpectedVersion, wantWrote bool, evs ...eventstore.Event) eventstore.AppendResult {
		t.Helper()
		res, wrote, err := wr.AppendReporting(ctx, stream, exp, evs...)
		if err != nil || wrote != wantWrote {
			t.Fatalf("%s: wrote %v, %v; want wrote %v", what, wrote, err, wantWrote)
		}
		return res
	}

	a, b := withID("a"), withID("b")
	first := report("first append", "s", eventstore.NoStream, true, a, b)
	for _, exp := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any, eventstore.StreamExists} {
		again := report("retry with "+exp.String(), "s", exp, false, a, b)
		if ids(again.Events) != ids(first.Events) || again.Events[1].Position != first.Events[1].Position {
			t.Fatalf("retry with %v: %s, want the original result %s", exp, ids(again.Events), ids(first.Events))
		}
	}
	report("next append", "s", eventstore.Exact(2), true, withID("c"))
	report("retry after the stream grew", "s", eventstore.NoStream, false, a, b)
	report("retry of a part", "s", eventstore.Exact(1), false, b)
	if _, wrote, err := wr.AppendReporting(ctx, "s", eventstore.Exact(2), withID("d")); !errors.Is(err, eventstore.ErrConcurrency) || wrote {
		t.Fatalf("conflict: wrote %v, %v; want a conflict, not written", wrote, err)
	}
	if _, wrote, err := wr.AppendReporting(ctx, "s", eventstore.Any, a, withID("e")); !errors.Is(err, eventstore.ErrDuplicateEvent) || wrote {
		t.Fatalf("partial retry: wrote %v, %v; want ErrDuplicateEvent, not written", wrote, err)
	}

	// A soft-deleted stream reads as no stream: the append that recreates
	// it writes (its events go on after the deleted ones), its retry
	// does not.
	t.Run("soft-deleted stream", func(t *testing.T) {
		p, q := withID("p"), withID("q")
		report("append before the delete", "del", eventstore.NoStream, true, p)
		if _, err := rawClient(t, srv).DeleteStream(ctx, "del", client.DeleteStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
			t.Fatal(err)
		}
		if res := report("recreating append", "del", eventstore.Any, true, q); res.Events[0].Version != 2 {
			t.Fatalf("recreating append stored version %d, want 2", res.Events[0].Version)
		}
		report("retry of the recreating append", "del", eventstore.Any, false, q)
		report("retry of the recreating append at its version", "del", eventstore.Exact(1), false, q)
	})

	// An append the cluster timed out was written: its retry writes
	// nothing.
	t.Run("after a commit timeout", func(t *testing.T) {
		x := withID("x")
		srv.TimeOutAppends(1)
		if _, wrote, err := wr.AppendReporting(ctx, "timeout", eventstore.NoStream, x); !errors.Is(err, eventstore.ErrUnavailable) || wrote {
			t.Fatalf("timed out: wrote %v, %v; want ErrUnavailable, not written", wrote, err)
		}
		report("retry after the timeout", "timeout", eventstore.NoStream, false, x)
	})
}
