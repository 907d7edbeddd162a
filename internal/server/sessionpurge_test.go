package server_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
)

// TestSessionPurgeDeletesInBatches: a started server deletes the expired
// sessions SessionPurgeBatch at a time, each batch a statement and a
// transaction of its own, until a batch comes short, so that millions of
// expired rows are never one transaction holding every row's lock until
// it commits. It keeps the live sessions, and skips an expired one that a
// sign-in holds locked instead of waiting for it.
func TestSessionPurgeDeletesInBatches(t *testing.T) {
	t.Parallel()
	const expired, live, batch = 2500, 5, 1000
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, err := server.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	// Each DELETE statement on the table records how many rows it deleted
	// and in which transaction.
	for _, q := range []string{
		`CREATE TABLE purge_statements (seq bigserial PRIMARY KEY, xact bigint NOT NULL, deleted bigint NOT NULL)`,
		`CREATE FUNCTION log_purge_statement() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO purge_statements (xact, deleted) SELECT txid_current(), count(*) FROM gone;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER log_purge_statement AFTER DELETE ON eventstream_ui_sessions
			REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_purge_statement()`,
		fmt.Sprintf(`INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			SELECT encode(sha256(('expired-' || i)::bytea), 'hex'), encode(sha256(('token-' || i %% 7)::bytea), 'hex'),
				now() - make_interval(secs => i)
			FROM generate_series(1, %d) i`, expired),
		fmt.Sprintf(`INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			SELECT encode(sha256(('live-' || i)::bytea), 'hex'), encode(sha256(('token-' || i %% 7)::bytea), 'hex'),
				now() + interval '1 hour'
			FROM generate_series(1, %d) i`, live),
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(where string) []string {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT session_sha256 FROM eventstream_ui_sessions WHERE `+where+` ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	liveBefore := ids("expires_at > now()")

	// A sign-in deleting the expired sessions holds one of them locked
	// for the whole purge.
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	var locked string
	if err := lock.QueryRow(ctx, `SELECT session_sha256 FROM eventstream_ui_sessions WHERE expires_at <= now() ORDER BY expires_at LIMIT 1 FOR UPDATE`).Scan(&locked); err != nil {
		t.Fatal(err)
	}

	s, err := server.New(server.Config{Store: memoryStore(t), Registry: schemasReg(), Pool: pool,
		Auth:                 server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
		SessionPurgeInterval: time.Hour, // the purge at Start only
		SessionPurgeBatch:    batch,
		Logger:               slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left := ids("expires_at <= now()")
		if slices.Equal(left, []string{locked}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d expired sessions left 20s after Start, want only the one a sign-in holds locked", len(left))
		}
	}
	s.Close() // the purge has returned
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	if got := ids("expires_at > now()"); !slices.Equal(got, liveBefore) || len(got) != live {
		t.Errorf("live sessions after the purge: %d, want the %d there were before", len(got), live)
	}
	rows, err := pool.Query(ctx, `SELECT xact, deleted FROM purge_statements ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []int64
	xacts := map[int64]bool{}
	for rows.Next() {
		var x, n int64
		if err := rows.Scan(&x, &n); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, n)
		xacts[x] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The locked session is skipped, not waited for: the last batch is
	// short by it, and ends the purge.
	if want := []int64{batch, batch, expired - 1 - 2*batch}; !slices.Equal(deleted, want) {
		t.Fatalf("rows deleted by each statement of the purge: %v, want %v (batches of SessionPurgeBatch %d)", deleted, want, batch)
	}
	if len(xacts) != len(deleted) {
		t.Fatalf("%d statements of the purge ran in %d transactions, want one each", len(deleted), len(xacts))
	}
}

// TestSignInDeletesABoundedShareOfExpiredSessions: a sign-in deletes the
// expired sessions of its own token and at most 100 others, and skips one
// that a purge holds locked instead of waiting for it: the backlog is the
// purge's, so a sign-in after a long quiet spell neither carries it in its
// transaction nor stalls behind a purge's batch.
func TestSignInDeletesABoundedShareOfExpiredSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnvWith(t, envOptions{})
	own := fmt.Sprintf("%x", sha256.Sum256([]byte(acmeToken)))
	for _, q := range []string{
		`INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			SELECT encode(sha256(('other-' || i)::bytea), 'hex'), encode(sha256(('token-' || i % 5)::bytea), 'hex'),
				now() - make_interval(secs => i)
			FROM generate_series(1, 250) i`,
		`INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			SELECT encode(sha256(('own-' || i)::bytea), 'hex'), '` + own + `', now() - make_interval(secs => 1000 + i)
			FROM generate_series(1, 3) i`,
	} {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// A purge's batch holds one of the others' expired sessions.
	lock, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	var locked string
	if err := lock.QueryRow(ctx, `SELECT session_sha256 FROM eventstream_ui_sessions
		WHERE token_sha256 <> $1 AND expires_at <= now() ORDER BY expires_at DESC LIMIT 1 FOR UPDATE`, own).Scan(&locked); err != nil {
		t.Fatal(err)
	}
	done := make(chan response, 1)
	go func() { done <- e.signIn(acmeToken) }()
	select {
	case r := <-done:
		if r.code != http.StatusSeeOther {
			t.Fatalf("sign-in: %d %s", r.code, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sign-in waited on an expired session a purge holds locked")
	}
	count := func(where string, args ...any) int {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM eventstream_ui_sessions WHERE `+where, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`token_sha256 = $1 AND expires_at <= now()`, own); n != 0 {
		t.Errorf("%d of the token's own expired sessions kept after its sign-in", n)
	}
	// 253 expired: its 3, then at most 97 of the others.
	if n := count(`token_sha256 <> $1 AND expires_at <= now()`, own); n < 153 || n > 250 {
		t.Errorf("%d of the others' 250 expired sessions kept, want 153 to 249 (at most 100 deleted in all, some deleted)", n)
	}
	if n := count(`session_sha256 = $1`, locked); n != 1 {
		t.Errorf("the locked expired session was deleted under its lock")
	}
	if n := count(`token_sha256 = $1 AND expires_at > now()`, own); n != 1 {
		t.Errorf("%d live sessions of the token after its sign-in, want 1", n)
	}
}
