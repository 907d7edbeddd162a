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

// liveness bounds how long the suite waits for something that must happen
// (an event delivered, a blocked call returning). It is generous on
// purpose: it catches hangs, it does not measure speed.
const liveness = 30 * time.Second

func subscribe(t *testing.T, st eventstore.Store, opts eventstore.SubscribeOptions) eventstore.Subscription {
	t.Helper()
	sub, err := st.Subscribe(testContext(t), opts)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", opts, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// collect reads from sub until it has n events, checking batch sizes.
func collect(t *testing.T, sub eventstore.Subscription, n, batch int) []eventstore.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), liveness)
	defer cancel()
	var out []eventstore.Event
	for len(out) < n {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d events: %v", len(out), n, err)
		}
		if len(evs) == 0 {
			t.Fatalf("Next returned no events and no error")
		}
		if batch > 0 && len(evs) > batch {
			t.Fatalf("Next returned %d events, BatchSize is %d", len(evs), batch)
		}
		out = append(out, evs...)
	}
	if len(out) > n {
		t.Fatalf("subscription delivered %d events, want %d", len(out), n)
	}
	return out
}

// nothingMore fails if sub delivers anything within a short wait.
func nothingMore(t *testing.T, sub eventstore.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	evs, err := sub.Next(ctx)
	if len(evs) > 0 {
		t.Fatalf("subscription delivered %d unexpected events (first: %s at %v)", len(evs), evs[0].Type, evs[0].Position)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing to deliver: %v, want context.DeadlineExceeded", err)
	}
}

func (s *suite) testSubscribe(t *testing.T) {
	t.Run("CatchUpThenLive", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		stored := fill(t, st, "sub", 2, 5)
		sub := subscribe(t, st, eventstore.SubscribeOptions{BatchSize: 2})
		got := collect(t, sub, 5, 2)
		sameEvents(t, "catch-up", got, stored)

		var live []eventstore.Event
		done := make(chan []eventstore.Event, 1)
		go func() {
			// Next is already waiting when these are appended.
			time.Sleep(50 * time.Millisecond)
			for i := range 3 {
				res, err := st.Append(t.Context(), "sub-live", eventstore.Any, added(fmt.Sprint(i)))
				if err != nil {
					t.Error(err)
					break
				}
				live = append(live, res.Events...)
			}
			done <- live
		}()
		got = collect(t, sub, 3, 2)
		sameEvents(t, "live", got, <-done)
		checkLogOrder(t, s.h.Features.GaplessPositions, append(stored, got...))
		nothingMore(t, sub)

		// A batch appended in one call is delivered in order, in batches of at most BatchSize.
		res := mustAppend(t, st, "sub-live", eventstore.Any, added("x"), added("y"), added("z"))
		got = collect(t, sub, 3, 2)
		sameEvents(t, "live batch", got, res.Events)
	})
	t.Run("AfterIsExclusive", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		stored := fill(t, st, "after", 2, 6)
		sub := subscribe(t, st, eventstore.SubscribeOptions{After: stored[2].Position})
		got := collect(t, sub, 3, 0)
		sameEvents(t, "after the third event", got, stored[3:])
		nothingMore(t, sub)

		sub = subscribe(t, st, eventstore.SubscribeOptions{After: stored[5].Position})
		nothingMore(t, sub)
		res := mustAppend(t, st, "after", eventstore.Any, added("next"))
		got = collect(t, sub, 1, 0)
		sameEvents(t, "after the head", got, res.Events)
	})
	t.Run("AfterBeyondAnyPosition", func(t *testing.T) {
		if !s.h.Features.GaplessPositions {
			t.Skip("positions of this backend are its own; only gapless integer positions are checked")
		}
		t.Parallel()
		st := s.newStore(t)
		fill(t, st, "beyond", 2, 4)
		for _, after := range []uint64{1<<63 - 1, 1 << 63, math.MaxUint64} {
			nothingMore(t, subscribe(t, st, eventstore.SubscribeOptions{After: eventstore.Pos(after)}))
		}
	})
	t.Run("Types", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		stored := fill(t, st, "types", 2, 9)
		var want []eventstore.Event
		for _, e := range stored {
			if e.Type == TypeRenamed {
				want = append(want, e)
			}
		}
		sub := subscribe(t, st, eventstore.SubscribeOptions{Types: []string{TypeRenamed}, BatchSize: 2})
		got := collect(t, sub, len(want), 2)
		sameEvents(t, "catch-up of renamed", got, want)
		mustAppend(t, st, "types", eventstore.Any, added("skip"), added("skip"))
		res := mustAppend(t, st, "types", eventstore.Any, added("skip"), renamed("keep"))
		got = collect(t, sub, 1, 2)
		sameEvents(t, "live renamed", got, res.Events[1:])
		nothingMore(t, sub)
	})
	t.Run("EmptyStore", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		nothingMore(t, sub)
		res := mustAppend(t, st, "empty", eventstore.NoStream, added("first"))
		got := collect(t, sub, 1, 0)
		sameEvents(t, "first event", got, res.Events)
	})
	t.Run("TwoSubscribers", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		a := subscribe(t, st, eventstore.SubscribeOptions{})
		b := subscribe(t, st, eventstore.SubscribeOptions{})
		res := mustAppend(t, st, "two", eventstore.NoStream, added("1"), added("2"))
		sameEvents(t, "subscriber a", collect(t, a, 2, 0), res.Events)
		sameEvents(t, "subscriber b", collect(t, b, 2, 0), res.Events)
	})
}

// cancelWaitingNext calls Next with a context that is cancelled while it
// waits, and fails unless Next returns context.Canceled in time.
func cancelWaitingNext(t *testing.T, sub eventstore.Subscription, what string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // Next is waiting for events
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s, its context cancelled: %v, want context.Canceled", what, err)
		}
	case <-time.After(liveness):
		t.Fatalf("%s did not return after its context was cancelled", what)
	}
}

func (s *suite) testSubscribeCancel(t *testing.T) {
	t.Run("ContextCancel", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		cancelWaitingNext(t, sub, "Next")
		// The subscription is still usable with a live context.
		res := mustAppend(t, st, "cancel", eventstore.NoStream, added("a"))
		sameEvents(t, "after a cancelled Next", collect(t, sub, 1, 0), res.Events)
	})
	t.Run("CancelledBeforeNext", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		mustAppend(t, st, "cancel", eventstore.NoStream, added("a"))
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if evs, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next with a cancelled context: %d events, %v; want context.Canceled", len(evs), err)
		}
	})
	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		errc := make(chan error, 1)
		go func() {
			_, err := sub.Next(t.Context())
			errc <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, eventstore.ErrClosed) {
				t.Fatalf("blocked Next after Close: %v, want ErrClosed", err)
			}
		case <-time.After(liveness):
			t.Fatal("blocked Next did not return after Close")
		}
		mustAppend(t, st, "closed-sub", eventstore.NoStream, added("a"))
		if evs, err := sub.Next(t.Context()); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Next after Close: %d events, %v; want ErrClosed", len(evs), err)
		}
		sub.Close() // a second Close must not panic
	})
}

// testSubscribeShared covers a subscription used from several goroutines:
// each event is still delivered once, calls take turns (each batch is a
// run of consecutive events of the log: a call does not take events from
// under another, which a subscription that starts again from the last
// batch it handed out would then deliver twice), a call waiting for another still
// honours its own context, and concurrent Closes are safe. It also checks
// that a subscription keeps its own copy of the Types it was given.
func (s *suite) testSubscribeShared(t *testing.T) {
	t.Run("ConcurrentNext", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{BatchSize: 3})
		const appends, perAppend = 30, 2
		ctx, cancel := context.WithTimeout(t.Context(), liveness)
		defer cancel()
		var (
			mu      sync.Mutex
			seen    = map[uuid.UUID]int{}
			batches [][]eventstore.Event
			total   int
			wg      sync.WaitGroup
		)
		for range 4 {
			wg.Go(func() {
				for {
					evs, err := sub.Next(ctx)
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("Next: %v", err)
						}
						return
					}
					if len(evs) > 3 {
						t.Errorf("Next returned %d events, BatchSize is 3", len(evs))
					}
					mu.Lock()
					for _, e := range evs {
						seen[e.ID]++
					}
					batches = append(batches, evs)
					total += len(evs)
					if total >= appends*perAppend {
						cancel()
					}
					mu.Unlock()
				}
			})
		}
		var want []eventstore.Event
		for i := range appends {
			res := mustAppend(t, st, fmt.Sprintf("shared-%d", i%3), eventstore.Any, added(fmt.Sprint(i)), renamed(fmt.Sprint(i)))
			want = append(want, res.Events...)
		}
		wg.Wait()
		for _, e := range want {
			if n := seen[e.ID]; n != 1 {
				t.Errorf("event at %v delivered %d times, want once", e.Position, n)
			}
		}
		if total != len(want) {
			t.Fatalf("four goroutines sharing a subscription got %d events, want %d", total, len(want))
		}
		at := map[uuid.UUID]int{}
		for i, e := range want {
			at[e.ID] = i
		}
		for _, b := range batches {
			for i := 1; i < len(b); i++ {
				if at[b[i].ID] != at[b[i-1].ID]+1 {
					t.Fatalf("a batch holds events %d and then %d of the log: calls sharing the subscription took events from under each other", at[b[i-1].ID], at[b[i].ID])
				}
			}
		}
	})
	t.Run("WaitingNextCancelled", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		sub := subscribe(t, st, eventstore.SubscribeOptions{})
		first := make(chan []eventstore.Event, 1)
		go func() {
			evs, err := sub.Next(t.Context())
			if err != nil {
				t.Errorf("first Next: %v", err)
			}
			first <- evs
		}()
		time.Sleep(50 * time.Millisecond) // the first Next is waiting for events
		cancelWaitingNext(t, sub, "a Next called while another waits")
		res := mustAppend(t, st, "waiting", eventstore.NoStream, added("a"))
		select {
		case evs := <-first:
			sameEvents(t, "first Next", evs, res.Events)
		case <-time.After(liveness):
			t.Fatal("the first Next did not return the appended event")
		}
	})
	t.Run("ConcurrentClose", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		for range 1000 {
			sub, err := st.Subscribe(t.Context(), eventstore.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					<-start
					if err := sub.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if _, err := sub.Next(t.Context()); !errors.Is(err, eventstore.ErrClosed) {
				t.Fatalf("Next after concurrent Closes: %v, want ErrClosed", err)
			}
		}
	})
	t.Run("TypesCopied", func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		types := []string{TypeRenamed}
		sub := subscribe(t, st, eventstore.SubscribeOptions{Types: types})
		types[0] = TypeAdded // the caller reuses its slice
		mustAppend(t, st, "types-copied", eventstore.NoStream, added("skip"))
		res := mustAppend(t, st, "types-copied", eventstore.Any, renamed("keep"))
		sameEvents(t, "filtered by the types given to Subscribe", collect(t, sub, 1, 0), res.Events)
		nothingMore(t, sub)
	})
}

// testFilteredWhileWriting reads with a Types filter (a subscription, and
// a poller of ReadAll pages) while writers append events of both types:
// each reader gets every matching event once, in order, and nothing else.
func (s *suite) testFilteredWhileWriting(t *testing.T) {
	st := s.newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), liveness)
	defer cancel()
	sub := subscribe(t, st, eventstore.SubscribeOptions{Types: []string{TypeRenamed}, BatchSize: 4})

	const writers, appends = 4, 25
	var (
		mu   sync.Mutex
		want = map[uuid.UUID]bool{}
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				// Mostly events that match nothing, now and then a match.
				evs := []eventstore.Event{added("noise"), added("noise")}
				if (w+i)%5 == 0 {
					evs = append(evs, renamed(fmt.Sprintf("w%d-%d", w, i)))
				}
				res, err := st.Append(ctx, fmt.Sprintf("filtered-%d", w), eventstore.Any, evs...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				for _, e := range res.Events {
					if e.Type == TypeRenamed {
						want[e.ID] = true
					}
				}
				mu.Unlock()
			}
		})
	}
	matches := 0
	for w := range writers {
		for i := range appends {
			if (w+i)%5 == 0 {
				matches++
			}
		}
	}

	check := func(what string, got []eventstore.Event) {
		t.Helper()
		seen := map[uuid.UUID]bool{}
		for i, e := range got {
			if e.Type != TypeRenamed {
				t.Fatalf("%s delivered a %s event", what, e.Type)
			}
			if seen[e.ID] {
				t.Fatalf("%s delivered event %v twice", what, e.Position)
			}
			seen[e.ID] = true
			if i > 0 && got[i-1].Position.Compare(e.Position) >= 0 {
				t.Fatalf("%s: position %v after %v", what, e.Position, got[i-1].Position)
			}
		}
	}
	polled := make(chan []eventstore.Event, 1)
	go func() {
		var got []eventstore.Event
		opts := eventstore.ReadAllOptions{Types: []string{TypeRenamed}, Limit: 3}
		for len(got) < matches && ctx.Err() == nil {
			p, err := st.ReadAll(ctx, opts)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("ReadAll: %v", err)
				}
				break
			}
			got = append(got, p.Events...)
			if len(p.Events) == 0 {
				time.Sleep(time.Millisecond) // at the head: let the writers go on
			}
			if p.Next.Compare(opts.From) < 0 {
				t.Errorf("ReadAll: Next %v goes back from %v", p.Next, opts.From)
				break
			}
			opts.From = p.Next
		}
		polled <- got
	}()
	got := collect(t, sub, matches, 4)
	wg.Wait()
	check("the subscription", got)
	pages := <-polled
	check("the ReadAll poller", pages)
	for what, evs := range map[string][]eventstore.Event{"the subscription": got, "the ReadAll poller": pages} {
		if len(evs) != len(want) {
			t.Fatalf("%s got %d matching events, want %d", what, len(evs), len(want))
		}
		for _, e := range evs {
			if !want[e.ID] {
				t.Fatalf("%s got event %v, which no writer appended", what, e.Position)
			}
		}
	}
	nothingMore(t, sub)
}
