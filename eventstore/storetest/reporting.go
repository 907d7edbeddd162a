package storetest

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// testReporting checks eventstore.WriteReporter, which a server's metrics
// count written events by: an append reports that it wrote exactly when
// its events were not stored before it, whatever the backend. A store
// that is no WriteReporter skips it (its successes are counted as writes).
func (s *suite) testReporting(t *testing.T) {
	st := s.newStore(t)
	wr, ok := st.(eventstore.WriteReporter)
	if !ok {
		t.Skipf("%T is no eventstore.WriteReporter", st)
	}
	ctx := testContext(t)
	withID := func(e eventstore.Event) eventstore.Event {
		e.ID = uuid.New()
		return e
	}
	const stream = "report"
	written := 0
	appendReporting := func(what string, exp eventstore.ExpectedVersion, wantWrote bool, evs ...eventstore.Event) eventstore.AppendResult {
		t.Helper()
		res, wrote, err := wr.AppendReporting(ctx, stream, exp, evs...)
		if err != nil || wrote != wantWrote {
			t.Fatalf("%s: wrote %v, %v; want wrote %v", what, wrote, err, wantWrote)
		}
		if len(res.Events) != len(evs) {
			t.Fatalf("%s: %d events in the result, want %d", what, len(res.Events), len(evs))
		}
		if wrote {
			written += len(res.Events)
		}
		return res
	}
	refusedIn := func(stream, what string, exp eventstore.ExpectedVersion, want error, evs ...eventstore.Event) {
		t.Helper()
		res, wrote, err := wr.AppendReporting(ctx, stream, exp, evs...)
		if !errors.Is(err, want) || wrote || len(res.Events) != 0 {
			t.Fatalf("%s: wrote %v, %d events, %v; want %v, nothing written", what, wrote, len(res.Events), err, want)
		}
	}
	refused := func(what string, exp eventstore.ExpectedVersion, want error, evs ...eventstore.Event) {
		t.Helper()
		refusedIn(stream, what, exp, want, evs...)
	}

	a, b, c := withID(added("a")), withID(renamed("b")), withID(added("c"))
	first := appendReporting("first append", eventstore.NoStream, true, a, b, c)
	for _, r := range []struct {
		name string
		exp  eventstore.ExpectedVersion
		evs  []eventstore.Event
		want []eventstore.Event
	}{
		{"retry at the original version", eventstore.NoStream, []eventstore.Event{a, b, c}, first.Events},
		{"retry, any", eventstore.Any, []eventstore.Event{a, b, c}, first.Events},
		{"retry, stream exists", eventstore.StreamExists, []eventstore.Event{a, b, c}, first.Events},
		{"retry of a prefix", eventstore.NoStream, []eventstore.Event{a, b}, first.Events[:2]},
		{"retry of a suffix, any", eventstore.Any, []eventstore.Event{b, c}, first.Events[1:]},
		{"retry of the middle at its version", eventstore.Exact(1), []eventstore.Event{b}, first.Events[1:2]},
	} {
		res := appendReporting(r.name, r.exp, false, r.evs...)
		sameEvents(t, r.name, res.Events, r.want)
	}
	d := withID(added("d"))
	appendReporting("next append", eventstore.Exact(3), true, d)
	appendReporting("retry after the stream grew", eventstore.NoStream, false, a, b, c)
	appendReporting("retry of the next append", eventstore.Exact(3), false, d)
	appendReporting("an append without ids", eventstore.Any, true, added("e"), added("f"))

	refused("conflict", eventstore.Exact(1), eventstore.ErrConcurrency, withID(added("g")))
	refusedIn(stream+"-none", "stream exists on no stream", eventstore.StreamExists, eventstore.ErrConcurrency, withID(added("g")))
	other := a
	other.Payload = mustJSON(map[string]any{"name": "other"})
	refused("same id, other content", eventstore.Any, eventstore.ErrDuplicateEvent, other)
	refused("stored and new ids", eventstore.Any, eventstore.ErrDuplicateEvent, a, withID(added("h")))
	refused("stored ids swapped", eventstore.NoStream, eventstore.ErrDuplicateEvent, b, a)
	bad := withID(added("i"))
	bad.Type = "no.such.type"
	refused("invalid", eventstore.Any, eventstore.ErrValidation, bad)

	// What the appends reported as written is what the log holds.
	evs, err := st.ReadStream(ctx, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != written {
		t.Fatalf("appends reported %d events written; the stream holds %d", written, len(evs))
	}
}
