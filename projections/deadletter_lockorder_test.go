package projections_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// A retry of a parked event that runs while Reprocess (or a rebuild's
// swap, or CancelRebuild) holds the projection's state row waits for it
// and then finds the entry as that left it; neither call fails with
// "deadlock detected". RetryParked took the dead-letter row first and the
// state row second, the others the state row first and the dead-letter
// rows second, so each waited for the other and PostgreSQL aborted one.
func TestRetryParkedDuringReprocessDoesNotDeadlock(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	poison := poisoned(t, store)
	p := seenProjection("seen", func(e eventstore.Event) error {
		if e.ID == poison.ID {
			return projections.Permanent(errors.New("poison"))
		}
		return nil
	})
	const app = "retry-lock-order"
	retrying := make(chan struct{})
	var pool *pgxpool.Pool // set below, before Rewind runs
	// retryDone closes when RetryParked has returned, with its error in
	// retryErr: a retry that ends without ever waiting says why.
	retryDone := make(chan struct{})
	var retryErr error
	// Rewind runs in Reprocess's transaction, which holds the state row
	// now: it lets the retry start, and returns (so that Reprocess goes
	// on to delete the entries and commit) only once the retry's session
	// waits for a lock that Reprocess's session holds.
	p.Rewind = func(ctx context.Context, tx pgx.Tx, after eventstore.Position) error {
		close(retrying)
		return waitBlockedBy(ctx, pool, app, tx.Conn().PgConn().PID(), retryDone, &retryErr)
	}
	pool = databaseNamed(t, app)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	runUntilCaughtUp(t, rt)
	parked, err := rt.ListParked(context.Background(), "seen")
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked: %+v %v, want the poisoned event", parked, err)
	}
	retried := make(chan error, 1)
	go func() {
		<-retrying
		retryErr = rt.RetryParked(context.Background(), parked[0].ID)
		close(retryDone)
		retried <- retryErr
	}()
	before := eventstore.Position{Commit: poison.Position.Commit - 1}
	if err := rt.Reprocess(context.Background(), "seen", before); err != nil {
		t.Fatalf("Reprocess: %v", err)
	}
	// Reprocess dropped the entry, since the event will be tried again.
	if err := <-retried; !errors.Is(err, projections.ErrNotParked) {
		t.Fatalf("RetryParked: %v, want ErrNotParked", err)
	}
}

// waitBlockedBy waits until a session of the given application_name waits
// for a lock that the session holder holds, and fails when done closes
// first (with *doneErr, the blocked call's result: it ended without ever
// waiting) or after 20 s (saying what the sessions of app were doing).
//
// Each look is a statement of its own on pool, never one inside the
// holder's transaction: pg_stat_activity is read once per transaction
// and that snapshot is shown until the transaction ends, so a loop inside
// the transaction that first looked before the other session was blocked
// saw it not blocked every time after, however long it waited. That was
// why TestRetryParkedDuringReprocessDoesNotDeadlock failed under load
// with "the retry never waited for a lock" (the retry was slower to reach
// the state row than Rewind to its first look). pg_blocking_pids reads
// the lock manager itself, so the wait found is on the holder's locks,
// not any lock.
func waitBlockedBy(ctx context.Context, pool *pgxpool.Pool, app string, holder uint32, done <-chan struct{}, doneErr *error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var blocked bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE application_name = $1 AND $2::int = ANY (pg_blocking_pids(pid)))`, app, int64(holder)).Scan(&blocked); err != nil {
			return err
		}
		if blocked {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the call ended without waiting for a lock of session %d: %v", holder, *doneErr)
		default:
		}
		if time.Now().After(deadline) {
			var sessions string
			_ = pool.QueryRow(ctx, `SELECT coalesce(string_agg(format('%s %s %s/%s blocked by %s: %s', pid, state, wait_event_type, wait_event, pg_blocking_pids(pid), left(query, 80)), '; '), 'none')
				FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, app).Scan(&sessions)
			return fmt.Errorf("no session of %s waited for a lock of session %d; its sessions: %s", app, holder, sessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
