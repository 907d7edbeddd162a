package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The token cache's flags are checked before serve connects: the database
// URL here has no server behind it, so a serve that got as far as
// connecting would exit 75 (unavailable) instead of 2.
func TestServeRefusesBadTokenCacheFlagsBeforeStarting(t *testing.T) {
	t.Parallel()
	checkServeFlags(t, []serveFlagCase{
		// 0 or less: the server would quietly take its default.
		{[]string{"--tokens-ttl", "0"}, "--tokens-ttl 0s: want a duration above 0 (left unset: 5s)"},
		{[]string{"--tokens-ttl", "-1s"}, "--tokens-ttl -1s: want a duration above 0"},
		{[]string{"--tokens-max-stale", "0s"}, "--tokens-max-stale 0s: want a duration above 0 (left unset: 1m0s)"},
		{[]string{"--tokens-max-stale", "-1m"}, "--tokens-max-stale -1m0s: want a duration above 0"},
		{[]string{"--tokens-read-timeout", "0"}, "--tokens-read-timeout 0s: want a duration above 0 (left unset: 3s)"},
		{[]string{"--tokens-read-timeout", "-5ms"}, "--tokens-read-timeout -5ms: want a duration above 0"},
		// A max stale below the TTL: the server would take the TTL.
		{[]string{"--tokens-max-stale", "2s"}, "--tokens-max-stale 2s is less than --tokens-ttl 5s"},
		{[]string{"--tokens-ttl", "2m"}, "--tokens-max-stale 1m0s is less than --tokens-ttl 2m0s"},
		{[]string{"--tokens-ttl", "10s", "--tokens-max-stale", "9s"}, "trusted for the whole TTL"},
		// A read allowed to outlast the max stale.
		{[]string{"--tokens-read-timeout", "2m"}, "--tokens-read-timeout 2m0s is longer than --tokens-max-stale 1m0s"},
		{[]string{"--tokens-ttl", "1s", "--tokens-max-stale", "2s"}, "--tokens-read-timeout 3s is longer than --tokens-max-stale 2s: a list is as old as the moment its read began"},
	},
		// The controls get as far as connecting: the bounds themselves are
		// allowed.
		[][]string{
			{"--tokens-ttl", "1m", "--tokens-max-stale", "1m", "--tokens-read-timeout", "1m"},
			{"--tokens-ttl", "100ms", "--tokens-max-stale", "200ms", "--tokens-read-timeout", "200ms"},
			{"--tokens-ttl", "1h", "--tokens-max-stale", "2h"},
		})
}

// The token cache's flags reach the server. With the defaults (5s, 1m,
// 3s) each step below would go the other way: a token revoked would still
// be accepted a second later, and a hanging tokens table would be answered
// from the last list for a minute.
func TestServeTokenCacheFlagsReachTheServer(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	doomed := strings.TrimSpace(c.must(0, "tokens", "create", "acme", "--name", "doomed").stdout)
	kept := strings.TrimSpace(c.must(0, "tokens", "create", "acme", "--name", "kept").stdout)
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections",
		"--tokens-ttl", "1s", "--tokens-max-stale", "5s", "--tokens-read-timeout", "2s")

	// --tokens-ttl: a revocation applies once the list is 1s old. The
	// list was read during the first request, so it is at least 1.2s old
	// 1.2s after its answer.
	if code, body := s.do(t, "GET", "/events", doomed, ""); code != 200 {
		t.Fatalf("before the revocation: %d %s", code, body)
	}
	read := time.Now()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE eventstream_api_tokens SET revoked_at = now() WHERE name = 'doomed'`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(read.Add(1200 * time.Millisecond)))
	if code, body := s.do(t, "GET", "/events", doomed, ""); code != 401 {
		t.Fatalf("a token revoked before the list was 1.2s old, with --tokens-ttl 1s: %d %s, want 401", code, body)
	}

	// --tokens-max-stale and --tokens-read-timeout: the tokens table
	// hangs (a lock held on it); each read gives up after 2s, and once
	// the last list read is 5s old every request is refused. (A read
	// timeout of 500ms, as this test had, is one a read of the table can
	// pass on a loaded CI machine even when nothing holds it.)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE eventstream_api_tokens IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	locked := time.Now()
	for {
		code, body := s.do(t, "GET", "/events", kept, "")
		if code == 503 && strings.Contains(body, `"kind":"unavailable"`) {
			break
		}
		if code != 200 {
			t.Fatalf("while the tokens table hangs: %d %s, want 200 then 503", code, body)
		}
		if time.Since(locked) > 20*time.Second {
			t.Fatalf("still accepted %v after the tokens table began to hang, with --tokens-max-stale 5s", time.Since(locked).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The server logs the warning before it answers 503, but its stderr
	// reaches s.log through a pipe copied by another goroutine: wait for it.
	for warned := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		log := s.log.String()
		if strings.Contains(log, "no answer within 2s") && strings.Contains(log, "max_stale=5s") {
			break
		}
		if time.Now().After(warned) {
			t.Fatalf("the refusal's warning should name the read timeout (2s) and the max stale (5s):\n%s", log)
		}
	}

	// The table answers again: the list is read again, and requests are
	// accepted.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for code, body := s.do(t, "GET", "/events", kept, ""); code != 200; code, body = s.do(t, "GET", "/events", kept, "") {
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("after the tokens table answers again: %d %s, want 200", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop(t)
}
