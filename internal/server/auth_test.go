package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

func schemasReg() *schemas.Registry { return schemas.MustDefault() }

func TestAuthenticatorMatchesTheRightTokenAmongMany(t *testing.T) {
	t.Parallel()
	var ts server.Tokens
	for _, s := range []string{"a", "b", "c", "d"} {
		ts = append(ts, server.TokenFor("secret-"+s, "tenant-"+s, s))
	}
	auth := server.NewAuthenticator(ts)
	for _, s := range []string{"a", "b", "c", "d"} {
		p, ok, err := auth.Authenticate(context.Background(), "secret-"+s)
		if err != nil || !ok || p.Tenant != "tenant-"+s {
			t.Fatalf("secret-%s: %+v %v %v", s, p, ok, err)
		}
	}
	for _, bad := range []string{"", "secret-", "secret-aa", "SECRET-A"} {
		if _, ok, _ := auth.Authenticate(context.Background(), bad); ok {
			t.Fatalf("%q authenticated", bad)
		}
	}
}

func TestTokenFileHoldsHashesOnly(t *testing.T) {
	t.Parallel()
	good := "# tenants\nacme " + server.HashToken("s1") + " ci\n\n* " + server.HashToken("s2") + "\n"
	ts, err := server.ParseTokenFile("tokens", bufio.NewScanner(strings.NewReader(good)))
	if err != nil || len(ts) != 2 || ts[0].Tenant != "acme" || ts[0].Name != "ci" || ts[1].Tenant != server.AllTenants {
		t.Fatalf("parse: %+v %v", ts, err)
	}
	for _, bad := range []string{"acme es_plain_secret\n", "acme\n", "acme " + server.HashToken("x")[:60] + "\n"} {
		if _, err := server.ParseTokenFile("tokens", bufio.NewScanner(strings.NewReader(bad))); err == nil || !strings.Contains(err.Error(), "tokens:1") {
			t.Fatalf("%q: want an error naming line 1, got %v", bad, err)
		}
	}
}

func TestTokenTableAddListRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	tt := server.TokenTable{Pool: pool}
	secret, err := tt.Add(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tt.Add(ctx, "bad tenant", "x"); err == nil {
		t.Fatal("a tenant with a space was accepted")
	}
	var stored string
	if err := pool.QueryRow(ctx, `SELECT token_sha256 FROM eventstream_api_tokens`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == secret || stored != server.HashToken(secret) {
		t.Fatal("the table does not hold the token's hash")
	}
	p, ok, err := server.NewAuthenticator(tt).Authenticate(ctx, secret)
	if err != nil || !ok || p.Tenant != "acme" {
		t.Fatalf("authenticate: %+v %v %v", p, ok, err)
	}
	list, err := tt.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ci" || strings.Contains(list[0].HashPrefix, secret) {
		t.Fatalf("list: %+v %v", list, err)
	}
	if n, err := tt.Revoke(ctx, "ci"); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, ok, _ := server.NewAuthenticator(tt).Authenticate(ctx, secret); ok {
		t.Fatal("a revoked token authenticated")
	}
	if _, err := tt.Revoke(ctx, "ci"); err != server.ErrNoToken {
		t.Fatalf("revoke twice: %v", err)
	}
}

// TestRevokeMatchesAHashPrefixLiterally: revoking by hash prefix treats the
// argument as hex digits, not as a LIKE pattern; "%" or "_" revoke nothing.
func TestRevokeMatchesAHashPrefixLiterally(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	tt := server.TokenTable{Pool: pool}
	acme, err := tt.Add(ctx, "acme", "acme-app")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := tt.Add(ctx, "globex", "globex-app")
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"%%%%%%%%", "________", server.HashToken(acme)[:6] + "__"} {
		if n, err := tt.Revoke(ctx, pattern); err != server.ErrNoToken {
			t.Errorf("revoke %q: revoked %d tokens (%v), want ErrNoToken", pattern, n, err)
		}
	}
	for _, secret := range []string{acme, globex} {
		if _, ok, err := server.NewAuthenticator(tt).Authenticate(ctx, secret); err != nil || !ok {
			t.Fatalf("a token was revoked by a pattern: %v", err)
		}
	}
	// A real prefix revokes its token only.
	if n, err := tt.Revoke(ctx, server.HashToken(globex)[:8]); err != nil || n != 1 {
		t.Fatalf("revoke by prefix: %d %v", n, err)
	}
	if _, ok, _ := server.NewAuthenticator(tt).Authenticate(ctx, acme); !ok {
		t.Fatal("revoking globex's prefix revoked acme's token")
	}
}

// clock is a test's clock: it moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logLines is a log written as text, safe for concurrent writers.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many lines hold every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.buf.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestTokensPastMaxStaleAreRefused cuts the server off its real tokens
// table (the table is renamed away, so every read fails in PostgreSQL) after
// a token was revoked. Within the bound the last list read is used, revoked
// token included; past it every request with a token is 503, whichever the
// token, with one warning per outage; once the table is back the revocation
// applies.
func TestTokensPastMaxStaleAreRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	tt := server.TokenTable{Pool: pool}
	acme, err := tt.Add(ctx, "acme", "acme-app")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := tt.Add(ctx, "globex", "globex-app")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	outage := func() { exec(`ALTER TABLE eventstream_api_tokens RENAME TO eventstream_api_tokens_away`) }
	restore := func() { exec(`ALTER TABLE eventstream_api_tokens_away RENAME TO eventstream_api_tokens`) }

	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &logLines{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	auth := server.NewAuthenticatorWithConfig(tt, server.AuthConfig{TTL: 5 * time.Second, MaxStale: time.Minute, Now: clk.Now})
	s, err := server.New(server.Config{Store: store, Registry: schemasReg(), Auth: auth, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		return w
	}
	must := func(want int, path, token string) *httptest.ResponseRecorder {
		t.Helper()
		w := get(path, token)
		if w.Code != want {
			t.Fatalf("GET %s: want %d, got %d: %s", path, want, w.Code, w.Body)
		}
		return w
	}
	const warning = "level=WARN msg=\"cannot read the tokens"

	must(200, "/schemas", acme)
	must(200, "/schemas", globex)
	if _, err := tt.Revoke(ctx, "globex-app"); err != nil {
		t.Fatal(err)
	}
	outage()

	// Within the bound: the list read before the outage answers, the
	// revoked token included (that is the bound's price), and nothing is
	// refused.
	clk.Advance(30 * time.Second)
	must(200, "/schemas", acme)
	must(200, "/schemas", globex)
	clk.Advance(30*time.Second - time.Millisecond)
	must(200, "/schemas", acme)
	if n := logs.count(warning); n != 0 {
		t.Fatalf("%d warnings within the bound, want none:\n%s", n, logs.buf.String())
	}

	// Past it: every request with a token is refused, with the API's error
	// body; a request without one is still 401.
	clk.Advance(time.Millisecond)
	for _, token := range []string{acme, globex, "es_unknown", acme} {
		w := must(503, "/schemas", token)
		var body struct{ Error, Kind string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Kind != "unavailable" || body.Error == "" {
			t.Fatalf("503 body: %s (%v)", w.Body, err)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("503 Content-Type %q", ct)
		}
	}
	must(503, "/ui/", globex)
	must(401, "/schemas", "")
	clk.Advance(time.Hour)
	must(503, "/schemas", acme)
	if n := logs.count(warning); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1:\n%s", n, logs.buf.String())
	}
	if strings.Contains(logs.buf.String(), acme) || strings.Contains(logs.buf.String(), globex) {
		t.Fatal("a token's secret reached the log")
	}

	// Recovery: the valid token works and the revocation applies at once.
	restore()
	must(200, "/schemas", acme)
	must(401, "/schemas", globex)
	if n := logs.count("level=INFO", "can be read again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, logs.buf.String())
	}

	// A second outage is a second warning.
	outage()
	clk.Advance(time.Minute)
	must(503, "/schemas", acme)
	must(503, "/schemas", acme)
	if n := logs.count(warning); n != 2 {
		t.Fatalf("%d warnings for two outages, want 2:\n%s", n, logs.buf.String())
	}
	restore()
	must(200, "/schemas", acme)
}

// switchSource is a TokenSource that fails while err is set.
type switchSource struct {
	mu     sync.Mutex
	tokens server.Tokens
	err    error
}

func (s *switchSource) Tokens(ctx context.Context) ([]server.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return s.tokens, nil
}

func (s *switchSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// TestTokensNeverReadAreRefused: a server that starts while its tokens
// cannot be read refuses (once logged) until they can; a request that is
// cancelled meanwhile neither starts nor ends an outage.
func TestTokensNeverReadAreRefused(t *testing.T) {
	t.Parallel()
	src := &switchSource{tokens: server.Tokens{server.TokenFor("s1", "acme", "a")}, err: errors.New("connection refused")}
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &logLines{}
	auth := server.NewAuthenticatorWithConfig(src, server.AuthConfig{
		TTL: time.Second, MaxStale: 10 * time.Second, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	if _, ok, err := auth.Authenticate(cancelled, "s1"); ok || !errors.Is(err, server.ErrTokensUnavailable) {
		t.Fatalf("cancelled, never read: %v %v, want ErrTokensUnavailable", ok, err)
	}
	if n := logs.count("level=WARN"); n != 0 {
		t.Fatalf("a cancelled request was logged as an outage:\n%s", logs.buf.String())
	}
	for range 3 {
		if _, ok, err := auth.Authenticate(ctx, "s1"); ok || !errors.Is(err, server.ErrTokensUnavailable) {
			t.Fatalf("never read: %v %v, want ErrTokensUnavailable", ok, err)
		}
	}
	if n := logs.count("level=WARN", "never read", "connection refused"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.buf.String())
	}

	src.fail(nil)
	if p, ok, err := auth.Authenticate(ctx, "s1"); err != nil || !ok || p.Tenant != "acme" {
		t.Fatalf("after recovery: %+v %v %v", p, ok, err)
	}
	src.fail(errors.New("connection reset"))
	clk.Advance(10 * time.Second)
	if _, _, err := auth.Authenticate(cancelled, "s1"); !errors.Is(err, server.ErrTokensUnavailable) {
		t.Fatalf("cancelled, past the bound: %v, want ErrTokensUnavailable", err)
	}
	if n := logs.count("level=WARN"); n != 1 {
		t.Fatalf("a cancelled request started an outage:\n%s", logs.buf.String())
	}
}
