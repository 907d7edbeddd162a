package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/projections"
)

// maxBreaks is the MaxSessionBreaks of the tests below.
const maxBreaks = 3

func breaksConfig() projections.Config {
	cfg := fastConfig()
	cfg.Retry.MaxSessionBreaks = maxBreaks
	return cfg
}

// leaveRowsOpen runs a query and does not close its rows: a handler that
// then fails leaves a connection pgx cannot roll back, so it closes it.
func leaveRowsOpen(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT generate_series(1, 3)`)
	if err != nil {
		return err
	}
	_ = rows // no rows.Close(): the bug under test
	return nil
}

// canceledCall is an outside call of the handler's own whose context was
// cancelled: not the runner's context.
func canceledCall(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	<-cctx.Done()
	return fmt.Errorf("notify the mailer: %w", cctx.Err())
}

// breakers are handlers' failures on the poisoned event that look like a
// problem of the session (so they restart it instead of counting an
// attempt), with what the parked entry's error must hold.
var breakers = []struct {
	name string
	fail func(ctx context.Context, tx pgx.Tx) error
	text string
}{
	{"rows left open, error returned", func(ctx context.Context, tx pgx.Tx) error {
		if err := leaveRowsOpen(ctx, tx); err != nil {
			return err
		}
		return errors.New("poisoned: rows left open")
	}, "poisoned: rows left open"},
	{"rows left open, panic", func(ctx context.Context, tx pgx.Tx) error {
		if err := leaveRowsOpen(ctx, tx); err != nil {
			return err
		}
		panic("poisoned: rows left open")
	}, "panic: poisoned: rows left open"},
	{"context.Canceled of its own call", func(ctx context.Context, tx pgx.Tx) error {
		return canceledCall(ctx)
	}, "notify the mailer: context canceled"},
	{"network error of its own call", func(context.Context, pgx.Tx) error {
		return fmt.Errorf("call the mailer: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	}, "call the mailer: dial tcp: connection refused"},
}

// breakingProjection writes each event to seen and calls fail on the
// poisoned one, counting how often the handler meets it.
func breakingProjection(name string, poison uuid.UUID, fail func(context.Context, pgx.Tx) error, met *atomic.Int32) projections.Projection {
	p := seenProjection(name, func(eventstore.Event) error { return nil })
	p.Handler = projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if _, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID); err != nil {
			return err
		}
		if e.ID == poison {
			met.Add(1)
			return fail(ctx, tx)
		}
		return nil
	})
	return p
}

// An event whose handling breaks the session every time (a handler that
// fails with a query's rows still open, or that returns a network or
// context error of its own) is parked after MaxSessionBreaks breaks in a
// row, with an error that says so, instead of restarting the session on
// it for ever; every other event is applied once and Run goes on.
func TestEventThatBreaksTheSessionIsParked(t *testing.T) {
	t.Parallel()
	for _, tc := range breakers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := logStore(t)
			poison := poisoned(t, store)
			var met atomic.Int32
			pool := database(t)
			rt := newRuntime(t, pool, store, breaksConfig(), breakingProjection("breaker", poison.ID, tc.fail, &met))
			stop := run(t, rt)
			waitCaughtUp(t, rt) // fails after its deadline if the runner is stuck at the event

			parked, err := rt.ListParked(context.Background(), "breaker")
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != maxBreaks {
				t.Fatalf("parked: %+v, want the poisoned event after %d breaks", parked, maxBreaks)
			}
			if want := fmt.Sprintf("session broke %d times in a row", maxBreaks); !containsAll(parked[0].Error, want, tc.text) {
				t.Fatalf("parked error %q: want %q and the last error %q", parked[0].Error, want, tc.text)
			}
			lag, err := rt.Lag(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if lag[0].Parked != 1 || lag[0].Errors < maxBreaks {
				t.Fatalf("lag: %+v, want 1 parked and at least %d errors", lag[0], maxBreaks)
			}
			// The runner is still alive: it applies what comes next.
			fill(t, store, 70, 7)
			waitCaughtUp(t, rt)
			stop() // fails the test if Run returned an error
			appliedOnceExceptPoison(t, pool, store, poison.ID)
			// Once in its batch, then alone until the bound; parked
			// without meeting the handler again.
			if got, want := met.Load(), int32(1+maxBreaks); got != want {
				t.Fatalf("the handler met the poisoned event %d times, want %d", got, want)
			}
		})
	}
}

// With StopOnError, the projection stops before such an event, with the
// breaks in the error Lag shows; after Resume the event is tried afresh.
func TestEventThatBreaksTheSessionStopsOnError(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	var met atomic.Int32
	var broken atomic.Bool
	broken.Store(true)
	p := breakingProjection("strict", poison.ID, func(ctx context.Context, tx pgx.Tx) error {
		if !broken.Load() {
			return nil
		}
		if err := leaveRowsOpen(ctx, tx); err != nil {
			return err
		}
		return errors.New("poisoned: rows left open")
	}, &met)
	p.StopOnError = true
	pool := database(t)
	rt := newRuntime(t, pool, store, breaksConfig(), p)
	run(t, rt)
	l := waitStopped(t, rt) // fails after its deadline if the runner is stuck at the event
	if want := fmt.Sprintf("session broke %d times in a row", maxBreaks); !containsAll(l.LastError, poison.ID.String(), want, "poisoned: rows left open") {
		t.Fatalf("last error %q: want the event, %q and the last error", l.LastError, want)
	}
	if l.Position.Compare(poison.Position) >= 0 || l.Parked != 0 {
		t.Fatalf("stopped projection: %+v, want it before the poisoned event, nothing parked", l)
	}
	if got, want := met.Load(), int32(1+maxBreaks); got != want {
		t.Fatalf("the handler met the poisoned event %d times, want %d", got, want)
	}
	if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
		t.Fatalf("the poisoned event is in the read model %d times", n)
	}
	broken.Store(false)
	if err := rt.Resume(context.Background(), "strict"); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("seen %d after resume, want %d", got, want)
	}
	if n := seenTimes(t, pool, poison.ID.String()); n != 1 {
		t.Fatalf("the poisoned event is in the read model %d times after resume, want 1", n)
	}
}

// Breaks fewer than the bound at one event are restarts, not failures:
// two events that each break the session MaxSessionBreaks-1 times when
// applied alone, then succeed, are applied once and nothing is parked.
func TestFewerBreaksThanTheBoundParkNothing(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 140, 14)
	viewed := eventsOf(t, store, "distribution.viewed")
	flaky := map[uuid.UUID]*atomic.Int32{viewed[20].ID: {}, viewed[30].ID: {}}
	p := seenProjection("flaky", func(eventstore.Event) error { return nil })
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		for _, e := range evs {
			if _, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID); err != nil {
				return err
			}
			alone, ok := flaky[e.ID]
			if !ok {
				continue
			}
			// A batch's break is not counted; applied alone, the event
			// breaks the session until it has done so bound-1 times.
			if len(evs) == 1 && alone.Add(1) >= maxBreaks {
				continue
			}
			if err := leaveRowsOpen(ctx, tx); err != nil {
				return err
			}
			return errors.New("flaky: rows left open")
		}
		return nil
	})
	pool := database(t)
	rt := newRuntime(t, pool, store, breaksConfig(), p)
	runUntilCaughtUp(t, rt)
	for id, alone := range flaky {
		if got := alone.Load(); got != maxBreaks {
			t.Fatalf("event %s was applied alone %d times, want %d (%d breaks, then success)", id, got, maxBreaks, maxBreaks-1)
		}
		if n := seenTimes(t, pool, id.String()); n != 1 {
			t.Fatalf("event %s is in the read model %d times, want 1", id, n)
		}
	}
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("seen %d, want %d", got, want)
	}
	if parked, err := rt.ListParked(context.Background(), ""); err != nil || len(parked) != 0 {
		t.Fatalf("parked: %+v %v, want none", parked, err)
	}
}

// The connection is cut again and again while events flow, at the start
// of every third transaction of the runner (when it takes the lock, and
// when it applies a batch or an event) up to a dozen cuts, so that some
// cuts fall on single events, but never twice in a row on the same one:
// none of them is a poisoned event, so nothing is parked, even with a
// bound of 2, and every event is applied once.
func TestConnectionCutsAwayFromAPoisonParkNothing(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 30)
	pool, direct, proxy := proxiedDatabase(t)
	cfg := fastConfig()
	cfg.Retry.MaxSessionBreaks = 2
	rt := newRuntime(t, pool, store, cfg, seenProjection("cuts", func(eventstore.Event) error { return nil }))

	const maxCuts = 12
	var runner sync.Map // the ids of the runner's connections
	var begins, cuts atomic.Int32
	proxy.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir != faultproxy.ToServer {
			return false
		}
		if bytes.Contains(c.Data, []byte("eventstream-projection:cuts\x00")) { // its startup message
			runner.Store(c.Conn, true)
			return false
		}
		if _, ok := runner.Load(c.Conn); !ok || !bytes.Contains(c.Data, []byte("begin\x00")) {
			return false
		}
		if n := begins.Add(1); n%3 != 0 || n > 3*maxCuts {
			return false
		}
		cuts.Add(1)
		return true
	})
	stop := run(t, rt)
	fill(t, store, 700, 7) // while the runner applies the first events
	waitCaughtUp(t, rt)
	stop()
	proxy.SetCut(nil)
	if cuts.Load() < 2*int32(cfg.Retry.MaxSessionBreaks) {
		t.Fatalf("only %d connections were cut", cuts.Load())
	}
	if parked, err := rt.ListParked(context.Background(), "cuts"); err != nil || len(parked) != 0 {
		t.Fatalf("parked: %+v %v, want none", parked, err)
	}
	var rows, distinct int
	if err := direct.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM seen`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if want := countHandled(t, store); rows != want || distinct != want {
		t.Fatalf("seen holds %d rows of %d events, want %d once each", rows, distinct, want)
	}
}
