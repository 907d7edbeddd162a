package aggregates_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

func TestHandleEndToEndInPostgres(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store, _ := pgStore(t, s)
	reg := testRegistry(t, s)
	repo := counterRepo(t, store, reg, nil)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := repo.Handle(ctx, "p1", meta(), add("p1", 2)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := repo.Load(ctx, "p1")
	if err != nil || a.Version != 5 || a.State.Total != 10 {
		t.Fatalf("Load = %+v, %v; want v5 total 10", a, err)
	}
	_, err = repo.Handle(ctx, "p1", meta(), add("p1", limit))
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("Handle = %v, want counter-limit", err)
	}
	_, err = repo.Handle(ctx, "p1", meta(), func(*aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Added{CounterID: "p1", N: -1}}, nil
	})
	if !errors.Is(err, eventstore.ErrValidation) {
		t.Fatalf("Handle = %v, want ErrValidation", err)
	}
	if got := streamLen(t, store, "counter-p1"); got != 5 {
		t.Fatalf("stream has %d events after two refusals, want 5", got)
	}
	// A v1 event written by an old producer is read upcast from PostgreSQL.
	appendRaw(t, store, "counter-p1", "test.counter.named", 1, `{"counter_id":"p1","name":"old"}`)
	a, err = repo.Load(ctx, "p1")
	if err != nil || a.State.Title != "old" || a.State.Lang != "en" {
		t.Fatalf("Load = %+v, %v; want the v1 event upcast", a, err)
	}
}

// Two commands on one aggregate at once: with retries both land; without,
// exactly one lands and the other gets ErrConcurrency.
func TestConcurrentCommandsInPostgres(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store, _ := pgStore(t, s)
	reg := testRegistry(t, s)
	ctx := context.Background()

	run := func(repo *aggregates.Repository[Counter], id string) []error {
		if _, err := repo.Handle(ctx, id, meta(), add(id, 1)); err != nil {
			t.Fatal(err)
		}
		// Both decide on the same version before either appends.
		var ready sync.WaitGroup
		ready.Add(2)
		gate := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first := true
				_, errs[i] = repo.Handle(ctx, id, meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
					if first {
						first = false
						ready.Done()
						<-gate
					}
					return add(id, 10)(a)
				})
			}()
		}
		ready.Wait()
		close(gate)
		wg.Wait()
		return errs
	}

	retrying := counterRepo(t, store, reg, nil)
	for i, err := range run(retrying, "race-retry") {
		if err != nil {
			t.Fatalf("command %d with retries: %v", i, err)
		}
	}
	a, err := retrying.Load(ctx, "race-retry")
	if err != nil || a.Version != 3 || a.State.Total != 21 {
		t.Fatalf("after two retried commands: %+v, %v; want v3 total 21", a, err)
	}

	once := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) { d.Retry = aggregates.Retry{Attempts: 1} })
	errs := run(once, "race-once")
	var wins, lost int
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, eventstore.ErrConcurrency):
			lost++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 || lost != 1 {
		t.Fatalf("wins = %d, lost = %d, want 1 and 1", wins, lost)
	}
	a, err = once.Load(ctx, "race-once")
	if err != nil || a.Version != 2 || a.State.Total != 11 {
		t.Fatalf("after the race: %+v, %v; want v2 total 11", a, err)
	}
}
