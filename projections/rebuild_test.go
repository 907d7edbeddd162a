package projections_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// A StopOnError projection whose rebuild meets an event it cannot apply
// stops the rebuild, not the live projection: the live runner keeps
// applying new events to the generation readers see, and the rebuild
// resumes from before the event once the handler is fixed.
func TestRebuildFailureLeavesTheLiveProjectionRunning(t *testing.T) {
	t.Parallel()
	// The new code fails on an event the old code applied.
	var newCode atomic.Bool
	store, poison, pool, rt := runStrict(t, &newCode, "cannot apply any more")
	waitCaughtUp(t, rt)

	newCode.Store(true)
	_, err := rt.Rebuild(context.Background(), "strict", projections.RebuildOptions{})
	if err == nil || !containsAll(err.Error(), poison.ID.String(), "cannot apply any more") {
		t.Fatalf("Rebuild over the failing event: %v, want its error", err)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[0]; l.Stopped || l.Generation != 1 || l.Rebuilding != 2 || l.RebuildPosition.Compare(poison.Position) >= 0 {
		t.Fatalf("after the failed rebuild: %+v, want generation 1 running, generation 2 stopped before the event", l)
	}
	fill(t, store, 70, 7)
	waitCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("the live generation has %d events, want %d", got, want)
	}

	newCode.Store(false)
	res, err := rt.Rebuild(context.Background(), "strict", projections.RebuildOptions{})
	if err != nil || !res.Resumed || res.Generation != 2 {
		t.Fatalf("Rebuild after the fix: %+v %v, want generation 2 resumed", res, err)
	}
	waitCaughtUp(t, rt)
	if got, want := seenCount(t, pool), countHandled(t, store); got != want {
		t.Fatalf("the rebuilt generation has %d events, want %d", got, want)
	}
}

// A live StopOnError runner gives up on an event while a rebuild, which
// applied that event, swaps its generation in: the stop belongs to the
// retired generation and must not stop the new one, which runs on.
func TestStopOfARetiredGenerationDoesNotStopTheNewOne(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 200, 20)
	poison := eventsOf(t, store, "distribution.viewed")[50]
	pool := database(t)
	cfg := fastConfig()
	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg.ApplicationName = "stopswap-" + hex.EncodeToString(b[:])

	var rt *projections.Runtime
	rebuilt := make(chan error, 1)
	var attempts atomic.Int32
	// Generation 1 cannot apply the event; on its last attempt, a rebuild
	// (which can) reaches its swap, which waits for this transaction.
	handler := func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		var schema string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		for _, e := range evs {
			if e.ID == poison.ID && strings.HasSuffix(schema, "_g1") {
				if len(evs) == 1 && attempts.Add(1) == int32(cfg.Retry.MaxAttempts) {
					go func() {
						_, err := rt.Rebuild(context.Background(), "stopswap", projections.RebuildOptions{})
						rebuilt <- err
					}()
					if err := waitForLockWait(ctx, pool, cfg.ApplicationName+":rebuild:stopswap"); err != nil {
						return err
					}
				}
				return errors.New("generation 1 cannot apply it")
			}
			if _, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID); err != nil {
				return err
			}
		}
		return nil
	}
	p := seenProjection("stopswap", nil)
	p.Handler = projections.HandlerFunc(handler)
	p.StopOnError = true
	rt = newRuntime(t, pool, store, cfg, p)
	run(t, rt)
	select {
	case err := <-rebuilt:
		if err != nil {
			t.Fatalf("Rebuild: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the rebuild did not end")
	}
	fill(t, store, 70, 7)
	want := countHandled(t, store)
	deadline := time.Now().Add(60 * time.Second)
	for seenCount(t, pool) != want {
		lag, err := rt.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if lag[0].Stopped {
			t.Fatalf("the new generation was stopped by the old one's failure: %+v", lag[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("seen %d events, want %d: %+v", seenCount(t, pool), want, lag[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[0]; l.Stopped || l.Generation != 2 {
		t.Fatalf("after the swap: %+v, want generation 2 running", l)
	}
}

// waitForLockWait waits until a session of the given application_name
// waits for a lock.
func waitForLockWait(ctx context.Context, pool *pgxpool.Pool, app string) error {
	for {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock')`, app).Scan(&waiting)
		if err != nil || waiting {
			return err
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// A resumed rebuild reads the log from its checkpoint, which includes the
// event at the checkpoint, already applied; it must not count that event
// among the ones it read: the CLI's progress total, rate and ETA and
// `replay`'s "N events read" are of the events left to this run (there
// were N+1, one too many, and a total one above the events left).
func TestResumedRebuildCountsOnlyTheEventsLeft(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 250, 25)
	pool := database(t)
	cfg := fastConfig()
	cfg.BatchSize = 50
	rt := newRuntime(t, pool, store, cfg, audit.Projection())

	l := interruptedRebuild(t, rt, audit.Name, 100)
	stopped := l.RebuildPosition.Commit
	if l.Rebuilding != 2 || stopped == 0 || stopped >= 250 {
		t.Fatalf("after the interruption: %+v", l)
	}
	var first *projections.RebuildProgress
	res, err := rt.Rebuild(context.Background(), audit.Name, projections.RebuildOptions{Progress: func(p projections.RebuildProgress) {
		if first == nil {
			first = &p
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(250 - stopped); !res.Resumed || res.Events != want {
		t.Fatalf("resumed Rebuild from %d: %+v, want %d events read", stopped, res, want)
	}
	if first == nil || int64(first.Position.Commit)-first.Events != int64(stopped) {
		t.Fatalf("first progress of the resumed Rebuild: %+v, want its position minus its events to be %d, where it resumed", first, stopped)
	}
}

// interruptedRebuild starts a rebuild of the projection name and cancels
// it once it has read at least after events; it returns the projection's
// Lag then, which shows where the unfinished rebuild stopped.
func interruptedRebuild(tb testing.TB, rt *projections.Runtime, name string, after int64) projections.Lag {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := rt.Rebuild(ctx, name, projections.RebuildOptions{Progress: func(p projections.RebuildProgress) {
		if p.Events >= after {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		tb.Fatalf("interrupted Rebuild of %s: %v", name, err)
	}
	lag, err := rt.Lag(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range lag {
		if l.Projection == name {
			return l
		}
	}
	tb.Fatalf("no lag for %s in %+v", name, lag)
	return projections.Lag{}
}
