package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// An event whose failure shows only at COMMIT (a deferred constraint, or
// a handler that swallowed a failed statement, so COMMIT rolls back) is a
// failing event like any other: the server answered, the transaction is
// known to have rolled back, so the event is retried and parked and the
// projection goes on, instead of restarting on it for ever.
func TestFailureAtCommitIsParked(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	for _, tc := range []struct {
		name string
		fail func(ctx context.Context, tx pgx.Tx) error
		want string // in the parked entry's error
	}{
		{"deferred constraint", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO marks (k) VALUES (1), (1)`) // checked at COMMIT
			return err
		}, "marks_k"},
		{"swallowed statement error", func(ctx context.Context, tx pgx.Tx) error {
			_, _ = tx.Exec(ctx, `SELECT 1/0`) // the handler ignores it; the transaction is aborted
			return nil
		}, "rollback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := projections.Projection{
				Name:    "atcommit",
				Handles: projections.Types(1, seenTypes...),
				Migrations: fstest.MapFS{"001_seen.up.sql": {Data: []byte(
					`CREATE TABLE seen (n bigserial PRIMARY KEY, event_id uuid NOT NULL, tenant_id text NOT NULL);
					CREATE TABLE marks (k int, CONSTRAINT marks_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);`)}},
				Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
					if _, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID); err != nil {
						return err
					}
					if e.ID == poison.ID {
						return tc.fail(ctx, tx)
					}
					return nil
				}),
			}
			pool := database(t)
			rt := newRuntime(t, pool, store, fastConfig(), p)
			runUntilCaughtUp(t, rt)
			if got, want := seenCount(t, pool), countHandled(t, store)-1; got != want {
				t.Fatalf("seen %d events, want %d (all but the poisoned one)", got, want)
			}
			if n := seenTimes(t, pool, poison.ID.String()); n != 0 {
				t.Fatalf("the poisoned event was applied %d times", n)
			}
			parked, err := rt.ListParked(context.Background(), "atcommit")
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != 3 || !containsAll(parked[0].Error, tc.want) {
				t.Fatalf("parked: %+v, want the poisoned event after 3 attempts, with %q in its error", parked, tc.want)
			}
			// Still failing, a retry keeps the entry with one more attempt.
			var re *projections.RetryError
			if err := rt.RetryParked(context.Background(), parked[0].ID); !errors.As(err, &re) {
				t.Fatalf("RetryParked: %v, want a *RetryError", err)
			}
			if got, err := rt.GetParked(context.Background(), parked[0].ID); err != nil || got.Attempts != 4 {
				t.Fatalf("after a failed retry: %+v %v, want 4 attempts", got, err)
			}
		})
	}
}

// A handler error whose text PostgreSQL cannot store (a NUL byte, bytes
// that are not UTF-8) still parks the event, or stops the projection, and
// a failed retry still records the attempt: the text is made storable
// rather than failing the transaction that moves past the event.
func TestUnstorableErrorTextStillParks(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	fail := func(e eventstore.Event) error {
		if e.ID == poison.ID {
			return errors.New("bad byte \x00 and \xff\xfe in the payload")
		}
		return nil
	}
	t.Run("parked", func(t *testing.T) {
		t.Parallel()
		pool := database(t)
		rt := newRuntime(t, pool, store, fastConfig(), seenProjection("seen", fail))
		runUntilCaughtUp(t, rt)
		if got, want := seenCount(t, pool), countHandled(t, store)-1; got != want {
			t.Fatalf("seen %d events, want %d (all but the poisoned one)", got, want)
		}
		parked, err := rt.ListParked(context.Background(), "seen")
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != 3 || !containsAll(parked[0].Error, "bad byte", "in the payload") {
			t.Fatalf("parked: %+v, want the poisoned event after 3 attempts, with its error", parked)
		}
		var re *projections.RetryError
		if err := rt.RetryParked(context.Background(), parked[0].ID); !errors.As(err, &re) {
			t.Fatalf("RetryParked: %v, want a *RetryError", err)
		}
		if got, err := rt.GetParked(context.Background(), parked[0].ID); err != nil || got.Attempts != 4 {
			t.Fatalf("after a failed retry: %+v %v, want 4 attempts", got, err)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		t.Parallel()
		p := seenProjection("strict", fail)
		p.StopOnError = true
		pool := database(t)
		rt := newRuntime(t, pool, store, fastConfig(), p)
		run(t, rt)
		l := waitStopped(t, rt)
		if !containsAll(l.LastError, poison.ID.String(), "bad byte", "in the payload") || l.Position.Compare(poison.Position) >= 0 {
			t.Fatalf("stopped projection: %+v", l)
		}
	})
}

// RetryAllParked counts each listed entry once: applied, failed again, or
// gone (another process retried or skipped it between the list and its
// turn: not a failure). An error that is not one event's stops it, and
// what it had applied is still reported.
func TestRetryAllParkedCounts(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poisoned(t, store)
	viewed := eventsOf(t, store, "distribution.viewed")
	a, b, c := viewed[30], viewed[31], viewed[32]

	// park parks a, b and c, then heals; onRetry runs when an event is
	// handled again after healing.
	park := func(t *testing.T, name string, onRetry func(rt *projections.Runtime, e eventstore.Event) error) (*projections.Runtime, map[uuid.UUID]int64) {
		var healed atomic.Bool
		var rt *projections.Runtime
		p := seenProjection(name, func(e eventstore.Event) error {
			if e.ID != a.ID && e.ID != b.ID && e.ID != c.ID {
				return nil
			}
			if !healed.Load() {
				return errors.New("poisoned")
			}
			return onRetry(rt, e)
		})
		rt = newRuntime(t, database(t), store, fastConfig(), p)
		runUntilCaughtUp(t, rt)
		parked, err := rt.ListParked(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[uuid.UUID]int64{}
		for _, d := range parked {
			ids[d.EventID] = d.ID
		}
		if len(parked) != 3 || ids[a.ID] == 0 || ids[b.ID] == 0 || ids[c.ID] == 0 {
			t.Fatalf("parked: %+v, want the three poisoned events", parked)
		}
		healed.Store(true)
		return rt, ids
	}

	t.Run("applied, failed, gone", func(t *testing.T) {
		t.Parallel()
		var ids map[uuid.UUID]int64
		rt, ids := park(t, "retryall", func(rt *projections.Runtime, e eventstore.Event) error {
			switch e.ID {
			case a.ID:
				// Another operator skips c while a is being retried.
				return rt.SkipParked(context.Background(), ids[c.ID])
			case b.ID:
				return errors.New("still poisoned")
			}
			t.Errorf("event %s handled again; it was skipped", e.ID)
			return nil
		})
		res, err := rt.RetryAllParked(context.Background(), "retryall")
		if err != nil {
			t.Fatal(err)
		}
		if want := (projections.RetryAllResult{Applied: 1, Failed: 1, Gone: 1}); res != want {
			t.Fatalf("RetryAllParked = %+v, want %+v", res, want)
		}
		left, err := rt.ListParked(context.Background(), "retryall")
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].EventID != b.ID || left[0].Attempts != 4 {
			t.Fatalf("left parked: %+v, want b alone with 4 attempts", left)
		}
	})

	t.Run("stopped by an error", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rt, _ := park(t, "retryall_cancel", func(_ *projections.Runtime, e eventstore.Event) error {
			if e.ID == b.ID {
				cancel() // the operator's Ctrl-C, while b is retried
			}
			return nil
		})
		res, err := rt.RetryAllParked(ctx, "retryall_cancel")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RetryAllParked: %v, want context.Canceled", err)
		}
		if want := (projections.RetryAllResult{Applied: 1}); res != want {
			t.Fatalf("RetryAllParked = %+v before the error, want %+v", res, want)
		}
		left, err := rt.ListParked(context.Background(), "retryall_cancel")
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 2 || left[0].EventID != b.ID || left[1].EventID != c.ID {
			t.Fatalf("left parked: %+v, want b and c (a was applied; b's retry was cancelled)", left)
		}
	})
}

// The runtime's own reads of parked entries work under any DateStyle and
// in the modes that read results as text (the simple protocol, exec mode:
// what PgBouncer in transaction mode needs), where pgx parses timestamps
// in the ISO style only.
func TestParkedUnderANonISODateStyle(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			pool := databaseWith(t, func(cfg *pgxpool.Config) {
				cfg.ConnConfig.RuntimeParams["DateStyle"] = "SQL, DMY"
				cfg.ConnConfig.DefaultQueryExecMode = mode
			})
			rt := newRuntime(t, pool, store, fastConfig(), seenProjection("seen", func(e eventstore.Event) error {
				if e.ID == poison.ID {
					return errors.New("poisoned")
				}
				return nil
			}))
			before := time.Now()
			runUntilCaughtUp(t, rt)
			parked, err := rt.ListParked(context.Background(), "")
			if err != nil {
				t.Fatalf("ListParked: %v", err)
			}
			if len(parked) != 1 || parked[0].EventID != poison.ID {
				t.Fatalf("parked: %+v, want the poisoned event", parked)
			}
			got, err := rt.GetParked(context.Background(), parked[0].ID)
			if err != nil {
				t.Fatalf("GetParked: %v", err)
			}
			for _, ts := range []time.Time{got.FirstFailedAt, got.LastFailedAt} {
				if ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) || ts.Location() != time.UTC {
					t.Fatalf("parked times %v, %v; want UTC times of this run (%v)", got.FirstFailedAt, got.LastFailedAt, before)
				}
			}
			if got.LastFailedAt.Before(got.FirstFailedAt) {
				t.Fatalf("last failure %v before the first %v", got.LastFailedAt, got.FirstFailedAt)
			}
		})
	}
}

// The runtime's transactions are READ COMMITTED whatever the database's
// default: under repeatable read or serializable, a retry whose handler
// updates a read-model row that another transaction changed since the
// retry began failed with a serialization error, recorded as the event
// failing again.
func TestRetryUnderAStricterDefaultIsolation(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			pool := databaseWith(t, func(cfg *pgxpool.Config) {
				cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = level
			})
			var healed atomic.Bool
			p := projections.Projection{
				Name:    "iso",
				Handles: projections.Types(1, seenTypes...),
				Migrations: fstest.MapFS{"001_counter.up.sql": {Data: []byte(
					`CREATE TABLE counter (k int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0);`)}},
				Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
					if e.ID != poison.ID {
						return nil
					}
					if !healed.Load() {
						return errors.New("poisoned")
					}
					// Another transaction (the live runner, say) updates the
					// row and commits while the retry is under way.
					var schema string
					if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
						return err
					}
					if _, err := pool.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "counter"}.Sanitize()+` SET n = n + 1 WHERE k = 1`); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE counter SET n = n + 10 WHERE k = 1`)
					return err
				}),
			}
			rt := newRuntime(t, pool, store, fastConfig(), p)
			runUntilCaughtUp(t, rt)
			parked, err := rt.ListParked(context.Background(), "iso")
			if err != nil || len(parked) != 1 {
				t.Fatalf("parked: %+v %v, want the poisoned event", parked, err)
			}
			healed.Store(true)
			if err := rt.RetryParked(context.Background(), parked[0].ID); err != nil {
				t.Fatalf("RetryParked: %v, want it applied", err)
			}
			var n int
			if err := pool.QueryRow(context.Background(), `SELECT n FROM `+pgx.Identifier{generationSchema(t, pool, "iso")}.Sanitize()+`.counter WHERE k = 1`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 11 {
				t.Fatalf("counter = %d, want 11 (both updates)", n)
			}
		})
	}
}

// generationSchema is the schema of the named projection's active generation.
func generationSchema(t *testing.T, pool *pgxpool.Pool, name string) string {
	t.Helper()
	var schema string
	if err := pool.QueryRow(context.Background(), `SELECT schema_name FROM projection_generations WHERE projection = $1 AND state = 'active'`, name).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	return schema
}
