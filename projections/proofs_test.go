package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
)

// wrap returns p with its handler replaced by one that calls hook around
// the original.
func wrap(p projections.Projection, hook func(ctx context.Context, tx pgx.Tx, events []eventstore.Event, apply func() error) error) projections.Projection {
	orig := p.Handler
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		return hook(ctx, tx, events, func() error { return orig.Handle(ctx, tx, events) })
	})
	return p
}

// checkpoint reads a projection's stored checkpoint.
func checkpoint(t *testing.T, pool *pgxpool.Pool, name string) eventstore.Position {
	t.Helper()
	var c, p int64
	err := pool.QueryRow(context.Background(), `SELECT c.commit_position, c.prepare_position FROM projection_checkpoints c
		JOIN projection_state s ON s.projection = c.projection AND s.active_generation = c.generation WHERE c.projection = $1`, name).Scan(&c, &p)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}
}

// Proof 1a: the projector is killed (its context cancelled) in the middle
// of a batch, after the handler wrote part of it; restarted, the read
// models are as if it had run once.
func TestKilledMidBatchByCancelRestartsClean(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 1000, 40)
	pool := database(t)
	want := reference(t, store)

	ctx, cancel := context.WithCancel(context.Background())
	reached := make(chan struct{})
	var calls atomic.Int32
	blocking := wrap(analytics.Projection(), func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event, apply func() error) error {
		if err := apply(); err != nil {
			return err
		}
		if calls.Add(1) == 4 {
			close(reached)
			<-ctx.Done() // the process dies here, with the batch written but not committed
			return ctx.Err()
		}
		return nil
	})
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection(), blocking)
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler never reached the fourth batch")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if cp := checkpoint(t, pool, analytics.Name); cp.Commit == 0 || cp.Compare(headOf(t, store)) >= 0 {
		t.Fatalf("analytics checkpoint %s after the kill: want partial progress", cp)
	}

	rt2 := newRuntime(t, pool, store, fastConfig(), audit.Projection(), analytics.Projection())
	run(t, rt2)
	waitCaughtUp(t, rt2)
	sameRows(t, dump(t, pool), want)
}

// Proof 1b: the projector's connection is closed in the middle of a
// transaction, by the server and by the client; the runtime restarts
// from its checkpoint by itself and the read models are as if it had run
// once.
func TestConnectionClosedMidTransactionRestartsClean(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 1000, 40)
	want := reference(t, store)
	for _, how := range []string{"server terminates the backend", "client closes the connection"} {
		t.Run(how, func(t *testing.T) {
			pool := database(t)
			// Each projection counts its own batches, so that which ones are
			// killed does not depend on how the two interleave.
			var kills, batches atomic.Int32
			killer := func(p projections.Projection, at int32) projections.Projection {
				var calls atomic.Int32
				return wrap(p, func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event, apply func() error) error {
					if err := apply(); err != nil {
						return err
					}
					batches.Add(1)
					if calls.Add(1)%at != 0 {
						return nil
					}
					kills.Add(1)
					if how == "client closes the connection" {
						return tx.Conn().Close(ctx)
					}
					var ok bool
					err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, tx.Conn().PgConn().PID()).Scan(&ok)
					if err != nil || !ok {
						return fmt.Errorf("terminate: %v %v", ok, err)
					}
					return nil // the commit that follows fails
				})
			}
			rt := newRuntime(t, pool, store, fastConfig(), killer(audit.Projection(), 3), killer(analytics.Projection(), 4))
			run(t, rt)
			waitCaughtUp(t, rt)
			if kills.Load() < 2 {
				t.Fatalf("only %d connections were closed in %d batches", kills.Load(), batches.Load())
			}
			sameRows(t, dump(t, pool), want)
		})
	}
}

// twiceStore delivers every event twice: each subscription batch is
// followed by itself, and each page holds every event two times.
type twiceStore struct{ eventstore.Store }

func (s twiceStore) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	page, err := s.Store.ReadAll(ctx, opts)
	doubled := make([]eventstore.Event, 0, 2*len(page.Events))
	for _, e := range page.Events {
		doubled = append(doubled, e, e)
	}
	page.Events = doubled
	return page, err
}

func (s twiceStore) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	sub, err := s.Store.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &twiceSub{Subscription: sub}, nil
}

type twiceSub struct {
	eventstore.Subscription
	again []eventstore.Event
}

func (s *twiceSub) Next(ctx context.Context) ([]eventstore.Event, error) {
	if s.again != nil {
		evs := s.again
		s.again = nil
		return evs, nil
	}
	evs, err := s.Subscription.Next(ctx)
	s.again = evs
	return evs, err
}

// Proof 2: every event of a run is delivered twice (live and in catch-up
// pages); the read models are unchanged.
func TestEveryEventDeliveredTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 600, 30)
	want := reference(t, store)
	twice := twiceStore{store}

	live := database(t)
	rt := newRuntime(t, live, twice, fastConfig(), audit.Projection(), analytics.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)
	sameRows(t, dump(t, live), want)

	pages := database(t)
	rt = newRuntime(t, pages, twice, fastConfig(), audit.Projection(), analytics.Projection())
	for _, n := range rt.Names() {
		if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	sameRows(t, dump(t, pages), want)
}

// Proof 3: a projection rebuilt while it runs live and events keep
// coming has the same rows as a clean build; readers never see the model
// go back or break during the swap.
func TestRebuildEqualsLiveRowForRow(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 1500, 50)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection(), analytics.Projection())
	stop := run(t, rt)
	waitCaughtUp(t, rt)
	before := dump(t, pool)

	// Writers and readers keep going during the rebuild.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	var writerErr error
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := appendSamples(context.Background(), store, 10, 5); err != nil {
				writerErr = fmt.Errorf("writer: %w", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var readerErr error
	var reads atomic.Int64
	go func() {
		defer wg.Done()
		last := int64(0)
		for ctx.Err() == nil {
			var n, sum int64
			err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT coalesce(sum(events), 0) FROM analytics_event_counts)`).Scan(&n, &sum)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				readerErr = fmt.Errorf("reader: %w", err)
				return
			}
			if n < last {
				readerErr = fmt.Errorf("reader saw audit_events go back from %d to %d rows", last, n)
				return
			}
			last = n
			reads.Add(1)
		}
	}()

	for _, name := range []string{audit.Name, analytics.Name} {
		var progress atomic.Int64
		res, err := rt.Rebuild(context.Background(), name, projections.RebuildOptions{
			Progress: func(p projections.RebuildProgress) { progress.Store(p.Events) },
		})
		if err != nil {
			t.Fatalf("Rebuild %s: %v", name, err)
		}
		if res.Generation != 2 || res.Previous != 1 || res.Events < 1500 || progress.Load() != res.Events {
			t.Fatalf("Rebuild %s: %+v (progress %d)", name, res, progress.Load())
		}
		var old int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = current_schema() || '__' || $1 || '_g1'`, name).Scan(&old); err != nil {
			t.Fatal(err)
		}
		if old != 0 {
			t.Fatalf("the old generation of %s was not dropped", name)
		}
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	if writerErr != nil {
		t.Fatal(writerErr)
	}
	if readerErr != nil {
		t.Fatal(readerErr)
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never read")
	}
	waitCaughtUp(t, rt)
	stop()

	after := dump(t, pool)
	if len(after[0]) <= len(before[0]) {
		t.Fatal("no event was appended during the rebuild")
	}
	sameRows(t, after, reference(t, store))
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lag {
		if l.Generation != 2 || l.Rebuilding != 0 {
			t.Fatalf("after the rebuild: %+v", l)
		}
	}
}

// A rebuild interrupted half-way resumes where it stopped, and one
// running already makes a second one wait its turn (ErrBusy).
func TestRebuildResumesAfterInterruption(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 800, 40)
	pool := database(t)
	want := reference(t, store)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection(), analytics.Projection())

	if l := interruptedRebuild(t, rt, audit.Name, 300); l.Rebuilding != 2 || l.RebuildPosition.Commit < 300 || l.Generation != 1 {
		t.Fatalf("after the interruption: %+v", l)
	}
	res, err := rt.Rebuild(context.Background(), audit.Name, projections.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Generation != 2 || res.Events >= 800 {
		t.Fatalf("resumed Rebuild: %+v", res)
	}
	if _, err := rt.CatchUp(context.Background(), analytics.Name, 0); err != nil {
		t.Fatal(err)
	}
	sameRows(t, dump(t, pool), want)
}

// Proof 4: a handler that fails on one poisoned event parks exactly that
// event and applies all others; retry after the fix applies it once.
func TestPoisonedEventParkedThenRetriedOnce(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	viewed := eventsOf(t, store, "distribution.viewed")
	poison, skipped := viewed[40], viewed[90]
	var broken atomic.Bool
	broken.Store(true)
	p := seenProjection("seen", func(e eventstore.Event) error {
		if broken.Load() && (e.ID == poison.ID || e.ID == skipped.ID) {
			return fmt.Errorf("poisoned payload in %s", e.ID)
		}
		return nil
	})
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	stop := run(t, rt)
	waitCaughtUp(t, rt)

	handled := countHandled(t, store)
	if got := seenCount(t, pool); got != handled-2 {
		t.Fatalf("seen %d events, want %d (all but the two poisoned)", got, handled-2)
	}
	parked, err := rt.ListParked(context.Background(), "seen")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].EventID != poison.ID || parked[1].EventID != skipped.ID {
		t.Fatalf("parked: %+v, want exactly the two poisoned events", parked)
	}
	d := parked[0]
	if d.Attempts != 3 || d.Position != poison.Position || d.Type != poison.Type || d.Stream != poison.Stream ||
		d.TenantID != poison.Meta.TenantID || !containsAll(d.Error, "poisoned payload") || d.FirstFailedAt.IsZero() {
		t.Fatalf("parked entry: %+v", d)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lag[0].Parked != 2 || lag[0].Errors < 6 || lag[0].Position != headOf(t, store) {
		t.Fatalf("lag: %+v, want 2 parked, >= 6 errors, at the head", lag[0])
	}

	// Still broken: the retry fails, and the entry stays with one more attempt.
	var re *projections.RetryError
	if err := rt.RetryParked(context.Background(), d.ID); !errors.As(err, &re) {
		t.Fatalf("retry while broken: %v, want *RetryError", err)
	}
	if got, _ := rt.GetParked(context.Background(), d.ID); got.Attempts != 4 {
		t.Fatalf("attempts after a failed retry: %d, want 4", got.Attempts)
	}
	broken.Store(false)
	if err := rt.RetryParked(context.Background(), d.ID); err != nil {
		t.Fatalf("retry after the fix: %v", err)
	}
	if err := rt.RetryParked(context.Background(), d.ID); !errors.Is(err, projections.ErrNotParked) {
		t.Fatalf("second retry: %v, want ErrNotParked", err)
	}
	if err := rt.SkipParked(context.Background(), parked[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.SkipParked(context.Background(), parked[1].ID); !errors.Is(err, projections.ErrNotParked) {
		t.Fatalf("second skip: %v, want ErrNotParked", err)
	}
	stop()
	if got := seenCount(t, pool); got != handled-1 {
		t.Fatalf("seen %d events after retry and skip, want %d", got, handled-1)
	}
	if n := seenTimes(t, pool, poison.ID.String()); n != 1 {
		t.Fatalf("the retried event was applied %d times", n)
	}
	if n := seenTimes(t, pool, skipped.ID.String()); n != 0 {
		t.Fatalf("the skipped event was applied %d times", n)
	}
	if parked, _ := rt.ListParked(context.Background(), ""); len(parked) != 0 {
		t.Fatalf("still parked: %+v", parked)
	}
}

// A projection declared StopOnError stops at the poisoned event (no other
// process takes it over), and continues from it after Resume.
func TestStopOnErrorStopsThenResumes(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	broken.Store(true)
	store, poison, pool, rt := runStrict(t, &broken, "cannot apply")
	l := waitStopped(t, rt)
	if !containsAll(l.LastError, poison.ID.String(), "cannot apply") || l.Parked != 0 || l.Position.Compare(poison.Position) >= 0 {
		t.Fatalf("stopped projection: %+v", l)
	}
	time.Sleep(300 * time.Millisecond) // several lock polls: nobody runs it
	if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
		t.Fatal("the poisoned event was applied")
	}
	broken.Store(false)
	resumeCaughtUp(t, rt, "strict", pool, store)
}

// Proof 5: two runtimes against one database: each projection is run by
// exactly one of them; stop that one, the other takes over, and nothing
// is lost or doubled.
func TestTwoRuntimesRunEachProjectionOnce(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 400, 20)
	poolA := database(t)
	poolB, err := pgxpool.NewWithConfig(context.Background(), poolA.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer poolB.Close()

	// The guard counts handlers of one projection running at once, across
	// both runtimes.
	var mu sync.Mutex
	inFlight := map[string]int{}
	var overlaps atomic.Int32
	guard := func(p projections.Projection) projections.Projection {
		return wrap(p, func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event, apply func() error) error {
			mu.Lock()
			inFlight[p.Name]++
			if inFlight[p.Name] > 1 {
				overlaps.Add(1)
			}
			mu.Unlock()
			defer func() {
				mu.Lock()
				inFlight[p.Name]--
				mu.Unlock()
			}()
			time.Sleep(time.Millisecond) // widen the window a second runner would need
			return apply()
		})
	}
	a := newRuntime(t, poolA, store, fastConfig(), guard(audit.Projection()), guard(analytics.Projection()))
	b := newRuntime(t, poolB, store, fastConfig(), guard(audit.Projection()), guard(analytics.Projection()))
	stopA := run(t, a)
	run(t, b)
	fill(t, store, 400, 10)
	waitCaughtUp(t, a)

	holders := func() map[string][]string {
		out := map[string][]string{}
		for name, rt := range map[string]*projections.Runtime{"A": a, "B": b} {
			lag, err := rt.Lag(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lag {
				if l.Running {
					out[l.Projection] = append(out[l.Projection], name)
				}
			}
		}
		return out
	}
	h := holders()
	for _, n := range []string{audit.Name, analytics.Name} {
		if len(h[n]) != 1 {
			t.Fatalf("%s is run by %v, want exactly one runtime", n, h[n])
		}
	}

	// Stop A: B takes everything over within seconds.
	stopA()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h = holders()
		if len(h[audit.Name]) == 1 && h[audit.Name][0] == "B" && len(h[analytics.Name]) == 1 && h[analytics.Name][0] == "B" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not take over: %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fill(t, store, 400, 10)
	waitCaughtUp(t, b)
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("a projection was run by two runtimes at once %d times", n)
	}
	sameRows(t, dump(t, poolA), reference(t, store))
}

// Reprocess rewinds the audit log to a position in place; the runner
// applies the rest again and the rows are as before. Analytics cannot be
// rewound, and reprocessing cannot skip ahead.
func TestReprocessFromAPosition(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 500, 25)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection(), analytics.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)
	want := dump(t, pool)

	if err := rt.Reprocess(context.Background(), analytics.Name, eventstore.Pos(10)); !errors.Is(err, projections.ErrNotRewindable) {
		t.Fatalf("Reprocess analytics: %v, want ErrNotRewindable", err)
	}
	if err := rt.Reprocess(context.Background(), audit.Name, eventstore.Pos(10_000)); err == nil {
		t.Fatal("Reprocess beyond the checkpoint was accepted")
	}
	if err := rt.Reprocess(context.Background(), audit.Name, eventstore.Pos(200)); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, rt)
	sameRows(t, dump(t, pool), want)
}

// CatchUp refuses to run a projection another runtime runs.
func TestCatchUpWhileRunningIsBusy(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 50, 10)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)
	other := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	if _, err := other.CatchUp(context.Background(), audit.Name, 0); !errors.Is(err, projections.ErrBusy) {
		t.Fatalf("CatchUp while another runtime runs it: %v, want ErrBusy", err)
	}
	if _, err := other.Rebuild(context.Background(), "nope", projections.RebuildOptions{}); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Fatalf("Rebuild of an unknown projection: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
