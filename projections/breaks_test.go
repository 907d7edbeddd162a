package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
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

// maxBreaks and maxAttempts are the MaxSessionBreaks and MaxAttempts of
// the tests below: different, so that a test tells which bound gave an
// event up.
const (
	maxBreaks   = 3
	maxAttempts = 4
)

func breaksConfig() projections.Config {
	cfg := fastConfig()
	cfg.Retry.MaxSessionBreaks = maxBreaks
	cfg.Retry.MaxAttempts = maxAttempts
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

// dropConnection makes the server end the handler's connection, as a
// backend crash or a timeout that terminates the session would: a break
// of the session, not a failure the handler returned.
func dropConnection(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
	return err
}

// canceledCall is an outside call of the handler's own whose context was
// cancelled: not the runner's context.
func canceledCall(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	<-cctx.Done()
	return fmt.Errorf("notify the mailer: %w", cctx.Err())
}

// failures are handlers' failures on the poisoned event that look like a
// problem of the session (a connection the rollback closes, a context or
// network error) but are the handler's own: attempts of the event, with
// what the parked entry's error must hold.
var failures = []struct {
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

// runPoisoned runs a projection whose handler fails on one event until it
// is caught up past it, and returns the parked entry and the runtime's
// lag; every other event is applied once and the runner goes on with
// what comes next.
func runPoisoned(t *testing.T, fail func(context.Context, pgx.Tx) error, met *atomic.Int32) (projections.Parked, projections.Lag) {
	t.Helper()
	store := logStore(t)
	poison := poisoned(t, store)
	pool := database(t)
	rt := newRuntime(t, pool, store, breaksConfig(), breakingProjection("poisoned", poison.ID, fail, met))
	stop := run(t, rt)
	waitCaughtUp(t, rt) // fails after its deadline if the runner is stuck at the event

	parked, err := rt.ListParked(context.Background(), "poisoned")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != poison.ID {
		t.Fatalf("parked: %+v, want the poisoned event", parked)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The runner is still alive: it applies what comes next.
	fill(t, store, 70, 7)
	waitCaughtUp(t, rt)
	stop() // fails the test if Run returned an error
	appliedOnceExceptPoison(t, pool, store, poison.ID)
	return parked[0], lag[0]
}

// A handler's own failure is an attempt of the event even when it looks
// like a problem of the session: a failure with a query's rows still open
// (whose rollback closes the connection, so the session restarts and the
// attempts go on in the next one), or a context or network error of its
// own outside call. The event is parked after MaxAttempts with the
// handler's error, not after MaxSessionBreaks.
func TestHandlerFailureThatLooksLikeABreakIsAnAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var met atomic.Int32
			parked, lag := runPoisoned(t, tc.fail, &met)
			if parked.Attempts != maxAttempts || !strings.Contains(parked.Error, tc.text) || strings.Contains(parked.Error, "session broke") {
				t.Fatalf("parked after %d attempts with %q, want %d attempts and the handler's error %q", parked.Attempts, parked.Error, maxAttempts, tc.text)
			}
			if lag.Parked != 1 || lag.Errors < maxAttempts {
				t.Fatalf("lag: %+v, want 1 parked and at least %d errors", lag, maxAttempts)
			}
			// Once in its batch, then alone for each attempt.
			if got, want := met.Load(), int32(1+maxAttempts); got != want {
				t.Fatalf("the handler met the poisoned event %d times, want %d", got, want)
			}
		})
	}
}

// A Permanent failure that also closes the connection is given up in the
// next session without another attempt: the attempt and its error cross
// the session restart.
func TestPermanentFailureThatClosesTheConnectionIsParkedAtOnce(t *testing.T) {
	t.Parallel()
	var met atomic.Int32
	parked, _ := runPoisoned(t, func(ctx context.Context, tx pgx.Tx) error {
		if err := leaveRowsOpen(ctx, tx); err != nil {
			return err
		}
		return projections.Permanent(errors.New("poisoned for good"))
	}, &met)
	if parked.Attempts != 1 || !strings.Contains(parked.Error, "poisoned for good") {
		t.Fatalf("parked after %d attempts with %q, want 1 attempt and the handler's error", parked.Attempts, parked.Error)
	}
	// Once in its batch, once alone; parked without meeting it again.
	if got := met.Load(); got != 2 {
		t.Fatalf("the handler met the poisoned event %d times, want 2", got)
	}
}

// An event whose handling makes the server drop the connection every time
// is parked after MaxSessionBreaks breaks in a row, with an error that
// says so, instead of restarting the session on it for ever.
func TestEventThatBreaksTheSessionIsParked(t *testing.T) {
	t.Parallel()
	var met atomic.Int32
	parked, lag := runPoisoned(t, dropConnection, &met)
	if want := fmt.Sprintf("session broke %d times in a row", maxBreaks); parked.Attempts != maxBreaks ||
		!containsAll(parked.Error, want, "terminating connection due to administrator command") {
		t.Fatalf("parked after %d attempts with %q, want %d and %q with the server's error", parked.Attempts, parked.Error, maxBreaks, want)
	}
	if lag.Parked != 1 || lag.Errors < maxBreaks {
		t.Fatalf("lag: %+v, want 1 parked and at least %d errors", lag, maxBreaks)
	}
	// Once in its batch (a break counted against no event), then alone
	// until the bound; parked without meeting the handler again.
	if got, want := met.Load(), int32(1+maxBreaks); got != want {
		t.Fatalf("the handler met the poisoned event %d times, want %d", got, want)
	}
}

// With StopOnError, the projection stops before such an event, with the
// failures or breaks in the error Lag shows; after Resume the event is
// tried afresh.
func TestEventThatBreaksTheSessionStopsOnError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fail  func(ctx context.Context, tx pgx.Tx) error
		times int32
		texts []string
	}{
		{"rows left open", failures[0].fail, maxAttempts, []string{"poisoned: rows left open"}},
		{"connection dropped", dropConnection, maxBreaks, []string{fmt.Sprintf("session broke %d times in a row", maxBreaks), "administrator command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
				return tc.fail(ctx, tx)
			}, &met)
			p.StopOnError = true
			pool := database(t)
			rt := newRuntime(t, pool, store, breaksConfig(), p)
			run(t, rt)
			l := waitStopped(t, rt) // fails after its deadline if the runner is stuck at the event
			if !containsAll(l.LastError, append([]string{poison.ID.String()}, tc.texts...)...) {
				t.Fatalf("last error %q: want the event and %q", l.LastError, tc.texts)
			}
			if l.Position.Compare(poison.Position) >= 0 || l.Parked != 0 {
				t.Fatalf("stopped projection: %+v, want it before the poisoned event, nothing parked", l)
			}
			if got, want := met.Load(), 1+tc.times; got != want {
				t.Fatalf("the handler met the poisoned event %d times, want %d", got, want)
			}
			if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
				t.Fatalf("the poisoned event is in the read model %d times", n)
			}
			broken.Store(false)
			resumeCaughtUp(t, rt, "strict", pool, store)
			if n := seenTimes(t, pool, poison.ID.String()); n != 1 {
				t.Fatalf("the poisoned event is in the read model %d times after resume, want 1", n)
			}
		})
	}
}

// Fewer failures than the bounds at one event are not a verdict: two
// events that each, applied alone, drop the connection MaxSessionBreaks-1
// times, or fail with rows left open MaxAttempts-1 times, then succeed,
// are applied once and nothing is parked. The attempts of the second kind
// go on across the sessions their failures end.
func TestFewerBreaksThanTheBoundParkNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fail  func(ctx context.Context, tx pgx.Tx) error
		bound int32
	}{
		{"connection dropped", dropConnection, maxBreaks},
		{"rows left open", failures[0].fail, maxAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
					// A batch's failure is not counted against the event;
					// applied alone, it fails until it has done so bound-1
					// times.
					if len(evs) == 1 && alone.Add(1) >= tc.bound {
						continue
					}
					return tc.fail(ctx, tx)
				}
				return nil
			})
			pool := database(t)
			rt := newRuntime(t, pool, store, breaksConfig(), p)
			runUntilCaughtUp(t, rt)
			for id, alone := range flaky {
				if got := alone.Load(); got != tc.bound {
					t.Fatalf("event %s was applied alone %d times, want %d (%d failures, then success)", id, got, tc.bound, tc.bound-1)
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
		})
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
		if _, ok := runner.Load(c.Conn); !ok || !bytes.Contains(c.Data, []byte("begin isolation level read committed\x00")) {
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
