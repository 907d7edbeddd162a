package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/syncbuf"
)

// stalledNext starts sub.Next with a context of a minute on a network that
// forwards nothing (the proxy stalls), so that the Next is caught in its
// read of the log, and returns where its error will arrive.
func stalledNext(t *testing.T, e *stallEnv, sub eventstore.Subscription) <-chan error {
	t.Helper()
	e.proxy.SetStall(true)
	t.Cleanup(func() { e.proxy.SetStall(false) })
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond) // Next has sent its read and waits for the answer
	return errc
}

func wantClosedSoon(t *testing.T, what string, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("%s: %v, want eventstore.ErrClosed", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked 5 s after the Close (it waits for a database that does not answer)", what)
	}
}

// TestCloseEndsANextStuckInARead: a Next whose read of the log does not
// come back (the network to the database hangs) returns ErrClosed when the
// subscription is closed, as a Next waiting for events does, instead of
// holding its caller until its own deadline.
func TestCloseEndsANextStuckInARead(t *testing.T) {
	t.Parallel()
	e := newStallEnv(t)
	sub, err := e.a.Subscribe(context.Background(), eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	errc := stalledNext(t, e, sub)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	wantClosedSoon(t, "Next stuck in a read when its subscription is closed", errc)
}

// TestStoreCloseEndsANextStuckInARead is the same with the store closed.
func TestStoreCloseEndsANextStuckInARead(t *testing.T) {
	t.Parallel()
	e := newStallEnv(t)
	sub, err := e.a.Subscribe(context.Background(), eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	errc := stalledNext(t, e, sub)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		e.a.Close()
	}()
	wantClosedSoon(t, "Next stuck in a read when its store is closed", errc)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Store.Close did not return")
	}
}

// TestStoreCloseDuringANextReadIsErrClosed: a store that owns its pool is
// closed while a Next waits for a connection of it (all of them are busy):
// the Next returns ErrClosed at once. (Before, it went on waiting for a
// connection, past the Close.)
func TestStoreCloseDuringANextReadIsErrClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	s, err := postgres.Open(ctx, u+"&pool_max_conns=1", testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, err := s.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	held, err := s.Pool().Acquire(ctx) // the pool's only connection
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			held.Release()
		}
	}
	defer release()
	errc := make(chan error, 1)
	go func() {
		nctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := sub.Next(nctx)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond) // Next waits for the connection
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		s.Close() // waits for the held connection to come back
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("Next during the store's Close: %v, want eventstore.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Next did not return after the store's Close")
	}
	release()
	<-closed
}

// TestSubscriptionSurvivesTerminatedConnections terminates, with
// pg_terminate_backend, the LISTEN connection of a subscriber's store and
// then every connection of its pool, several times, while another store
// (another process: it wakes nobody in this one) appends. The subscriber,
// whose safety poll is an hour, must be woken by a new LISTEN connection,
// see every event once in position order, and report a lost connection,
// if at all, as eventstore.ErrUnavailable.
func TestSubscriptionSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, _ := pgtest.Schema(t)
	writer, err := postgres.Open(ctx, u, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	pool, app := namedPool(t, ctx, u, "es-terminate-test-")
	var logged syncbuf.Buffer
	reader, err := postgres.New(ctx, pool, testRegistry(t), postgres.Options{SkipMigrate: true, PollInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	sub, err := reader.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	listening := func() int {
		var pid int
		err := writer.Pool().QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%' AND state = 'idle'`, app).Scan(&pid)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	var want []eventstore.Event
	var got []eventstore.Event
	next := func(round int) {
		t.Helper()
		for len(got) < len(want) {
			nctx, ncancel := context.WithTimeout(ctx, 20*time.Second)
			evs, err := sub.Next(nctx)
			ncancel()
			if err != nil {
				if errors.Is(err, eventstore.ErrUnavailable) && ctx.Err() == nil {
					continue // a terminated pool connection: retry, as the contract says
				}
				t.Fatalf("round %d: Next after %d of %d events: %v", round, len(got), len(want), err)
			}
			got = append(got, evs...)
		}
	}
	for round := range 5 {
		waitFor(t, 10*time.Second, func() bool { return listening() != 0 }, func() string { return "the reader does not listen" })
		old := listening()
		// Everything before this round has arrived: nothing is in flight.
		res, err := writer.Append(ctx, fmt.Sprintf("terminated-%d", round), eventstore.NoStream, thing(1), thing(2), thing(3))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Events...)
		if _, err := writer.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
			t.Fatal(err)
		}
		res, err = writer.Append(ctx, fmt.Sprintf("terminated-%d", round), eventstore.Exact(3), thing(4))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Events...)
		next(round)
		// And once the reader listens again, an event appended then.
		waitFor(t, 10*time.Second, func() bool { p := listening(); return p != 0 && p != old }, func() string { return "no new LISTEN connection" })
		res, err = writer.Append(ctx, fmt.Sprintf("terminated-%d", round), eventstore.Exact(4), thing(5))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Events...)
		next(round)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Position != want[i].Position {
			t.Fatalf("event %d: got %v at %v, want %v at %v", i, got[i].ID, got[i].Position, want[i].ID, want[i].Position)
		}
	}
	// Said through Options.Logger, not slog's default.
	if !strings.Contains(logged.String(), "LISTEN connection lost") {
		t.Fatalf("the store's logger did not hear of the lost LISTEN connections:\n%s", logged.String())
	}
}

// TestTerminatedListenConnectionIsLoggedWithItsCause terminates the LISTEN
// connection (pg_terminate_backend): the store's warning must give the
// server's reason, not say that the connection stopped answering, which
// sends an operator looking for a network partition. (The wait's own
// timer was cancelled before its error was looked at, so every lost
// connection was taken for a silent one and pinged, and the ping's "conn
// closed" was logged instead.)
func TestTerminatedListenConnectionIsLoggedWithItsCause(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, _ := pgtest.Schema(t)
	pool, app := namedPool(t, ctx, u, "es-terminate-log-")
	var logged syncbuf.Buffer
	s, err := postgres.New(ctx, pool, testRegistry(t), postgres.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, err := s.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	terminated := func() bool {
		tag, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%' AND state = 'idle' AND pid <> pg_backend_pid()`, app)
		if err != nil {
			t.Fatal(err)
		}
		return tag.RowsAffected() > 0
	}
	waitFor(t, 10*time.Second, terminated, func() string { return "the store never listened" })
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logged.String(), "LISTEN connection lost") },
		func() string { return "no warning of the lost LISTEN connection" })
	if got := logged.String(); !strings.Contains(got, "57P01") || strings.Contains(got, "does not answer") {
		t.Fatalf("warning of a LISTEN connection the server terminated does not give the server's reason (57P01):\n%s", got)
	}
}

// namedPool opens a pool on url whose sessions carry an application name
// of its own (prefix and a random suffix), so that a test can find them in
// pg_stat_activity among the parallel tests' sessions. Closed at the
// test's end.
func namedPool(t *testing.T, ctx context.Context, url, prefix string) (*pgxpool.Pool, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	app := prefix + hex.EncodeToString(b[:])
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, app
}
