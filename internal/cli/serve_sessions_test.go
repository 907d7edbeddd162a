package cli_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// signIn signs in to the audit browser of s with token and returns the
// session cookie's value.
func (s *running) signIn(t *testing.T, token string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.PostForm(s.url+"/ui/login", url.Values{"token": {token}, "next": {"/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == "eventstream_token" && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("sign in: %d, no session cookie: %v", res.StatusCode, res.Header)
	return ""
}

// open is the status of an audit browser page opened with a session.
func (s *running) open(t *testing.T, session string) int {
	t.Helper()
	req, err := http.NewRequest("GET", s.url+"/ui/projections", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "eventstream_token", Value: session})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// --max-sessions is checked before serve connects: the database URL here
// has no server behind it, so a serve that got as far as connecting would
// exit 75 (unavailable) instead of 2.
func TestServeRefusesBadMaxSessionsBeforeStarting(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	// 0 or less: the server would quietly take its default, 20.
	for _, n := range []string{"0", "-1"} {
		r := c.runIn(context.Background(), "--database-url", nowhere, "serve", "--addr", "127.0.0.1:0", "--max-sessions", n)
		if want := "--max-sessions " + n + ": want at least 1 (left unset: 20)"; r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve --max-sessions %s: want exit 2, nothing served and %q in the message; got %s", n, want, r)
		}
	}
	// The bound itself gets as far as connecting.
	if r := c.runIn(context.Background(), "--database-url", nowhere, "serve", "--addr", "127.0.0.1:0", "--max-sessions", "1"); r.code != 75 {
		t.Errorf("serve --max-sessions 1 with no database: want exit 75 (unavailable), got %s", r)
	}
}

// --max-sessions reaches the server: with 2, a token's third sign-in ends
// its first session (with the default, 20, all three would stay).
func TestServeMaxSessionsReachesTheServer(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	token := strings.TrimSpace(c.must(0, "tokens", "create", "acme").stdout)
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections", "--max-sessions", "2")
	var ids []string
	for range 3 {
		ids = append(ids, s.signIn(t, token))
	}
	for i, id := range ids {
		want := http.StatusOK
		if i == 0 {
			want = http.StatusUnauthorized
		}
		if got := s.open(t, id); got != want {
			t.Errorf("session %d of 3 with --max-sessions 2: %d, want %d", i+1, got, want)
		}
	}
	s.stop(t)
}

// serve deletes the expired sessions though nobody signs in (it starts the
// server's upkeep, which purges at once and then every 15 minutes), and
// keeps the live ones.
func TestServePurgesExpiredSessionsWithoutASignIn(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "tokens", "create", "acme") // migrates the sessions table
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at) VALUES
		(repeat('a', 64), repeat('1', 64), now() - interval '1 hour'),
		(repeat('b', 64), repeat('2', 64), now() - interval '1 second'),
		(repeat('c', 64), repeat('1', 64), now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections")
	left := func() string {
		t.Helper()
		var ids string
		if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(left(session_sha256, 1), ',' ORDER BY session_sha256), '') FROM eventstream_ui_sessions`).Scan(&ids); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for deadline := time.Now().Add(30 * time.Second); left() != "c"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions left 30s after serve started: %q, want only the live one (c)\n%s", left(), s.log)
		}
	}
	s.stop(t)
}
