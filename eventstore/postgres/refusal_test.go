package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
)

// holdAppendLock takes the store's append lock on a connection of its own,
// as another process's long transaction would, and returns its release.
func holdAppendLock(t *testing.T, s *postgres.Store, pool *pgxpool.Pool) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := migrate.LockKey("append", s.Schema())
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		conn.Release()
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				t.Error(err)
			}
			conn.Release()
		})
	}
	t.Cleanup(release)
	return release
}

// waitForLockWaiters waits until n groups of this store's schema wait for
// the append lock.
func waitForLockWaiters(t *testing.T, s *postgres.Store, pool *pgxpool.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.query LIKE '%eventstream_append%'
			AND l.objid = ($1::bigint & 4294967295)::oid`, migrate.LockKey("append", s.Schema())).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d groups wait for the append lock after 10 s, want %d", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A committer holds back a small group while another is in flight, but
// not behind a group that is stuck: after maxHoldBack it sends it anyway.
// Here the first group waits for a lock held outside the store; the second
// append's group must reach the server too, instead of waiting for the
// first to end (before the bound it waited as long as the first did).
func TestSmallGroupNotHeldBehindAStuckOne(t *testing.T) {
	t.Parallel()
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 2, MinOverlapEvents: 1000})
	ctx := context.Background()
	release := holdAppendLock(t, s, pool)
	errs := make(chan error, 2)
	go func() { _, err := s.Append(ctx, "stuck-1", eventstore.NoStream, thing(1)); errs <- err }()
	waitForLockWaiters(t, s, pool, 1)
	go func() { _, err := s.Append(ctx, "stuck-2", eventstore.NoStream, thing(2)); errs <- err }()
	waitForLockWaiters(t, s, pool, 2)
	release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.Pos(2) {
		t.Fatalf("head %v (%v), want 2", head, err)
	}
}

// An append whose context ends while it waits in the queue is answered
// with the context's error and never written.
func TestQueuedAppendCancelled(t *testing.T) {
	t.Parallel()
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1})
	ctx := context.Background()
	release := holdAppendLock(t, s, pool)
	first := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "queue-first", eventstore.NoStream, thing(1)); first <- err }()
	waitForLockWaiters(t, s, pool, 1)

	// The only committer is busy: this append waits in the queue.
	qctx, cancel := context.WithCancel(ctx)
	queued := make(chan error, 1)
	go func() { _, err := s.Append(qctx, "queue-cancelled", eventstore.NoStream, thing(2)); queued <- err }()
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Queued == 1 },
		func() string { return "the second append never waited in the queue" })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued append: %v, want context.Canceled", err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Once the committer has been through the queue, the cancelled append
	// is not in the log.
	if _, err := s.Append(ctx, "queue-after", eventstore.NoStream, thing(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "queue-cancelled", 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("cancelled append: reading its stream gave %v, want ErrStreamNotFound", err)
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.Pos(2) {
		t.Fatalf("head %v (%v), want 2", head, err)
	}
}

// PostgreSQL refusing the data itself (SQLSTATE class 22, here raised by a
// trigger standing for any server-side rule) is a ValidationError with rule
// "storage" for that append alone; its neighbours in the group land.
func TestDataExceptionIsAStorageRefusal(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, 8)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.payload->>'title' = 'poison' THEN
				RAISE EXCEPTION 'poisoned payload' USING ERRCODE = '22023';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER test_refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	var ve *eventstore.ValidationError
	if err := poisonedGroup(t, s, "data", 16, 5); !errors.As(err, &ve) || ve.Rule != "storage" || !errors.Is(err, eventstore.ErrValidation) {
		t.Fatalf("poisoned append: %v (%T), want a ValidationError with rule storage", err, err)
	}
}

// poisonedGroup appends n single events to new streams at once, so that
// they share groups; the one numbered bad has the title "poison". Every
// other append must land, and the poisoned one leave nothing; it returns
// the poisoned append's error.
func poisonedGroup(t *testing.T, s *postgres.Store, prefix string, n, bad int) error {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := thing(i)
			if i == bad {
				e.Payload = json.RawMessage(fmt.Sprintf(`{"n": %d, "title": "poison"}`, i))
			}
			<-start
			_, errs[i] = s.Append(ctx, fmt.Sprintf("%s-%d", prefix, i), eventstore.NoStream, e)
		}(i)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i != bad && err != nil {
			t.Fatalf("append %d failed with its poisoned neighbour: %v", i, err)
		}
	}
	if head, _ := s.Head(ctx); head != eventstore.Pos(uint64(n-1)) {
		t.Fatalf("head %v, want %d", head, n-1)
	}
	if _, err := s.ReadStream(ctx, fmt.Sprintf("%s-%d", prefix, bad), 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the refused append left something: %v", err)
	}
	if errs[bad] == nil {
		t.Fatal("the poisoned append was accepted")
	}
	return errs[bad]
}

// A group holding both the retry of a stored append and a conflicting
// append goes down the careful path (the retry's id is already stored):
// there the retry gets its original result and the conflict its
// ConcurrencyError, and nothing is written twice.
func TestCarefulPathDecidesRetryAndConflict(t *testing.T) {
	t.Parallel()
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1})
	ctx := context.Background()
	stored, err := s.Append(ctx, "careful-a", eventstore.NoStream, thing(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "careful-b", eventstore.NoStream, thing(2)); err != nil {
		t.Fatal(err)
	}

	// Queue the two behind a group that waits for the lock, so that the
	// only committer takes them together.
	release := holdAppendLock(t, s, pool)
	filler := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "careful-filler", eventstore.NoStream, thing(3)); filler <- err }()
	waitForLockWaiters(t, s, pool, 1)
	retry := stored.Events[0]
	type answer struct {
		res eventstore.AppendResult
		err error
	}
	retried, conflicted := make(chan answer, 1), make(chan answer, 1)
	go func() {
		e := thing(1)
		e.ID = retry.ID
		res, err := s.Append(ctx, "careful-a", eventstore.Any, e)
		retried <- answer{res, err}
	}()
	go func() {
		res, err := s.Append(ctx, "careful-b", eventstore.NoStream, thing(4))
		conflicted <- answer{res, err}
	}()
	// Both wait in the queue, so that the committer takes them together.
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Queued == 2 },
		func() string { return fmt.Sprintf("%d appends queued behind the filler, want 2", s.Stats().Queued) })
	release()
	if err := <-filler; err != nil {
		t.Fatal(err)
	}
	r := <-retried
	if r.err != nil || len(r.res.Events) != 1 || r.res.Events[0].ID != retry.ID || r.res.Events[0].Position != retry.Position {
		t.Fatalf("retry of a stored append: %+v, %v; want its original result at %v", r.res, r.err, retry.Position)
	}
	c := <-conflicted
	var ce *eventstore.ConcurrencyError
	if !errors.As(c.err, &ce) || ce.Actual != 1 || ce.Stream != "careful-b" {
		t.Fatalf("NoStream append to an existing stream: %v, want a ConcurrencyError with actual version 1", c.err)
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 3 {
		t.Fatalf("%d events stored, want 3 (two first appends and the filler)", count)
	}
}

// storageError is the PgError behind a storage refusal, if any.
func storageError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}
