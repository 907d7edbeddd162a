package cli_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// --session-ttl, --session-purge-interval and --session-purge-batch are
// checked before serve connects: the database URL here has no server
// behind it, so a serve that got as far as connecting would exit 75
// (unavailable) instead of 2.
func TestServeRefusesBadSessionFlagsBeforeStarting(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	for _, tc := range []struct {
		flag, value string
		want        string // in the message
	}{
		// 0 or less: the server would quietly take its default.
		{"--session-ttl", "0", "--session-ttl 0s: want 1s to 8760h0m0s (left unset: 12h0m0s)"},
		{"--session-ttl", "-1h", "--session-ttl -1h0m0s: want 1s to 8760h0m0s"},
		// Shorter than a sign-in's redirect; longer than a year.
		{"--session-ttl", "999ms", "--session-ttl 999ms: want 1s to 8760h0m0s"},
		{"--session-ttl", "8761h", "--session-ttl 8761h0m0s: want 1s to 8760h0m0s"},
		{"--session-purge-interval", "0", "--session-purge-interval 0s: want 1s to 24h0m0s (left unset: 15m0s)"},
		{"--session-purge-interval", "-5m", "--session-purge-interval -5m0s: want 1s to 24h0m0s"},
		// A busy loop on the database; less than daily.
		{"--session-purge-interval", "10ms", "--session-purge-interval 10ms: want 1s to 24h0m0s"},
		{"--session-purge-interval", "25h", "--session-purge-interval 25h0m0s: want 1s to 24h0m0s"},
		{"--session-purge-batch", "0", "--session-purge-batch 0: want 1 to 1000000 (left unset: 10000)"},
		{"--session-purge-batch", "-1", "--session-purge-batch -1: want 1 to 1000000"},
		{"--session-purge-batch", "1000001", "--session-purge-batch 1000001: want 1 to 1000000"},
		// Not a value of the flag's kind at all.
		{"--session-ttl", "12", "invalid argument"},
		{"--session-purge-batch", "1e4", "invalid argument"},
	} {
		r := c.runIn(context.Background(), "--database-url", nowhere, "serve", "--addr", "127.0.0.1:0", tc.flag, tc.value)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve %s %s: want exit 2, nothing served and %q in the message; got %s", tc.flag, tc.value, tc.want, r)
		}
	}
	// The bounds themselves, and the defaults, get as far as connecting.
	for _, args := range [][]string{
		{"--session-ttl", "1s", "--session-purge-interval", "1s", "--session-purge-batch", "1"},
		{"--session-ttl", "8760h", "--session-purge-interval", "24h", "--session-purge-batch", "1000000"},
		{"--session-ttl", "12h", "--session-purge-interval", "15m", "--session-purge-batch", "10000"},
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "serve", "--addr", "127.0.0.1:0"}, args...)...)
		if r.code != 75 {
			t.Errorf("serve %s with no database: want exit 75 (unavailable), got %s", strings.Join(args, " "), r)
		}
	}
	r := c.runIn(context.Background(), "serve", "--help")
	for _, want := range []string{
		"--session-ttl duration", "(default 12h0m0s)",
		"--session-purge-interval duration", "(default 15m0s)",
		"--session-purge-batch int", "(default 10000)",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("serve --help does not show %q: %s", want, r)
		}
	}
}

// --session-ttl, --session-purge-interval and --session-purge-batch reach
// the server: the purge at start deletes the expired sessions
// --session-purge-batch per statement; a session lasts --session-ttl, and
// once expired is deleted by the purge within --session-purge-interval,
// with nobody signing in.
func TestServeSessionFlagsReachTheServer(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	token := strings.TrimSpace(c.must(0, "tokens", "create", "acme").stdout) // migrates the sessions table
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Each DELETE statement on the table records how many rows it deleted.
	for _, q := range []string{
		`CREATE TABLE purge_statements (seq bigserial PRIMARY KEY, deleted bigint NOT NULL)`,
		`CREATE FUNCTION log_purge_statement() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO purge_statements (deleted) SELECT count(*) FROM gone;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER log_purge_statement AFTER DELETE ON eventstream_ui_sessions
			REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_purge_statement()`,
		`INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			SELECT encode(sha256(('expired-' || i)::bytea), 'hex'), repeat('1', 64), now() - make_interval(secs => i)
			FROM generate_series(1, 5) i`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM eventstream_ui_sessions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor := func(what string, within time.Duration, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !done(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, within)
			}
		}
	}

	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections",
		"--session-ttl", "3s", "--session-purge-interval", "1s", "--session-purge-batch", "2")
	waitFor("the purge at start deletes the 5 expired sessions", 30*time.Second, func() bool { return count() == 0 })
	var deleted []int64
	rows, err := conn.Query(ctx, `SELECT deleted FROM purge_statements ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []int64{2, 2, 1}; len(deleted) < 3 || !slices.Equal(deleted[:3], want) {
		t.Fatalf("rows deleted by each statement of the purge at start: %v, want %v first (--session-purge-batch 2)", deleted, want)
	}

	session := s.signIn(t, token)
	if got := s.open(t, session); got != http.StatusOK {
		t.Fatalf("a new session with --session-ttl 3s: %d, want 200", got)
	}
	var lasts float64
	if err := conn.QueryRow(ctx, `SELECT extract(epoch FROM expires_at - created_at)::float8 FROM eventstream_ui_sessions`).Scan(&lasts); err != nil {
		t.Fatal(err)
	}
	if lasts != 3 {
		t.Fatalf("the session lasts %vs, want the configured 3s", lasts)
	}
	waitFor("the session expires", 30*time.Second, func() bool { return s.open(t, session) == http.StatusUnauthorized })
	// No sign-in since: only the purge, every second, deletes it.
	waitFor("the purge deletes the expired session", 10*time.Second, func() bool { return count() == 0 })
	s.stop(t)
}
