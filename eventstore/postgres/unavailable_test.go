package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// wantUnavailable fails the test unless err is an outage: errors.Is
// ErrUnavailable, an *UnavailableError, and not any of the refusals.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var ue *eventstore.UnavailableError
	if !errors.Is(err, eventstore.ErrUnavailable) || !errors.As(err, &ue) || ue.Err == nil {
		t.Errorf("%s with the database unreachable: %v (%T), want eventstore.ErrUnavailable", what, err, err)
		return
	}
	for _, refusal := range []error{eventstore.ErrValidation, eventstore.ErrConcurrency, eventstore.ErrStreamNotFound,
		eventstore.ErrDuplicateEvent, eventstore.ErrClosed, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, refusal) {
			t.Errorf("%s: %v also matches %v", what, err, refusal)
		}
	}
}

// TestOutageIsErrUnavailable: while the database cannot be reached, every
// call that needs it fails with eventstore.ErrUnavailable (retry later),
// which a caller can tell from a refusal and from its own deadline; a
// refusal that needs no database stays a refusal; and the store works
// again once the database is back, without being reopened.
func TestOutageIsErrUnavailable(t *testing.T) {
	t.Parallel()
	e := newStallEnv(t)
	ctx := context.Background()
	if _, err := e.a.Append(ctx, "outage-1", eventstore.NoStream, thing(1)); err != nil {
		t.Fatal(err)
	}
	sub, err := e.a.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if evs, err := sub.Next(ctx); err != nil || len(evs) != 1 {
		t.Fatalf("subscription before the outage: %d events, %v", len(evs), err)
	}

	e.proxy.SetRefuse(true) // the database is down: no new connection
	e.proxy.CutAll()        // and the open ones are gone
	_, err = e.a.Append(ctx, "outage-2", eventstore.NoStream, thing(2))
	wantUnavailable(t, "Append", err)
	_, err = e.a.ReadStream(ctx, "outage-1", 1, 0)
	wantUnavailable(t, "ReadStream", err)
	_, err = e.a.ReadStream(ctx, "outage-1", 2, 0) // the two-statement path
	wantUnavailable(t, "ReadStream from version 2", err)
	_, err = e.a.ReadAll(ctx, eventstore.ReadAllOptions{})
	wantUnavailable(t, "ReadAll", err)
	_, err = e.a.ReadAll(ctx, eventstore.ReadAllOptions{TenantID: "acme"}) // the filtered path
	wantUnavailable(t, "ReadAll filtered", err)
	_, err = e.a.Head(ctx)
	wantUnavailable(t, "Head", err)
	_, err = sub.Next(ctx)
	wantUnavailable(t, "Subscription.Next", err)

	// A refusal is decided before the database is needed: still a refusal.
	bad := thing(3)
	bad.Type = "no.such.type"
	if _, err := e.a.Append(ctx, "outage-3", eventstore.Any, bad); !errors.Is(err, eventstore.ErrValidation) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("invalid append during the outage: %v, want ErrValidation only", err)
	}

	// The caller's own deadline, hit while the database does not answer,
	// is the caller's error, not an outage.
	e.proxy.SetRefuse(false)
	e.proxy.SetStall(true)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = e.a.ReadStream(short, "outage-1", 1, 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("read past the caller's deadline: %v, want context.DeadlineExceeded only", err)
	}
	e.proxy.SetStall(false)
	e.proxy.CutAll() // the stalled connection is of no use any more

	// Back: the same store appends and reads again.
	waitFor(t, 10*time.Second, func() bool {
		_, err := e.a.Append(ctx, "outage-2", eventstore.NoStream, thing(2))
		return err == nil || errors.Is(err, eventstore.ErrConcurrency)
	}, func() string { return "the store did not recover after the outage" })
	evs, err := e.a.ReadStream(ctx, "outage-2", 1, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("outage-2 after the outage: %d events, %v", len(evs), err)
	}
	if evs, err := sub.Next(ctx); err != nil || len(evs) != 1 || evs[0].Stream != "outage-2" {
		t.Fatalf("subscription after the outage: %v, %v; want the one event of outage-2", evs, err)
	}
}

// TestDatabaseErrorIsNotUnavailable: an error the database answered with
// (here, a log table that is gone) is not an outage: retrying later would
// not help.
func TestDatabaseErrorIsNotUnavailable(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t, 4)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE events RENAME TO events_elsewhere`); err != nil {
		t.Fatal(err)
	}
	_, err := store.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err == nil || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("ReadAll of a missing table: %v, want an error that is not ErrUnavailable", err)
	}
	_, err = store.Append(ctx, "s", eventstore.Any, thing(1))
	if err == nil || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("Append to a missing table: %v, want an error that is not ErrUnavailable", err)
	}
}

// TestOpenUnreachableIsErrUnavailable: Open against an address where no
// database listens fails with ErrUnavailable, and says nothing of a
// password in the URL.
func TestOpenUnreachableIsErrUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	u, _ := pgtest.Schema(t)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	parsed.Host = addr
	parsed.User = url.UserPassword("root", "s3cret-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, parsed.String(), testRegistry(t))
	if err == nil {
		s.Close()
		t.Fatal("Open of an address where nothing listens succeeded")
	}
	wantUnavailable(t, "Open", err)
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("Open's error shows the password: %v", err)
	}
}
