package projections_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// poisonValue is a panic value that is neither an error nor a string.
type poisonValue struct {
	Code   int
	Reason string
}

var errPoisoned = errors.New("poisoned payload")

// brokenError is a panic value whose Error method panics too.
type brokenError struct{}

func (brokenError) Error() string { panic("Error itself is broken") }

// panics are the panics the tests raise on the poisoned event, with what
// the recorded error text must hold and what the recovered value must be.
var panics = []struct {
	name  string
	raise func()
	text  string               // in the parked entry's error
	check func(v any) bool     // the *PanicError's Value
	is    func(err error) bool // errors.Is/As through the *PanicError, if any
}{
	{"string", func() { panic("poisoned: cannot apply") }, "poisoned: cannot apply",
		func(v any) bool { return v == "poisoned: cannot apply" }, nil},
	{"struct", func() { panic(poisonValue{Code: 7, Reason: "bad payload"}) }, `poisonValue{Code:7, Reason:"bad payload"}`,
		func(v any) bool { return v == poisonValue{Code: 7, Reason: "bad payload"} }, nil},
	{"error", func() { panic(errPoisoned) }, "poisoned payload",
		func(v any) bool { return v == errPoisoned }, func(err error) bool { return errors.Is(err, errPoisoned) }},
	{"nil", func() { panic(nil) }, "panic called with nil argument",
		func(v any) bool { _, ok := v.(*runtime.PanicNilError); return ok }, nil},
	{"error whose Error panics", func() { panic(brokenError{}) }, "PANIC=Error method: Error itself is broken",
		func(v any) bool { return v == brokenError{} }, nil},
	{"runtime error", func() {
		var m map[string]int
		//lint:ignore SA5000 the panic this writes is what the case tests
		m["x"] = 1
	}, "assignment to entry in nil map",
		func(v any) bool { _, ok := v.(runtime.Error); return ok }, nil},
}

// panicProjection writes each event to seen, then panics on the poisoned
// one: the panicking attempt's write must be rolled back like any failed
// attempt's.
func panicProjection(name string, poison uuid.UUID, raise func(), attempts *atomic.Int32) projections.Projection {
	p := seenProjection(name, func(eventstore.Event) error { return nil })
	p.Handler = projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if _, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID); err != nil {
			return err
		}
		if e.ID == poison {
			attempts.Add(1)
			raise()
		}
		return nil
	})
	return p
}

// appliedOnceExceptPoison checks that seen holds every handled event once,
// and the poisoned one not at all.
func appliedOnceExceptPoison(t *testing.T, pool *pgxpool.Pool, store eventstore.Store, poison uuid.UUID) {
	t.Helper()
	if got, want := seenCount(t, pool), countHandled(t, store)-1; got != want {
		t.Fatalf("seen %d rows, want %d (every handled event but the poisoned one)", got, want)
	}
	var twice int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT event_id FROM seen GROUP BY event_id HAVING count(*) > 1) d`).Scan(&twice); err != nil {
		t.Fatal(err)
	}
	if twice != 0 {
		t.Fatalf("%d events were applied more than once", twice)
	}
	if n := seenTimes(t, pool, poison.String()); n != 0 {
		t.Fatalf("the panicking attempts' writes stayed: the poisoned event is in the read model %d times", n)
	}
}

// A handler that panics on one event costs that event, not the process:
// Run goes on, the panicking attempts are rolled back and retried like a
// returned error, the event is parked with the panic value and where it
// was raised, and every other event is applied once. A failed retry of
// the entry gives the *PanicError, with the value as it was raised.
func TestHandlerPanicIsParked(t *testing.T) {
	t.Parallel()
	for _, tc := range panics {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := logStore(t) // each subtest appends to its own log
			poison := poisoned(t, store)
			var attempts atomic.Int32
			pool := database(t)
			rt := newRuntime(t, pool, store, fastConfig(), panicProjection("panicky", poison.ID, tc.raise, &attempts))
			stop := run(t, rt)
			waitCaughtUp(t, rt)

			parked, err := rt.ListParked(context.Background(), "panicky")
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != 3 {
				t.Fatalf("parked: %+v, want the poisoned event after 3 attempts", parked)
			}
			if !containsAll(parked[0].Error, "panic: ", tc.text, "panic_test.go:") {
				t.Fatalf("parked error %q: want the panic value %q and its place in panic_test.go", parked[0].Error, tc.text)
			}
			// The runner is still alive: it applies what comes next.
			fill(t, store, 70, 7)
			waitCaughtUp(t, rt)
			stop()
			appliedOnceExceptPoison(t, pool, store, poison.ID)
			// 1 for the batch, 3 for the event on its own.
			if got := attempts.Load(); got != 4 {
				t.Fatalf("the handler met the poisoned event %d times, want 4", got)
			}

			err = rt.RetryParked(context.Background(), parked[0].ID)
			var re *projections.RetryError
			var pe *projections.PanicError
			if !errors.As(err, &re) || !errors.As(err, &pe) {
				t.Fatalf("RetryParked: %v, want a *RetryError holding a *PanicError", err)
			}
			if !tc.check(pe.Value) || !strings.Contains(string(pe.Stack), "panic_test.go") {
				t.Fatalf("recovered value %#v (%T), stack:\n%s", pe.Value, pe.Value, pe.Stack)
			}
			if tc.is != nil && !tc.is(err) {
				t.Fatalf("RetryParked: %v does not match the error the handler panicked with", err)
			}
			if got, err := rt.GetParked(context.Background(), parked[0].ID); err != nil || got.Attempts != 4 {
				t.Fatalf("after a failed retry: %+v %v, want 4 attempts", got, err)
			}
			if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
				t.Fatalf("the panicking retry's write stayed: the poisoned event is in the read model %d times", n)
			}
		})
	}
}

// With StopOnError, a panic stops the projection like a returned error:
// before the event, with the panic in the error that Lag shows, and Run
// goes on (for the other projections, here none) instead of crashing.
func TestHandlerPanicStopsOnError(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	var attempts atomic.Int32
	p := panicProjection("strict", poison.ID, func() { panic(poisonValue{Code: 9, Reason: "stop here"}) }, &attempts)
	p.StopOnError = true
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	stop := run(t, rt)
	l := waitStopped(t, rt)
	stop() // fails the test if Run returned an error
	if !containsAll(l.LastError, poison.ID.String(), `poisonValue{Code:9, Reason:"stop here"}`, "panic_test.go:") {
		t.Fatalf("last error %q: want the event, the panic value and its place", l.LastError)
	}
	if l.Position.Compare(poison.Position) >= 0 || l.Errors < 3 {
		t.Fatalf("stopped projection: %+v, want it before the poisoned event after its attempts", l)
	}
	if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
		t.Fatalf("the panicking attempts' writes stayed: the poisoned event is in the read model %d times", n)
	}
	if parked, err := rt.ListParked(context.Background(), ""); err != nil || len(parked) != 0 {
		t.Fatalf("parked: %+v %v, want none", parked, err)
	}
}

// A reaction whose function panics on one event parks that event, is not
// recorded as having acted on it, and acts on all the others.
func TestReactionPanicIsParked(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	failed := eventsOf(t, store, "course.generation.failed")
	poison := failed[len(failed)/2]
	var mu sync.Mutex
	acted := map[uuid.UUID]int{}
	p := projections.Reaction("notify", "notify-on-failure", projections.Types(1, "course.generation.failed"),
		func(ctx context.Context, e eventstore.Event) error {
			if e.ID == poison.ID {
				var target *poisonValue
				return errors.New(target.Reason) // nil pointer dereference
			}
			mu.Lock()
			defer mu.Unlock()
			acted[e.ID]++
			return nil
		})
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	runUntilCaughtUp(t, rt)

	parked, err := rt.ListParked(context.Background(), "notify")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != 3 ||
		!containsAll(parked[0].Error, "invalid memory address or nil pointer dereference", "panic_test.go:") {
		t.Fatalf("parked: %+v, want the poisoned event after 3 attempts, with the panic and its place", parked)
	}
	mu.Lock()
	defer mu.Unlock()
	if _, ok := acted[poison.ID]; ok || len(acted) != len(failed)-1 {
		t.Fatalf("acted on %d events (the poisoned one: %v), want %d, not the poisoned one", len(acted), ok, len(failed)-1)
	}
	var rows, poisonRows int
	err = pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE event_id = $1) FROM processed_events WHERE consumer = 'notify-on-failure'`, poison.ID).Scan(&rows, &poisonRows)
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(failed)-1 || poisonRows != 0 {
		t.Fatalf("processed_events holds %d rows (%d for the poisoned event), want %d and none", rows, poisonRows, len(failed)-1)
	}
}

// A rebuild replays through the same recovery: a panic parks the event in
// the new generation, or, with StopOnError, ends the rebuild with the
// *PanicError, resumable once the code is fixed.
func TestRebuildHandlerPanic(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	for _, strict := range []bool{false, true} {
		name := map[bool]string{false: "parked", true: "stopped"}[strict]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var attempts atomic.Int32
			var broken atomic.Bool
			p := panicProjection("rebuilt", poison.ID, func() {
				if broken.Load() {
					panic("broken in the new code")
				}
			}, &attempts)
			p.StopOnError = strict
			pool := database(t)
			rt := newRuntime(t, pool, store, fastConfig(), p)
			broken.Store(true)
			res, err := rt.Rebuild(context.Background(), "rebuilt", projections.RebuildOptions{})
			if strict {
				var pe *projections.PanicError
				if !errors.As(err, &pe) || pe.Value != "broken in the new code" || !containsAll(err.Error(), poison.ID.String(), "panic_test.go:") {
					t.Fatalf("Rebuild: %v, want the event's *PanicError", err)
				}
				broken.Store(false)
				if res, err = rt.Rebuild(context.Background(), "rebuilt", projections.RebuildOptions{}); err != nil || !res.Resumed {
					t.Fatalf("Rebuild after the fix: %+v %v, want it resumed", res, err)
				}
				if got, want := seenCount(t, pool), countHandled(t, store); got != want {
					t.Fatalf("the rebuilt generation has %d rows, want %d", got, want)
				}
				return
			}
			if err != nil || res.Parked != 1 {
				t.Fatalf("Rebuild: %+v %v, want the poisoned event parked", res, err)
			}
			parked, err := rt.ListParked(context.Background(), "rebuilt")
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Generation != res.Generation ||
				!containsAll(parked[0].Error, "broken in the new code", "panic_test.go:") {
				t.Fatalf("parked: %+v, want the poisoned event in generation %d, with the panic", parked, res.Generation)
			}
			appliedOnceExceptPoison(t, pool, store, poison.ID)
		})
	}
}

// A panic in Config.Upcast is an upcast failure: the event is parked at
// once, since upcasting it again gives the same result.
func TestUpcastPanicIsParked(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	cfg := fastConfig()
	cfg.Upcast = func(e eventstore.Event) (eventstore.Event, error) {
		if e.ID == poison.ID {
			panic("cannot upcast this one")
		}
		return e, nil
	}
	pool := database(t)
	rt := newRuntime(t, pool, store, cfg, seenProjection("upcast", func(eventstore.Event) error { return nil }))
	runUntilCaughtUp(t, rt)
	parked, err := rt.ListParked(context.Background(), "upcast")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != 1 ||
		!containsAll(parked[0].Error, "upcast", "cannot upcast this one", "panic_test.go:") {
		t.Fatalf("parked: %+v, want the poisoned event after 1 attempt, with the panic", parked)
	}
	appliedOnceExceptPoison(t, pool, store, poison.ID)
}

// Rewind and OnPublish run in transactions of Reprocess and Migrate: a
// panic in them is their caller's error, and what they wrote is rolled
// back.
func TestRewindAndOnPublishPanicsAreErrors(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 70, 7)
	pool := database(t)
	p := seenProjection("rewound", func(eventstore.Event) error { return nil })
	p.Rewind = func(ctx context.Context, tx pgx.Tx, after eventstore.Position) error {
		if _, err := tx.Exec(ctx, `DELETE FROM seen`); err != nil {
			return err
		}
		panic("rewind is broken")
	}
	rt := newRuntime(t, pool, store, fastConfig(), p)
	head, err := rt.CatchUp(context.Background(), "rewound", 0)
	if err != nil {
		t.Fatal(err)
	}
	before := seenCount(t, pool)
	err = rt.Reprocess(context.Background(), "rewound", eventstore.Start)
	var pe *projections.PanicError
	if !errors.As(err, &pe) || pe.Value != "rewind is broken" {
		t.Fatalf("Reprocess: %v, want a *PanicError", err)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := seenCount(t, pool); got != before || before == 0 || lag[0].Position != head {
		t.Fatalf("after the failed Reprocess: %d rows (was %d), position %s (was %s)", got, before, lag[0].Position, head)
	}

	cfg := fastConfig()
	cfg.OnPublish = func(ctx context.Context, tx pgx.Tx, pub projections.Publication) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE published_marker (x int)`); err != nil {
			return err
		}
		panic("grants are broken")
	}
	other := seenProjection("published", func(eventstore.Event) error { return nil })
	other.Migrations = fstest.MapFS{"001_other.up.sql": {Data: []byte(`CREATE TABLE other_seen (event_id uuid)`)}}
	rt2, err := projections.New(pool, store, registry(t), cfg, other)
	if err != nil {
		t.Fatal(err)
	}
	err = rt2.Migrate(context.Background())
	if !errors.As(err, &pe) || pe.Value != "grants are broken" {
		t.Fatalf("Migrate: %v, want a *PanicError", err)
	}
	var marker bool
	if err := pool.QueryRow(context.Background(), `SELECT to_regclass('published_marker') IS NOT NULL`).Scan(&marker); err != nil || marker {
		t.Fatalf("OnPublish's write stayed after its panic: %v %v", marker, err)
	}
}

// The short form of the stack in Error names the function that panicked
// and its line, the innermost first, and stops at the runtime's call.
func TestPanicErrorText(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	var attempts atomic.Int32
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), panicProjection("text", poison.ID, raiseDeep, &attempts))
	if _, err := rt.CatchUp(context.Background(), "text", 0); err != nil {
		t.Fatal(err)
	}
	parked, err := rt.ListParked(context.Background(), "text")
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked: %+v %v", parked, err)
	}
	msg := parked[0].Error
	if !strings.HasPrefix(msg, "panic: deep down [at projections_test.raiseDeep (projections/panic_test.go:") ||
		strings.Contains(msg, "gopanic") || strings.Contains(msg, "(*applier)") {
		t.Fatalf("parked error %q: want the panic value, then the frames from raiseDeep to the handler", msg)
	}
}

func raiseDeep() { panic("deep down") }
