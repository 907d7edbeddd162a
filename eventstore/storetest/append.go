package storetest

import (
	"errors"
	"math"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

func (s *suite) testFeatures(t *testing.T) {
	st := s.newStore(t)
	if got, want := st.Features(), s.h.Features; got != want {
		t.Fatalf("store.Features() = %+v, Harness.Features = %+v", got, want)
	}
}

func (s *suite) testExpectedVersion(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)

	t.Run("NoStream", func(t *testing.T) {
		t.Parallel()
		res := mustAppend(t, st, "ev-nostream", eventstore.NoStream, added("a"), added("b"))
		if got, want := res.Version(), int64(2); got != want {
			t.Fatalf("version after append = %d, want %d", got, want)
		}
		_, err := st.Append(ctx, "ev-nostream", eventstore.NoStream, added("c"))
		wantConcurrency(t, err, "ev-nostream", 2)
	})
	t.Run("ExactZeroIsNoStream", func(t *testing.T) {
		t.Parallel()
		mustAppend(t, st, "ev-exact0", eventstore.Exact(0), added("a"))
		_, err := st.Append(ctx, "ev-exact0", eventstore.Exact(0), added("b"))
		wantConcurrency(t, err, "ev-exact0", 1)
	})
	t.Run("StreamExists", func(t *testing.T) {
		t.Parallel()
		_, err := st.Append(ctx, "ev-exists", eventstore.StreamExists, added("a"))
		wantConcurrency(t, err, "ev-exists", 0)
		if _, err := st.ReadStream(ctx, "ev-exists", 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream after refused StreamExists append: %v, want ErrStreamNotFound", err)
		}
		mustAppend(t, st, "ev-exists", eventstore.NoStream, added("a"))
		res := mustAppend(t, st, "ev-exists", eventstore.StreamExists, added("b"))
		if got, want := res.Version(), int64(2); got != want {
			t.Fatalf("version = %d, want %d", got, want)
		}
	})
	t.Run("Any", func(t *testing.T) {
		t.Parallel()
		mustAppend(t, st, "ev-any", eventstore.Any, added("a"))
		res := mustAppend(t, st, "ev-any", eventstore.Any, added("b"), added("c"))
		if got, want := res.Version(), int64(3); got != want {
			t.Fatalf("version = %d, want %d", got, want)
		}
		if got, want := res.Events[0].Version, int64(2); got != want {
			t.Fatalf("first event's version = %d, want %d", got, want)
		}
	})
	t.Run("Exact", func(t *testing.T) {
		t.Parallel()
		mustAppend(t, st, "ev-exact", eventstore.NoStream, added("a"))
		mustAppend(t, st, "ev-exact", eventstore.Exact(1), added("b"))
		for _, exp := range []eventstore.ExpectedVersion{eventstore.Exact(1), eventstore.Exact(3), eventstore.Exact(0), eventstore.Exact(1 << 40), eventstore.Exact(math.MaxInt64)} {
			_, err := st.Append(ctx, "ev-exact", exp, added("c"))
			wantConcurrency(t, err, "ev-exact", 2)
			var ce *eventstore.ConcurrencyError
			if errors.As(err, &ce) && ce.Expected != exp {
				t.Fatalf("ConcurrencyError.Expected = %s, want %s", ce.Expected, exp)
			}
		}
		for _, exp := range []eventstore.ExpectedVersion{eventstore.Exact(4), eventstore.Exact(math.MaxInt64)} {
			_, err := st.Append(ctx, "ev-exact-missing", exp, added("c"))
			wantConcurrency(t, err, "ev-exact-missing", 0)
		}
		res := mustAppend(t, st, "ev-exact", eventstore.Exact(2), added("c"))
		if got, want := res.Version(), int64(3); got != want {
			t.Fatalf("version = %d, want %d", got, want)
		}
		evs, err := st.ReadStream(ctx, "ev-exact", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3 {
			t.Fatalf("stream has %d events after refused appends, want 3", len(evs))
		}
	})
	t.Run("StreamsAreIndependent", func(t *testing.T) {
		t.Parallel()
		mustAppend(t, st, "ev-indep-1", eventstore.NoStream, added("a"), added("b"))
		res := mustAppend(t, st, "ev-indep-2", eventstore.NoStream, added("a"))
		if got, want := res.Version(), int64(1); got != want {
			t.Fatalf("version of a new stream = %d, want %d", got, want)
		}
	})
}

func (s *suite) testIdempotency(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)

	withID := func(e eventstore.Event) eventstore.Event {
		e.ID = uuid.New()
		return e
	}

	t.Run("GeneratesIDs", func(t *testing.T) {
		t.Parallel()
		res := mustAppend(t, st, "idem-gen", eventstore.NoStream, added("a"), added("b"))
		if res.Events[0].ID == uuid.Nil || res.Events[1].ID == uuid.Nil || res.Events[0].ID == res.Events[1].ID {
			t.Fatalf("generated ids %s, %s: want two distinct non-zero ids", res.Events[0].ID, res.Events[1].ID)
		}
		evs, err := st.ReadStream(ctx, "idem-gen", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadStream", evs, res.Events)
	})
	t.Run("SameIDSameContent", func(t *testing.T) {
		t.Parallel()
		e := withID(added("a"))
		first := mustAppend(t, st, "idem-same", eventstore.NoStream, e)
		// The retry uses the same expected version, which no longer holds:
		// the retry must still return the original result.
		again := mustAppend(t, st, "idem-same", eventstore.NoStream, e)
		sameEvents(t, "retried append", again.Events, first.Events)
		// Any other expected version is also a retry, not a new event.
		again = mustAppend(t, st, "idem-same", eventstore.Any, e)
		sameEvents(t, "retried append (Any)", again.Events, first.Events)
		evs, err := st.ReadStream(ctx, "idem-same", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 {
			t.Fatalf("stream has %d events after retries, want 1", len(evs))
		}
	})
	t.Run("SameContentDifferentSpelling", func(t *testing.T) {
		t.Parallel()
		e := withID(added("a"))
		e.Payload = []byte(`{"name":"a","quantity":10,"tags":["x","y"]}`)
		e.Meta.Extra = map[string]any{"trace": "t-1", "n": 1}
		first := mustAppend(t, st, "idem-spelling", eventstore.NoStream, e)
		// Same meaning: other key order, whitespace, number spelling.
		e.Payload = []byte(`{ "tags": [ "x", "y" ], "quantity": 10.0, "name": "a" }`)
		e.Meta.Extra = map[string]any{"n": 1.0, "trace": "t-1"}
		again := mustAppend(t, st, "idem-spelling", eventstore.Exact(0), e)
		sameEvents(t, "retried append", again.Events, first.Events)
		evs, err := st.ReadStream(ctx, "idem-spelling", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 {
			t.Fatalf("stream has %d events, want 1", len(evs))
		}
	})
	t.Run("WholeBatchRetried", func(t *testing.T) {
		t.Parallel()
		batch := []eventstore.Event{withID(added("a")), withID(renamed("b")), withID(added("c"))}
		first := mustAppend(t, st, "idem-batch", eventstore.NoStream, batch...)
		mustAppend(t, st, "idem-batch", eventstore.Exact(3), added("d"))
		again := mustAppend(t, st, "idem-batch", eventstore.NoStream, batch...)
		sameEvents(t, "retried batch", again.Events, first.Events)
		if got, want := again.Version(), int64(3); got != want {
			t.Fatalf("retried batch's Version() = %d, want the original %d", got, want)
		}
		evs, err := st.ReadStream(ctx, "idem-batch", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 4 {
			t.Fatalf("stream has %d events, want 4", len(evs))
		}
	})
	differ := []struct {
		name   string
		stream string
		change func(*eventstore.Event)
	}{
		{"Payload", "idem-diff-payload", func(e *eventstore.Event) { e.Payload = mustJSON(map[string]any{"name": "other"}) }},
		{"Type", "idem-diff-type", func(e *eventstore.Event) { e.Type = TypeRenamed }},
		{"Meta", "idem-diff-meta", func(e *eventstore.Event) { e.Meta.CorrelationID = "other" }},
		{"MetaExtra", "idem-diff-extra", func(e *eventstore.Event) { e.Meta.Extra = map[string]any{"k": "v"} }},
		{"Source", "idem-diff-source", func(e *eventstore.Event) { e.Source = "elsewhere" }},
		{"Target", "idem-diff-target", func(e *eventstore.Event) { e.Target = "elsewhere" }},
		{"Stream", "idem-diff-stream", nil},
	}
	for _, c := range differ {
		t.Run("SameIDDifferent"+c.name, func(t *testing.T) {
			t.Parallel()
			if c.change == nil && s.h.Features.PerStreamIDs {
				t.Skip("backend declares PerStreamIDs: the same id in another stream is a new event there")
			}
			e := withID(added("a"))
			first := mustAppend(t, st, c.stream, eventstore.NoStream, e)
			target := c.stream
			if c.change != nil {
				c.change(&e)
			} else {
				target = c.stream + "-other"
			}
			_, err := st.Append(ctx, target, eventstore.Any, e)
			if !errors.Is(err, eventstore.ErrDuplicateEvent) {
				t.Fatalf("same id, different %s: %v, want ErrDuplicateEvent", c.name, err)
			}
			var de *eventstore.DuplicateEventError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T): errors.As to *DuplicateEventError failed", err, err)
			}
			if de.ID != e.ID.String() || de.Stream != c.stream {
				t.Fatalf("DuplicateEventError id %s stream %q, want %s %q", de.ID, de.Stream, e.ID, c.stream)
			}
			evs, err := st.ReadStream(ctx, c.stream, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, "stream after refused duplicate", evs, first.Events)
			if c.change == nil {
				if _, err := st.ReadStream(ctx, target, 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
					t.Fatalf("ReadStream(%q) after refused duplicate: %v, want ErrStreamNotFound", target, err)
				}
			}
		})
	}
	t.Run("PartialRetryRefused", func(t *testing.T) {
		// A batch whose ids are only partly stored is not a retry of any
		// append: it is refused as a whole and writes nothing.
		t.Parallel()
		a := withID(added("a"))
		first := mustAppend(t, st, "idem-partial", eventstore.NoStream, a)
		// The error names the stored event, whichever side of the new one
		// it is on. EventStoreDB (PerStreamIDs) recognises a retry by its
		// first id only, so there a batch that starts with a new id is
		// written whole (docs/eventstoredb.md).
		batches := [][]eventstore.Event{{a, withID(added("b"))}, {withID(added("c")), a}}
		if s.h.Features.PerStreamIDs {
			batches = batches[:1]
		}
		for _, batch := range batches {
			_, err := st.Append(ctx, "idem-partial", eventstore.Any, batch...)
			if !errors.Is(err, eventstore.ErrDuplicateEvent) {
				t.Fatalf("batch with one stored and one new id: %v, want ErrDuplicateEvent", err)
			}
			var de *eventstore.DuplicateEventError
			if !errors.As(err, &de) || de.ID != a.ID.String() || de.Stream != "idem-partial" {
				t.Fatalf("partial retry: %v, want a DuplicateEventError naming the stored %s in idem-partial", err, a.ID)
			}
		}
		evs, err := st.ReadStream(ctx, "idem-partial", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "stream after refused partial retry", evs, first.Events)
	})
	t.Run("RetryLayout", func(t *testing.T) {
		// A retry sends stored events as they lie: consecutive, in order.
		// Any consecutive part of a stored append is a retry of that part;
		// the same events in another order, with a gap, or with a new
		// event after them are not the append that stored them, are
		// refused naming their first event, and write nothing
		// (eventstore.SameLayout).
		t.Parallel()
		const stream = "idem-layout"
		a, b, c := withID(added("a")), withID(renamed("b")), withID(added("c"))
		first := mustAppend(t, st, stream, eventstore.NoStream, a, b, c)
		stored := first.Events
		retries := []struct {
			name string
			exp  eventstore.ExpectedVersion
			evs  []eventstore.Event
			want []eventstore.Event
		}{
			{"prefix at the original version", eventstore.NoStream, []eventstore.Event{a, b}, stored[:2]},
			{"prefix, any", eventstore.Any, []eventstore.Event{a}, stored[:1]},
			{"suffix, any", eventstore.Any, []eventstore.Event{b, c}, stored[1:]},
			{"middle at its own version", eventstore.Exact(1), []eventstore.Event{b}, stored[1:2]},
		}
		for _, r := range retries {
			res, err := st.Append(ctx, stream, r.exp, r.evs...)
			if err != nil {
				t.Fatalf("retry of a %s: %v, want the stored events", r.name, err)
			}
			sameEvents(t, "retry of a "+r.name, res.Events, r.want)
		}
		d := withID(added("d"))
		refusals := []struct {
			name string
			exp  eventstore.ExpectedVersion
			evs  []eventstore.Event
		}{
			{"two swapped, any", eventstore.Any, []eventstore.Event{b, a}},
			{"two swapped, at the original version", eventstore.NoStream, []eventstore.Event{b, a}},
			{"reversed, any", eventstore.Any, []eventstore.Event{c, b, a}},
			{"reversed, at the original version", eventstore.NoStream, []eventstore.Event{c, b, a}},
			{"gap, any", eventstore.Any, []eventstore.Event{a, c}},
			{"gap, at the original version", eventstore.NoStream, []eventstore.Event{a, c}},
			{"superset, any", eventstore.Any, []eventstore.Event{a, b, c, d}},
			{"superset, at the original version", eventstore.NoStream, []eventstore.Event{a, b, c, d}},
		}
		for _, r := range refusals {
			_, err := st.Append(ctx, stream, r.exp, r.evs...)
			var de *eventstore.DuplicateEventError
			if !errors.Is(err, eventstore.ErrDuplicateEvent) || !errors.As(err, &de) {
				t.Fatalf("%s: %v, want a *DuplicateEventError", r.name, err)
			}
			if de.ID != r.evs[0].ID.String() || de.Stream != stream {
				t.Fatalf("%s: DuplicateEventError id %s stream %q, want the first event %s in %q", r.name, de.ID, de.Stream, r.evs[0].ID, stream)
			}
		}
		evs, err := st.ReadStream(ctx, stream, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "stream after refused retries", evs, stored)
	})
	t.Run("DuplicateIDInOneBatch", func(t *testing.T) {
		t.Parallel()
		a := withID(added("a"))
		_, err := st.Append(ctx, "idem-twice", eventstore.NoStream, a, a)
		wantValidation(t, err, 1, "/id", "unique-id")
		if _, err := st.ReadStream(ctx, "idem-twice", 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream after refused batch: %v, want ErrStreamNotFound", err)
		}
	})
}
