package esdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
)

// Streams deleted in EventStoreDB (eventstream never deletes; an operator
// may). The stand-in deletes as EventStoreDB 22.x to 24.x do: see
// esdbtest/delete.go for the rules and their sources.

// nextEvents takes events from sub until it has n, or fails after a while.
func nextEvents(t *testing.T, sub eventstore.Subscription, n int) []eventstore.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out []eventstore.Event
	for len(out) < n {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, evs...)
	}
	return out
}

// A tombstoned stream reads as ErrStreamNotFound that is also
// esdb.ErrDeleted, and every append to it, whatever its expected version,
// is esdb.ErrDeleted: not a conflict (stream_exists used to be one, as the
// backend's own check read the stream as missing), not ErrUnavailable.
// ReadAll, Head and Subscribe go past the tombstone record, and still
// return the stream's events (EventStoreDB removes them from $all only
// when it scavenges).
func TestStandIn_TombstonedStream(t *testing.T) {
	t.Parallel()
	for _, ns := range []string{"", "ns-"} {
		t.Run("namespace="+ns, func(t *testing.T) {
			t.Parallel()
			st, srv := standInStore(t, registry(t), nil, esdb.WithNamespace(ns))
			c := rawClient(t, srv)
			ctx := t.Context()
			gone := mustAppend(t, st, "gone", eventstore.NoStream, added("a"), added("b"), added("c"))
			other := mustAppend(t, st, "other", eventstore.NoStream, added("d"))
			if _, err := c.TombstoneStream(ctx, ns+"gone", client.TombstoneStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
				t.Fatal(err)
			}

			for _, from := range []int64{1, 2, 4} {
				evs, err := st.ReadStream(ctx, "gone", from, 0)
				if !errors.Is(err, eventstore.ErrStreamNotFound) || !errors.Is(err, esdb.ErrDeleted) || evs != nil {
					t.Fatalf("ReadStream(gone, %d): %d events, %v; want ErrStreamNotFound and esdb.ErrDeleted", from, len(evs), err)
				}
			}
			for _, exp := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.NoStream, eventstore.StreamExists, eventstore.Exact(0), eventstore.Exact(3), eventstore.Exact(7)} {
				_, err := st.Append(ctx, "gone", exp, added("x"))
				if !errors.Is(err, esdb.ErrDeleted) || errors.Is(err, eventstore.ErrConcurrency) || errors.Is(err, eventstore.ErrUnavailable) {
					t.Fatalf("Append(gone, %v): %v; want esdb.ErrDeleted only", exp, err)
				}
				if !strings.Contains(err.Error(), `"gone"`) {
					t.Fatalf("Append(gone, %v): %v does not name the stream", exp, err)
				}
			}

			want := ids(append(append([]eventstore.Event{}, gone.Events...), other.Events...))
			if got := ids(readAll(t, st, eventstore.ReadAllOptions{})); got != want {
				t.Fatalf("ReadAll after the tombstone: %s, want %s", got, want)
			}
			head, err := st.Head(ctx)
			if err != nil || head != other.Events[0].Position {
				t.Fatalf("Head after the tombstone: %v, %v; want %v (the last event, not the tombstone)", head, err, other.Events[0].Position)
			}

			sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if got := ids(nextEvents(t, sub, 4)); got != want {
				t.Fatalf("Subscribe from the start: %s, want %s", got, want)
			}
			live := mustAppend(t, st, "other", eventstore.Exact(1), added("e"))
			if got, want := ids(nextEvents(t, sub, 1)), ids(live.Events); got != want {
				t.Fatalf("Subscribe, live after the tombstone: %s, want %s", got, want)
			}
		})
	}
}

// A soft-deleted stream (EventStoreDB's Delete: $tb at its largest value)
// reads as ErrStreamNotFound, not esdb.ErrDeleted: EventStoreDB answers it
// as a stream that does not exist, and writes to it recreate it. An append
// that expects the stream to exist is a conflict at version 0, as for a
// missing stream. An append expecting no stream (what an aggregate that
// found no stream sends), or the version the stream had, recreates it:
// EventStoreDB numbers the new events after the deleted ones and hides
// those, so the AppendResult says versions 3 on, and ReadStream from
// version 1 is esdb.ErrTruncated from then on. ReadAll still has the
// deleted events.
func TestStandIn_SoftDeletedStream(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil, esdb.WithNamespace("ns-"))
	c := rawClient(t, srv)
	ctx := t.Context()
	del := func(stream string) {
		t.Helper()
		if _, err := c.DeleteStream(ctx, "ns-"+stream, client.DeleteStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
			t.Fatal(err)
		}
	}
	var before []eventstore.Event
	for _, s := range []string{"nostream", "exact", "any"} {
		before = append(before, mustAppend(t, st, s, eventstore.NoStream, added("a"), added("b")).Events...)
		del(s)
	}

	for _, from := range []int64{1, 3} {
		evs, err := st.ReadStream(ctx, "nostream", from, 0)
		if !errors.Is(err, eventstore.ErrStreamNotFound) || errors.Is(err, esdb.ErrDeleted) || errors.Is(err, esdb.ErrTruncated) || evs != nil {
			t.Fatalf("ReadStream(nostream, %d): %d events, %v; want ErrStreamNotFound only", from, len(evs), err)
		}
	}
	var ce *eventstore.ConcurrencyError
	if _, err := st.Append(ctx, "nostream", eventstore.StreamExists, added("x")); !errors.As(err, &ce) || ce.Actual != 0 {
		t.Fatalf("Append(nostream, StreamExists): %v; want a conflict at version 0", err)
	}
	if _, err := st.Append(ctx, "nostream", eventstore.Exact(1), added("x")); !errors.As(err, &ce) || ce.Actual != 2 {
		t.Fatalf("Append(nostream, Exact(1)): %v; want a conflict at version 2 (the deleted stream's last)", err)
	}

	for _, tc := range []struct {
		stream string
		exp    eventstore.ExpectedVersion
	}{
		{"nostream", eventstore.Exact(0)},
		{"exact", eventstore.Exact(2)},
		{"any", eventstore.Any},
	} {
		res, err := st.Append(ctx, tc.stream, tc.exp, added("c"), added("d"))
		if err != nil {
			t.Fatalf("Append(%s, %v) to a soft-deleted stream: %v", tc.stream, tc.exp, err)
		}
		if res.Events[0].Version != 3 || res.Events[1].Version != 4 {
			t.Fatalf("Append(%s, %v) to a soft-deleted stream stored versions %d, %d; want 3, 4", tc.stream, tc.exp, res.Events[0].Version, res.Events[1].Version)
		}
		_, err = st.ReadStream(ctx, tc.stream, 1, 0)
		if !errors.Is(err, esdb.ErrTruncated) || !strings.Contains(err.Error(), "the first version the server still returns is 3") {
			t.Fatalf("ReadStream(%s, 1) after the recreation: %v; want ErrTruncated from version 3", tc.stream, err)
		}
		evs, err := st.ReadStream(ctx, tc.stream, 3, 0)
		if err != nil || ids(evs) != ids(res.Events) {
			t.Fatalf("ReadStream(%s, 3) after the recreation: %s, %v; want %s", tc.stream, ids(evs), err, ids(res.Events))
		}
		// A retry of the recreating append (same ids and content), with
		// any of the expected versions it was sent with, gets the
		// original result and writes nothing, as on every backend. With
		// no stream, EventStoreDB compares the ids from revision 0 (the
		// deleted events) and answers wrong expected version; the store
		// finds the ids where the server stores them, after the deleted
		// events (it used to report a conflict at version 4, and before
		// that ErrDuplicateEvent "with different content", for an
		// append whose events are stored as sent).
		retry := append([]eventstore.Event{}, res.Events...)
		for i := range retry {
			retry[i].Version, retry[i].Position = 0, eventstore.Position{}
		}
		again, wrote, err := st.AppendReporting(ctx, tc.stream, tc.exp, retry...)
		if err != nil || wrote || ids(again.Events) != ids(res.Events) || again.Events[0].Version != 3 || again.Events[1].Position != res.Events[1].Position {
			t.Fatalf("retry of Append(%s, %v) after the recreation: wrote %v, %v; want the original result, not written", tc.stream, tc.exp, wrote, err)
		}
		// The same ids in another order are no retry.
		if _, err := st.Append(ctx, tc.stream, tc.exp, retry[1], retry[0]); !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Fatalf("Append(%s, %v) of the recreating append's events swapped: %v, want ErrDuplicateEvent", tc.stream, tc.exp, err)
		}
		// Appending goes on from the new last version.
		if next := mustAppend(t, st, tc.stream, eventstore.Exact(4), added("e")); next.Events[0].Version != 5 {
			t.Fatalf("Append(%s, Exact(4)) after the recreation: version %d, want 5", tc.stream, next.Events[0].Version)
		}
	}

	perStream := map[string]int{}
	for _, e := range readAll(t, st, eventstore.ReadAllOptions{}) {
		perStream[e.Stream]++
	}
	if perStream["nostream"] != 5 || perStream["exact"] != 5 || perStream["any"] != 5 {
		t.Fatalf("ReadAll holds %v events per stream, want 5 each (2 deleted, 3 after)", perStream)
	}
	if got := ids(readAll(t, st, eventstore.ReadAllOptions{Limit: 6}))[:len(ids(before))]; got != ids(before) {
		t.Fatalf("ReadAll starts with %s, want the deleted events %s", got, ids(before))
	}
}
