package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// The one-by-one fallback of Copy and Import (appendOrOneByOne): the target
// refuses a run as a whole because it holds part of it already, and the
// run's events go one at a time, each an idempotent retry or a new write;
// or the target's stream has diverged, and the copy stops there. Each case
// runs into PostgreSQL and into the memory store, from a memory source.
//
// The source's log, in order, is four runs (one stream, consecutive
// versions, one append of Import each):
//
//	before  v1..3
//	fb      v1..8   the run under test
//	after   v1..3
//	fb      v9..10  (a run of its own: "after" comes between)
const (
	fbStream  = "fb"
	fbRunLen  = 8
	fbRuns    = 4  // runs a clean copy appends
	fbPrefix  = 3  // events of the run an interrupted copy stored
	fbEvents  = 16 // events in the source
	fbRunHead = 3  // index of the run's first event in the source's log
)

type fallbackTarget struct {
	name string
	open func(t *testing.T, reg *schemas.Registry) eventstore.Store
}

var fallbackTargets = []fallbackTarget{
	{"postgres", func(t *testing.T, reg *schemas.Registry) eventstore.Store {
		st, err := postgres.New(t.Context(), pgtest.Pool(t), reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"memory", func(t *testing.T, reg *schemas.Registry) eventstore.Store { return memStore(t, reg) }},
}

// fallbackSource writes the source's log (above) and returns it as read.
func fallbackSource(t *testing.T, reg *schemas.Registry) (eventstore.Store, []eventstore.Event) {
	t.Helper()
	src := memStore(t, reg)
	i := 0
	batch := func(n int) []eventstore.Event {
		evs := make([]eventstore.Event, n)
		for j := range evs {
			evs[j] = copyEvent(fmt.Sprint("fb", i), i)
			i++
		}
		return evs
	}
	for _, a := range []struct {
		stream string
		n      int
	}{{"before", 3}, {fbStream, fbRunLen}, {"after", 3}, {fbStream, 2}} {
		if _, err := src.Append(t.Context(), a.stream, eventstore.Any, batch(a.n)...); err != nil {
			t.Fatal(err)
		}
	}
	log := readLog(t, src)
	if len(log) != fbEvents || log[fbRunHead].Stream != fbStream || log[fbRunHead].Version != 1 ||
		log[fbRunHead+fbRunLen-1].Version != fbRunLen || log[fbRunHead+fbRunLen].Stream != "after" {
		t.Fatalf("the source's log is not the one the test describes: %d events", len(log))
	}
	return src, log
}

// otherEvent is a valid event the source does not have.
func otherEvent(i int) eventstore.Event {
	e := copyEvent(fmt.Sprint("other", i), 100+i)
	e.Type, e.Payload, e.Meta.SchemaVersion, e.Target, e.Meta.Extra = copyEvent("", 0).Type,
		json.RawMessage(fmt.Sprintf(`{"name":"other %d","quantity":%d}`, i, i)), 1, "", nil
	return e
}

// exactlyOnce fails unless every id of the target's log is there once.
func exactlyOnce(t *testing.T, log []eventstore.Event) {
	t.Helper()
	seen := map[uuid.UUID]bool{}
	for _, e := range log {
		if seen[e.ID] {
			t.Fatalf("event %s (%s@%d) is stored twice", e.ID, e.Stream, e.Version)
		}
		seen[e.ID] = true
	}
}

// An interrupted copy stored the events before the run and the first
// fbPrefix events of the run (the same events: ids and content). Copying
// again completes the log: the run is refused as a whole, its stored
// events are appended one by one (retries), the rest as one append; every
// event is stored once, at its version, in the source's order.
func TestCopy_FallbackCompletesAStoredPrefixOfARun(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	for _, target := range fallbackTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			src, want := fallbackSource(t, reg)

			// The earlier, interrupted copy.
			dst := target.open(t, reg)
			if n, err := eventstore.Import(ctx, dst, want[:fbRunHead+fbPrefix], 0); err != nil || n != 2 {
				t.Fatalf("interrupted copy: %d appends, %v; want 2 (the first run, then the prefix of the second)", n, err)
			}

			// The whole run as one append: refused, with the error that
			// sends it down the fallback.
			run := want[fbRunHead : fbRunHead+fbRunLen]
			_, err := dst.Append(ctx, fbStream, eventstore.Exact(0), run...)
			if !errors.Is(err, eventstore.ErrDuplicateEvent) && !errors.Is(err, eventstore.ErrConcurrency) {
				t.Fatalf("the whole run onto its stored prefix: %v, want ErrDuplicateEvent or ErrConcurrency", err)
			}
			t.Logf("the whole run is refused with: %v", err)

			p, err := eventstore.Copy(ctx, src, dst, eventstore.CopyOptions{})
			if err != nil {
				t.Fatalf("copy over a target holding part of a run: %v", err)
			}
			got := readLog(t, dst)
			sameLog(t, "target", got, want)
			exactlyOnce(t, got)
			if p.Events != fbEvents || p.Position != want[len(want)-1].Position {
				t.Errorf("progress %+v, want %d events up to %v", p, fbEvents, want[len(want)-1].Position)
			}
			// One append per run, plus one per stored event of the refused
			// run, and one for its rest.
			if p.Appends != fbRuns+fbPrefix+1 {
				t.Errorf("%d appends, want %d: %d runs, the refused run's %d stored events one by one, and its rest", p.Appends, fbRuns+fbPrefix+1, fbRuns, fbPrefix)
			}

			// Once complete, a copy again writes nothing and goes without
			// the fallback.
			p, err = eventstore.Copy(ctx, src, dst, eventstore.CopyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Appends != fbRuns {
				t.Errorf("a copy onto a complete target sent %d appends, want %d", p.Appends, fbRuns)
			}
			sameLog(t, "target after copying again", readLog(t, dst), want)
		})
	}
}

// The target's stream fb holds other events than the source's where the
// run goes, in three ways. The copy fails on the run: the error names the
// stream and matches ErrConcurrency (other events at those versions) or
// ErrDuplicateEvent (an id of the run stored with other content), and
// nothing after the failing event is written, in that stream or in the
// rest of the log.
func TestCopy_FallbackStopsAtADivergedRun(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	cases := []struct {
		name string
		// prepare writes the target's diverged state (after the run before
		// fb is copied) and returns fb's stored events.
		prepare func(t *testing.T, dst eventstore.Store, run []eventstore.Event) []eventstore.Event
		want    error
		// appends: the copy's appends to fail (the first run, the refused
		// run, then its stored events one by one, then the rest, or the
		// stored event that differs).
		appends int64
		// version in the error: where the target holds other events.
		version int64
	}{
		{
			name: "OtherEventsAtTheRunsVersions",
			prepare: func(t *testing.T, dst eventstore.Store, run []eventstore.Event) []eventstore.Event {
				res, err := dst.Append(t.Context(), fbStream, eventstore.NoStream, otherEvent(1), otherEvent(2), otherEvent(3))
				if err != nil {
					t.Fatal(err)
				}
				return res.Events
			},
			want: eventstore.ErrConcurrency, appends: 1 + 1, version: 1,
		},
		{
			name: "StoredPrefixThenAnotherEvent",
			prepare: func(t *testing.T, dst eventstore.Store, run []eventstore.Event) []eventstore.Event {
				if _, err := eventstore.Import(t.Context(), dst, run[:fbPrefix], 0); err != nil {
					t.Fatal(err)
				}
				if _, err := dst.Append(t.Context(), fbStream, eventstore.Exact(fbPrefix), otherEvent(1)); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: eventstore.ErrConcurrency, appends: 1 + 1 + fbPrefix + 1, version: fbPrefix + 1,
		},
		{
			name: "StoredPrefixThenSameIDOtherContent",
			prepare: func(t *testing.T, dst eventstore.Store, run []eventstore.Event) []eventstore.Event {
				changed := run[fbPrefix]
				changed.Payload = json.RawMessage(`{"name":"changed","quantity":1}`)
				changed.Type, changed.Meta.SchemaVersion, changed.Target, changed.Meta.Extra = copyEvent("", 0).Type, 1, "", nil
				if _, err := eventstore.Import(t.Context(), dst, append(append([]eventstore.Event(nil), run[:fbPrefix]...), changed), 0); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: eventstore.ErrDuplicateEvent, appends: 1 + 1 + fbPrefix + 1, version: fbPrefix + 1,
		},
	}
	for _, target := range fallbackTargets {
		for _, c := range cases {
			t.Run(target.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				src, want := fallbackSource(t, reg)
				dst := target.open(t, reg)
				if _, err := eventstore.Import(ctx, dst, want[:fbRunHead], 0); err != nil {
					t.Fatal(err)
				}
				run := want[fbRunHead : fbRunHead+fbRunLen]
				c.prepare(t, dst, run)
				before := readLog(t, dst)

				p, err := eventstore.Copy(ctx, src, dst, eventstore.CopyOptions{})
				if !errors.Is(err, c.want) {
					t.Fatalf("copy onto a diverged run: %v, want %v", err, c.want)
				}
				other := eventstore.ErrDuplicateEvent
				if c.want == eventstore.ErrDuplicateEvent {
					other = eventstore.ErrConcurrency
				}
				if errors.Is(err, other) {
					t.Errorf("copy onto a diverged run: %v matches %v as well", err, other)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("stream %q", fbStream)) {
					t.Errorf("the error does not name the stream %q: %v", fbStream, err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("at version %d", c.version)) {
					t.Errorf("the error does not say the version %d: %v", c.version, err)
				}
				t.Logf("copy error: %v", err)
				if p.Appends != c.appends {
					t.Errorf("%d appends, want %d", p.Appends, c.appends)
				}
				// The page it failed in counts what the target holds of
				// it: the run before fb and, where stored, fb's prefix
				// (retries); a resumed copy starts after them.
				checkCopyProgress(t, p, nil, dst, want)

				// Nothing written after the failing event: the target's
				// log is what it was (the retries wrote nothing).
				after := readLog(t, dst)
				if len(after) != len(before) {
					t.Fatalf("the failed copy left %d events, the target had %d", len(after), len(before))
				}
				for i := range before {
					if after[i].ID != before[i].ID || after[i].Version != before[i].Version || after[i].Stream != before[i].Stream {
						t.Fatalf("event %d: %s %s@%d after the copy, %s %s@%d before", i,
							after[i].ID, after[i].Stream, after[i].Version, before[i].ID, before[i].Stream, before[i].Version)
					}
				}
				if _, err := dst.ReadStream(ctx, "after", 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
					t.Errorf("the run after the diverged one: %v, want ErrStreamNotFound", err)
				}
				exactlyOnce(t, after)
			})
		}
	}
}

// Import, as Copy's building block, reports its appends on failure too,
// and stops at the diverged event of a run it falls back on: events of the
// run before it are acknowledged retries, none after it is sent.
func TestImport_FallbackReportsAppendsAndStops(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	for _, target := range fallbackTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			_, want := fallbackSource(t, reg)
			run := want[fbRunHead : fbRunHead+fbRunLen]
			dst := target.open(t, reg)
			if _, err := eventstore.Import(ctx, dst, run[:2], 0); err != nil {
				t.Fatal(err)
			}
			if _, err := dst.Append(ctx, fbStream, eventstore.Exact(2), otherEvent(7)); err != nil {
				t.Fatal(err)
			}
			// The run alone: refused whole, then 1 and 2 retried, 3..8
			// refused as one append.
			n, err := eventstore.Import(ctx, dst, run, 0)
			var ce *eventstore.ConcurrencyError
			if !errors.As(err, &ce) || ce.Actual != 3 || ce.Stream != fbStream {
				t.Fatalf("import onto a run diverged at version 3: %v, want a ConcurrencyError of %s at version 3", err, fbStream)
			}
			if n != 1+3 {
				t.Errorf("%d appends, want 4: the run, events 1 and 2, then the rest", n)
			}
			got, err := dst.ReadStream(ctx, fbStream, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0].ID != run[0].ID || got[1].ID != run[1].ID || got[2].ID == run[2].ID {
				t.Fatalf("%s after the failed import: %d events", fbStream, len(got))
			}
		})
	}
}

// A run the target holds none of is one append, whole or not at all: the
// fallback is for a run an interrupted import stored the head of. The
// target's log holds, in another stream, an event with the id of the
// run's fourth event: the run is refused, and none of it is written.
// Before, the refusal sent the run one event at a time, and the three
// events before the duplicate were written, each alone.
func TestImport_RunTheTargetHoldsNoneOfIsAllOrNothing(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	for _, target := range fallbackTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			_, want := fallbackSource(t, reg)
			run := want[fbRunHead : fbRunHead+fbRunLen]
			dst := target.open(t, reg)
			taken := otherEvent(1)
			taken.ID = run[3].ID
			if _, err := dst.Append(ctx, "elsewhere", eventstore.NoStream, taken); err != nil {
				t.Fatal(err)
			}
			n, err := eventstore.Import(ctx, dst, run, 0)
			if !errors.Is(err, eventstore.ErrDuplicateEvent) {
				t.Fatalf("import of a run whose fourth id is taken: %v, want ErrDuplicateEvent", err)
			}
			if got, err := dst.ReadStream(ctx, fbStream, 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("the refused run left %d events of %s (%v), want none", len(got), fbStream, err)
			}
			if n != 1 {
				t.Errorf("%d appends, want 1: the run, refused", n)
			}
		})
	}
}
