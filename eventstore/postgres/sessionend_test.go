package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// A session the server ended for being idle (idle_session_timeout, SQLSTATE
// 57P05) is a lost connection: the append that finds it gone fails with
// ErrUnavailable (retry later), not with a plain error a caller takes for a
// defect (the HTTP API's 500 instead of 503), and a retry lands. Its
// sibling 25P03 (idle_in_transaction_session_timeout, which the careful path
// sets to 5 s for itself) ends a session the same way when the network
// stalls between two of its round trips. The pool pings a connection idle
// for more than a second before it hands it out, so a timeout under that
// reaches the append.
func TestSessionEndedByTheServerIsUnavailable(t *testing.T) {
	t.Parallel()
	u, _ := pgtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["idle_session_timeout"] = "100ms"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := postgres.New(context.Background(), pool, testRegistry(t), postgres.Options{Committers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, err := s.Append(ctx, "idle-1", eventstore.NoStream, thing(1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the timeout, under the pool's ping
	_, err = s.Append(ctx, "idle-2", eventstore.NoStream, thing(2))
	if err == nil {
		t.Fatal("the append after the idle timeout landed: the pool replaced the ended session, and this test checks nothing")
	}
	wantUnavailable(t, "Append on a session the server ended", err)
	if _, err := s.Append(ctx, "idle-2", eventstore.NoStream, thing(2)); err != nil {
		t.Fatalf("retry: %v", err)
	}
}
