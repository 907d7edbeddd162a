package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// testConcurrentOneStream races writers on one stream, all expecting the
// same version, round after round: exactly one wins each round.
func (s *suite) testConcurrentOneStream(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	const writers, rounds = 8, 10
	const stream = "race"
	for round := range rounds {
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			mu     sync.Mutex
			wins   []eventstore.AppendResult
			losses int
		)
		for w := range writers {
			wg.Go(func() {
				<-start
				res, err := st.Append(ctx, stream, eventstore.Exact(int64(round)), added(fmt.Sprintf("r%d-w%d", round, w)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, res)
				case errors.Is(err, eventstore.ErrConcurrency):
					var ce *eventstore.ConcurrencyError
					if !errors.As(err, &ce) || ce.Actual != int64(round)+1 {
						t.Errorf("round %d: losing writer got %v, want Actual %d", round, err, round+1)
					}
					losses++
				default:
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if len(wins) != 1 || losses != writers-1 {
			t.Fatalf("round %d: %d appends won and %d lost, want 1 and %d", round, len(wins), losses, writers-1)
		}
		if got, want := wins[0].Version(), int64(round)+1; got != want {
			t.Fatalf("round %d: winner at version %d, want %d", round, got, want)
		}
	}
	evs, err := st.ReadStream(ctx, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != rounds {
		t.Fatalf("stream has %d events, want %d", len(evs), rounds)
	}
	for i, e := range evs {
		if e.Version != int64(i)+1 {
			t.Fatalf("event %d has version %d: the stream has a gap", i, e.Version)
		}
	}
	checkLogOrder(t, s.h.Features.GaplessPositions, readAll(t, st, eventstore.ReadAllOptions{}))

	// Writers that retry on conflict (read the version, append at Exact)
	// all get through, and the stream stays gapless.
	const perWriter = 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < perWriter; {
				cur, err := st.ReadStream(ctx, stream, 0, 0)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = st.Append(ctx, stream, eventstore.Exact(int64(len(cur))), added(fmt.Sprintf("retry-w%d-%d", w, i)))
				switch {
				case err == nil:
					i++
				case errors.Is(err, eventstore.ErrConcurrency):
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	evs, err = st.ReadStream(ctx, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(evs), rounds+writers*perWriter; got != want {
		t.Fatalf("stream has %d events, want %d", got, want)
	}
	for i, e := range evs {
		if e.Version != int64(i)+1 {
			t.Fatalf("event %d has version %d: the stream has a gap", i, e.Version)
		}
	}
}

// testConcurrentManyStreams runs many writers on distinct streams while a
// subscriber reads the whole time: it must see every event exactly once,
// in position order, each stream in version order.
func (s *suite) testConcurrentManyStreams(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	const writers, appends = 16, 20

	sub := subscribe(t, st, eventstore.SubscribeOptions{BatchSize: 50})
	type seen struct {
		evs []eventstore.Event
		err error
	}
	total := 0
	for w := range writers {
		total += appends * (1 + w%3)
	}
	subDone := make(chan seen, 1)
	go func() {
		var got []eventstore.Event
		subCtx, cancel := context.WithTimeout(ctx, liveness*4)
		defer cancel()
		for len(got) < total {
			evs, err := sub.Next(subCtx)
			if err != nil {
				subDone <- seen{got, err}
				return
			}
			got = append(got, evs...)
		}
		subDone <- seen{got, nil}
	}()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[uuid.UUID]eventstore.Event{}
	)
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("many-%d", w)
			for i := range appends {
				batch := make([]eventstore.Event, 1+w%3)
				for j := range batch {
					batch[j] = added(fmt.Sprintf("w%d-%d-%d", w, i, j))
				}
				res, err := st.Append(ctx, stream, eventstore.Exact(int64(i*len(batch))), batch...)
				if err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				mu.Lock()
				for _, e := range res.Events {
					written[e.ID] = e
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if len(written) != total {
		t.Fatalf("%d events written, want %d", len(written), total)
	}

	r := <-subDone
	if r.err != nil {
		t.Fatalf("subscriber stopped after %d of %d events: %v", len(r.evs), total, r.err)
	}
	got := r.evs
	checkLogOrder(t, s.h.Features.GaplessPositions, got)
	once := map[uuid.UUID]bool{}
	versions := map[string]int64{}
	for _, e := range got {
		if once[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		once[e.ID] = true
		w, ok := written[e.ID]
		if !ok {
			t.Fatalf("subscriber saw event %s that no writer wrote", e.ID)
		}
		sameEvent(t, "subscribed event", e, w)
		if e.Version != versions[e.Stream]+1 {
			t.Fatalf("stream %s: version %d after %d", e.Stream, e.Version, versions[e.Stream])
		}
		versions[e.Stream] = e.Version
	}
	nothingMore(t, sub)
	sameEvents(t, "ReadAll vs subscription", readAll(t, st, eventstore.ReadAllOptions{Limit: 100}), got)
}
