package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// testEdges covers edge cases of the contract that the other cases leave
// out: refusals a subscriber must never see, retries at an expected
// version that matches nothing, page sizes at the top of int, timestamps
// of every read path, and events that the caller may change without
// changing the store.
func (s *suite) testEdges(t *testing.T) {
	t.Run("RefusalsInvisibleToSubscriber", func(t *testing.T) {
		// A refused append (validation, concurrency, a reused id) writes
		// nothing, so a live subscriber sees nothing of it: its first
		// event is the valid append that follows.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		a := added("a")
		a.ID = uuid.New()
		seed := mustAppend(t, st, "refused", eventstore.NoStream, a)
		sub := subscribe(t, st, eventstore.SubscribeOptions{After: seed.Position()})
		bad := added("x")
		bad.Payload = []byte(`{"quantity":1}`)
		_, err := st.Append(ctx, "refused", eventstore.Any, added("ok"), bad)
		wantValidation(t, err, 1, "/payload/name", "required")
		_, err = st.Append(ctx, "refused-new", eventstore.Any, added("ok"), bad)
		wantValidation(t, err, 1, "/payload/name", "required")
		_, err = st.Append(ctx, "refused", eventstore.NoStream, added("late"))
		wantConcurrency(t, err, "refused", 1)
		other := a
		other.Payload = mustJSON(map[string]any{"name": "other"})
		if _, err := st.Append(ctx, "refused", eventstore.Any, other); !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Fatalf("reused id with other content: %v, want ErrDuplicateEvent", err)
		}
		nothingMore(t, sub)
		res := mustAppend(t, st, "refused", eventstore.Exact(1), added("b"))
		sameEvents(t, "first event after the refusals", collect(t, sub, 1, 0), res.Events)
		nothingMore(t, sub)
	})
	t.Run("RetryAtAnyExpectedVersion", func(t *testing.T) {
		// A retry returns the original result whatever its expected
		// version says, even one the stream has never been at, or one
		// that holds now (the stream has moved on to it).
		if s.h.Features.PerStreamIDs {
			t.Skip("backend declares PerStreamIDs: its retries follow docs/eventstoredb.md")
		}
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		a, b := added("a"), renamed("b")
		a.ID, b.ID = uuid.New(), uuid.New()
		first := mustAppend(t, st, "retry-exp", eventstore.NoStream, a, b)
		mustAppend(t, st, "retry-exp", eventstore.Any, added("c"))
		for _, exp := range []eventstore.ExpectedVersion{
			eventstore.NoStream, eventstore.StreamExists, eventstore.Any,
			eventstore.Exact(0), eventstore.Exact(2), eventstore.Exact(3), eventstore.Exact(1 << 40),
		} {
			res, err := st.Append(ctx, "retry-exp", exp, a, b)
			if err != nil {
				t.Fatalf("retry at expected version %s: %v, want the original result", exp, err)
			}
			sameEvents(t, "retry at expected version "+exp.String(), res.Events, first.Events)
		}
		evs, err := st.ReadStream(ctx, "retry-exp", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3 {
			t.Fatalf("stream has %d events after retries, want 3", len(evs))
		}
	})
	t.Run("HugePageSizes", func(t *testing.T) {
		// A page size at the top of int is a large page, not an overflow.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		stored := fill(t, st, "huge", 2, 5)
		evs, err := st.ReadStream(ctx, "huge-0", 0, math.MaxInt)
		if err != nil {
			t.Fatalf("ReadStream(limit MaxInt): %v", err)
		}
		sameEvents(t, "ReadStream(limit MaxInt)", evs, []eventstore.Event{stored[0], stored[2], stored[4]})
		p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Limit: math.MaxInt})
		if err != nil {
			t.Fatalf("ReadAll(Limit MaxInt): %v", err)
		}
		sameEvents(t, "ReadAll(Limit MaxInt)", p.Events, stored)
		if !p.End {
			t.Fatal("ReadAll(Limit MaxInt) of the whole log: End = false")
		}
	})
	t.Run("TimestampsOfEveryRead", func(t *testing.T) {
		// Every read path gives the timestamp the append returned, in UTC.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		res := mustAppend(t, st, "ts-reads", eventstore.NoStream, added("a"), added("b"))
		check := func(what string, evs []eventstore.Event) {
			t.Helper()
			sameEvents(t, what, evs, res.Events)
			for _, e := range evs {
				if e.Timestamp.Location() != time.UTC {
					t.Fatalf("%s: timestamp %v is in %v, want UTC", what, e.Timestamp, e.Timestamp.Location())
				}
			}
		}
		check("Append", res.Events)
		evs, err := st.ReadStream(ctx, "ts-reads", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		check("ReadStream", evs)
		check("ReadAll", readAll(t, st, eventstore.ReadAllOptions{}))
		check("ReadAll with a filter", readAll(t, st, eventstore.ReadAllOptions{Types: []string{TypeAdded}}))
		check("Subscribe", collect(t, subscribe(t, st, eventstore.SubscribeOptions{}), 2, 0))
	})
	t.Run("ReturnedEventsAreCopies", func(t *testing.T) {
		// What Append takes and what every call returns is the caller's:
		// changing it afterwards does not change what the store holds.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		nested := map[string]any{"a": "1"}
		e := added("orig")
		e.ID = uuid.New()
		e.Meta.Extra = map[string]any{"k": "v", "nested": nested}
		payload := e.Payload
		res := mustAppend(t, st, "copies", eventstore.NoStream, e)
		want := mustAppend(t, st, "copies", eventstore.NoStream, e).Events // a retry: as stored
		// The caller changes what it sent and what it got back.
		payload[len(payload)-2] = 'X'
		e.Meta.Extra["k"] = "changed"
		nested["a"] = "changed"
		mutate := func(evs []eventstore.Event) {
			for i := range evs {
				for j := range evs[i].Payload {
					evs[i].Payload[j] = ' '
				}
				if evs[i].Meta.Extra != nil {
					evs[i].Meta.Extra["k"] = "changed"
					if m, ok := evs[i].Meta.Extra["nested"].(map[string]any); ok {
						m["a"] = "changed"
					}
				}
			}
		}
		mutate(res.Events)
		mustAppend(t, st, "copies", eventstore.Any, added("second"))
		check := func(what string) {
			t.Helper()
			evs, err := st.ReadStream(ctx, "copies", 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, what, evs, want)
			if got := evs[0].Meta.Extra["k"]; got != "v" {
				t.Fatalf("%s: meta k = %v, want v", what, got)
			}
			if m, _ := evs[0].Meta.Extra["nested"].(map[string]any); m["a"] != "1" {
				t.Fatalf("%s: meta nested = %v, want a: 1", what, evs[0].Meta.Extra["nested"])
			}
		}
		check("after changing the appended event and the append's result")
		evs, err := st.ReadStream(ctx, "copies", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		mutate(evs)
		check("after changing ReadStream's events")
		p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mutate(p.Events)
		check("after changing ReadAll's events")
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		mutate(collect(t, sub, 2, 0))
		check("after changing a subscription's events")
		again, err := st.Append(ctx, "copies", eventstore.Any, func() eventstore.Event {
			r := added("orig")
			r.ID = e.ID
			r.Meta.Extra = map[string]any{"k": "v", "nested": map[string]any{"a": "1"}}
			return r
		}())
		if err != nil {
			t.Fatalf("retry after the caller changed its copies: %v", err)
		}
		sameEvents(t, "retry", again.Events, want)
		mutate(again.Events)
		check("after changing a retry's result")
	})
	t.Run("ConcurrentRetries", func(t *testing.T) {
		// The same new append sent by several clients at once (a retry
		// racing the original) is written once; every sender gets that
		// one result, none a conflict or a duplicate.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		for round := range 5 {
			stream := fmt.Sprintf("race-retry-%d", round)
			a, b := added("a"), renamed("b")
			a.ID, b.ID = uuid.New(), uuid.New()
			const senders = 8
			results := make([]eventstore.AppendResult, senders)
			errs := make([]error, senders)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range senders {
				wg.Go(func() {
					<-start
					results[i], errs[i] = st.Append(ctx, stream, eventstore.NoStream, a, b)
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: sender %d of the same append: %v, want the one result", round, i, err)
				}
				sameEvents(t, fmt.Sprintf("round %d: sender %d", round, i), results[i].Events, results[0].Events)
			}
			evs, err := st.ReadStream(ctx, stream, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, "stream after racing retries", evs, results[0].Events)
		}
	})
	t.Run("SlowConsumer", func(t *testing.T) {
		// A subscriber that does not call Next while much is appended
		// still gets every event once, in order, when it reads on.
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{BatchSize: 7})
		first := mustAppend(t, st, "slow", eventstore.NoStream, added("first"))
		sameEvents(t, "first event", collect(t, sub, 1, 7), first.Events)
		var want []eventstore.Event
		for i := range 60 {
			batch := make([]eventstore.Event, 1+i%5)
			for j := range batch {
				batch[j] = added(fmt.Sprintf("e%d-%d", i, j))
			}
			want = append(want, mustAppend(t, st, fmt.Sprintf("slow-%d", i%4), eventstore.Any, batch...).Events...)
		}
		got := collect(t, sub, len(want), 7)
		sameEvents(t, "events appended while the subscriber was away", got, want)
		nothingMore(t, sub)
	})
	t.Run("CancelledContext", func(t *testing.T) {
		// A call whose context has ended returns the context's error.
		t.Parallel()
		st := s.newStore(t)
		mustAppend(t, st, "cancelled", eventstore.NoStream, added("a"))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := st.Append(ctx, "cancelled", eventstore.Any, added("b")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Append with a cancelled context: %v, want context.Canceled", err)
		}
		if _, err := st.ReadStream(ctx, "cancelled", 0, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("ReadStream with a cancelled context: %v, want context.Canceled", err)
		}
		if _, err := st.ReadAll(ctx, eventstore.ReadAllOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("ReadAll with a cancelled context: %v, want context.Canceled", err)
		}
		if _, err := st.Head(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Head with a cancelled context: %v, want context.Canceled", err)
		}
		sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{})
		if err == nil {
			sub.Close()
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe with a cancelled context: %v, want context.Canceled", err)
		}
	})
	t.Run("StreamIDsCompareByBytes", func(t *testing.T) {
		// Stream ids are equal only when their bytes are: no case
		// folding, Unicode normalisation or trimming of spaces.
		t.Parallel()
		st := s.newStore(t)
		ctx := testContext(t)
		ids := []string{"caf\u00e9", "cafe\u0301", "CAF\u00c9", "caf\u00e9 ", " caf\u00e9", "caf\u00e9\t"}
		want := map[string][]eventstore.Event{}
		for _, id := range ids {
			want[id] = mustAppend(t, st, id, eventstore.NoStream, added(id)).Events
		}
		for _, id := range ids {
			evs, err := st.ReadStream(ctx, id, 0, 0)
			if err != nil {
				t.Fatalf("ReadStream(%q): %v", id, err)
			}
			sameEvents(t, fmt.Sprintf("ReadStream(%q)", id), evs, want[id])
		}
	})
}
