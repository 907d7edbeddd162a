package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"github.com/jackc/pgx/v5/pgxpool"
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
	"github.com/brainhq/eventstream/internal/syncbuf"
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
	pool, tt := tokenTable(t)
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
	_, tt := tokenTable(t)
	acme, globex := tt.mustAdd(t, "acme"), tt.mustAdd(t, "globex")
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

// TestRevokeOfAnEmptyNameRevokesNothing: tokens created without --name
// are stored with the name "", so revoking "" (`eventstream tokens revoke
// "$NAME"` with NAME unset) matched every unnamed token, the operators'
// included, and cut them all off at once.
func TestRevokeOfAnEmptyNameRevokesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, tt := tokenTable(t)
	var secrets []string
	for _, tenant := range []string{"acme", server.AllTenants} {
		s, err := tt.Add(ctx, tenant, "")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	if n, err := tt.Revoke(ctx, ""); !errors.Is(err, server.ErrNoToken) {
		t.Errorf("revoke \"\": revoked %d tokens (%v), want ErrNoToken", n, err)
	}
	for _, secret := range secrets {
		if _, ok, err := server.NewAuthenticator(tt).Authenticate(ctx, secret); err != nil || !ok {
			t.Fatalf("an unnamed token was revoked by an empty name (%v)", err)
		}
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

// tokensAway returns functions that rename the real tokens table away,
// so that every read of it fails in PostgreSQL, and back.
func tokensAway(t *testing.T, pool *pgxpool.Pool) (away, back func()) {
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	return func() { exec(`ALTER TABLE eventstream_api_tokens RENAME TO eventstream_api_tokens_away`) },
		func() { exec(`ALTER TABLE eventstream_api_tokens_away RENAME TO eventstream_api_tokens`) }
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
	pool, tt := tokenTable(t)
	acme, globex := tt.mustAdd(t, "acme"), tt.mustAdd(t, "globex")
	outage, restore := tokensAway(t, pool)

	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	// The defaults (TTL 5 s, MaxStale 1 min) are what the page promises.
	auth := server.NewAuthenticatorWithConfig(tt, server.AuthConfig{Now: clk.Now})
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
	if n := logs.Lines(warning); n != 0 {
		t.Fatalf("%d warnings within the bound, want none:\n%s", n, logs.String())
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
	if n := logs.Lines(warning); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), acme) || strings.Contains(logs.String(), globex) {
		t.Fatal("a token's secret reached the log")
	}

	// Recovery: once the next read is due (a failed read is retried a TTL
	// later, not once per request), the valid token works and the
	// revocation applies at once.
	auth.WaitForRead()
	restore()
	clk.Advance(5 * time.Second)
	must(200, "/schemas", acme)
	must(401, "/schemas", globex)
	if n := logs.Lines("level=INFO", "can be read again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, logs.String())
	}

	// A second outage is a second warning.
	outage()
	clk.Advance(time.Minute)
	must(503, "/schemas", acme)
	must(503, "/schemas", acme)
	if n := logs.Lines(warning); n != 2 {
		t.Fatalf("%d warnings for two outages, want 2:\n%s", n, logs.String())
	}
	auth.WaitForRead()
	restore()
	clk.Advance(5 * time.Second)
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
	logs := &syncbuf.Buffer{}
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
	if n := logs.Lines("level=WARN"); n != 0 {
		t.Fatalf("a cancelled request was logged as an outage:\n%s", logs.String())
	}
	for range 3 {
		if _, ok, err := auth.Authenticate(ctx, "s1"); ok || !errors.Is(err, server.ErrTokensUnavailable) {
			t.Fatalf("never read: %v %v, want ErrTokensUnavailable", ok, err)
		}
	}
	if n := logs.Lines("level=WARN", "never read", "connection refused"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}

	src.fail(nil)
	clk.Advance(time.Second) // a failed read is retried a TTL later
	if p, ok, err := auth.Authenticate(ctx, "s1"); err != nil || !ok || p.Tenant != "acme" {
		t.Fatalf("after recovery: %+v %v %v", p, ok, err)
	}
	src.fail(errors.New("connection reset"))
	clk.Advance(10 * time.Second)
	if _, _, err := auth.Authenticate(cancelled, "s1"); !errors.Is(err, server.ErrTokensUnavailable) {
		t.Fatalf("cancelled, past the bound: %v, want ErrTokensUnavailable", err)
	}
	if n := logs.Lines("level=WARN"); n != 1 {
		t.Fatalf("a cancelled request started an outage:\n%s", logs.String())
	}
}

// hangSource is a TokenSource whose reads block until the test answers
// them (or their context ends). It counts the reads, and the most in flight
// at once.
type hangSource struct {
	tokens  server.Tokens
	started chan struct{} // a value per read that begins
	answer  chan error    // what the read in flight returns: nil means the tokens

	mu              sync.Mutex
	calls, inflight int
	maxInflight     int
	ctxErrs         []error // the context's error of each read that ended on it
}

func newHangSource(tokens ...server.Token) *hangSource {
	return &hangSource{tokens: tokens, started: make(chan struct{}, 100), answer: make(chan error, 1)}
}

func (s *hangSource) Tokens(ctx context.Context) ([]server.Token, error) {
	s.mu.Lock()
	s.calls++
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inflight--
	}()
	s.started <- struct{}{}
	select {
	case err := <-s.answer:
		if err != nil {
			return nil, err
		}
		return s.tokens, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ctxErrs = append(s.ctxErrs, ctx.Err())
		return nil, ctx.Err()
	}
}

// reads returns how many reads began and the most in flight at once.
func (s *hangSource) reads() (calls, maxInflight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.maxInflight
}

// authResult is what one Authenticate call returned.
type authResult struct {
	p   server.Principal
	ok  bool
	err error
}

// authenticate calls Authenticate in a goroutine and returns its result's
// channel, so that a test can tell a call that returns from one that waits.
func authenticate(ctx context.Context, auth *server.Authenticator, secret string) <-chan authResult {
	c := make(chan authResult, 1)
	go func() {
		p, ok, err := auth.Authenticate(ctx, secret)
		c <- authResult{p, ok, err}
	}()
	return c
}

// failsafe turns a call that waits for a read that hangs into a test
// failure; nothing waits for it to pass.
const failsafe = 10 * time.Second

// returned fails the test unless c delivers: the call must not wait for a
// read that hangs.
func returned(t *testing.T, what string, c <-chan authResult) authResult {
	t.Helper()
	r, ok := await(c)
	if !ok {
		t.Fatalf("%s: still waiting for the read of the tokens", what)
	}
	return r
}

// await is returned for goroutines other than the test's: false means the
// call is still waiting.
func await(c <-chan authResult) (authResult, bool) {
	select {
	case r := <-c:
		return r, true
	case <-time.After(failsafe):
		return authResult{}, false
	}
}

// concurrently makes n calls of secret at once and fails the test unless
// each returns and passes check.
func concurrently(t *testing.T, what string, n int, auth *server.Authenticator, secret string, check func(authResult) bool) {
	t.Helper()
	type outcome struct {
		r        authResult
		returned bool
	}
	var wg sync.WaitGroup
	outcomes := make(chan outcome, n)
	for range n {
		wg.Go(func() {
			r, ok := await(authenticate(context.Background(), auth, secret))
			outcomes <- outcome{r, ok}
		})
	}
	wg.Wait()
	close(outcomes)
	for o := range outcomes {
		if !o.returned {
			t.Fatalf("%s: still waiting for the read of the tokens", what)
		}
		if !check(o.r) {
			t.Fatalf("%s: %+v", what, o.r)
		}
	}
}

// TestTokenReadThatHangsHoldsUpNoRequest: the source accepts a read and
// never answers (a database that hangs rather than refuses). The request
// that started the read waits for it (the source was answering); every
// other request is answered at once — from the cache within MaxStale, 503
// past it — with one read in flight however many requests come, and one
// warning.
func TestTokenReadThatHangsHoldsUpNoRequest(t *testing.T) {
	t.Parallel()
	src := newHangSource(server.TokenFor("s1", "acme", "a"))
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &syncbuf.Buffer{}
	auth := server.NewAuthenticatorWithConfig(src, server.AuthConfig{
		TTL: 5 * time.Second, MaxStale: time.Minute, ReadTimeout: time.Hour, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	t.Cleanup(func() {
		close(src.answer) // release the read in flight, if the test failed with one
		auth.WaitForRead()
	})
	ctx := context.Background()

	src.answer <- nil
	if r := returned(t, "first read", authenticate(ctx, auth, "s1")); r.err != nil || !r.ok {
		t.Fatalf("first read: %+v", r)
	}
	<-src.started

	// After an idle spell past the bound, while the source answers: a burst
	// of requests waits for one read rather than being refused.
	clk.Advance(2 * time.Minute)
	burst := make([]<-chan authResult, 20)
	for i := range burst {
		burst[i] = authenticate(ctx, auth, "s1")
	}
	<-src.started
	src.answer <- nil
	for _, c := range burst {
		if r := returned(t, "a burst after an idle spell", c); r.err != nil || !r.ok {
			t.Fatalf("a burst after an idle spell: %+v, want accepted", r)
		}
	}

	// The list is due again and the source now hangs.
	clk.Advance(5 * time.Second)
	first := authenticate(ctx, auth, "s1")
	<-src.started
	concurrently(t, "within the bound, while the read hangs (want the cached list's answer)", 50, auth, "s1", func(r authResult) bool {
		return r.err == nil && r.ok && r.p.Tenant == "acme"
	})

	// Past the bound: refused at once, while the same read still hangs.
	clk.Advance(time.Minute)
	concurrently(t, "past the bound, while the read hangs (want ErrTokensUnavailable)", 50, auth, "s1", func(r authResult) bool {
		return !r.ok && errors.Is(r.err, server.ErrTokensUnavailable)
	})
	if calls, most := src.reads(); calls != 3 || most != 1 {
		t.Fatalf("%d reads, at most %d at once; want 3 (two lists, the read that hangs), one at a time", calls, most)
	}
	if n := logs.Lines("level=WARN", "cannot read the tokens"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}

	// The read fails at last: the request that started it is answered (it
	// is past the bound by now).
	src.answer <- errors.New("i/o timeout")
	if r := returned(t, "the request that started the read", first); r.ok || !errors.Is(r.err, server.ErrTokensUnavailable) {
		t.Fatalf("the request that started the read, once it failed past the bound: %+v", r)
	}
}

// TestFailedTokenReadIsRetriedAfterTTL: after a read fails, requests are
// answered (from the cache, or 503) without asking the source again until
// TTL has passed; then one read is made, not one per request. Once the
// source answers, requests are accepted again (one line in the log) and a
// token gone from the list is refused.
func TestFailedTokenReadIsRetriedAfterTTL(t *testing.T) {
	t.Parallel()
	src := newHangSource(server.TokenFor("s1", "acme", "a"), server.TokenFor("s2", "globex", "b"))
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &syncbuf.Buffer{}
	auth := server.NewAuthenticatorWithConfig(src, server.AuthConfig{
		TTL: 5 * time.Second, MaxStale: 20 * time.Second, ReadTimeout: time.Hour, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	t.Cleanup(func() {
		close(src.answer)
		auth.WaitForRead()
	})
	ctx := context.Background()
	check := func(what, secret string, wantOK bool, wantErr error) {
		t.Helper()
		r := returned(t, what, authenticate(ctx, auth, secret))
		if r.ok != wantOK || !errors.Is(r.err, wantErr) || (wantErr == nil && r.err != nil) {
			t.Fatalf("%s: %+v, want ok=%v err=%v", what, r, wantOK, wantErr)
		}
	}
	calls := func(want int) {
		t.Helper()
		if got, _ := src.reads(); got != want {
			t.Fatalf("%d reads, want %d", got, want)
		}
	}

	src.answer <- nil
	check("first read", "s2", true, nil)
	calls(1)

	// The source fails: the read due at TTL fails, the cache answers, and
	// no request reads again until TTL later.
	clk.Advance(5 * time.Second)
	src.answer <- errors.New("connection refused")
	check("the read fails", "s1", true, nil)
	calls(2)
	for range 10 {
		check("within the back-off", "s1", true, nil)
	}
	clk.Advance(5*time.Second - time.Millisecond)
	check("just within the back-off", "s1", true, nil)
	calls(2)

	// TTL after the failure: one read, in the background (the cache still
	// answers); it fails too.
	clk.Advance(time.Millisecond)
	check("the retry is due", "s1", true, nil)
	src.answer <- errors.New("connection refused")
	auth.WaitForRead()
	calls(3)

	// Past the bound: 503, still one read per TTL.
	clk.Advance(10 * time.Second)
	src.answer <- errors.New("connection refused")
	check("past the bound", "s1", false, server.ErrTokensUnavailable)
	calls(4)
	for range 10 {
		check("past the bound, within the back-off", "s1", false, server.ErrTokensUnavailable)
	}
	calls(4)

	// The source answers again, without globex's token.
	src.tokens = server.Tokens{server.TokenFor("s1", "acme", "a")}
	clk.Advance(5 * time.Second)
	src.answer <- nil
	check("recovered", "s1", true, nil)
	check("a token gone from the list", "s2", false, nil)
	calls(5)
	if n := logs.Lines("level=WARN", "cannot read the tokens"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if n := logs.Lines("level=INFO", "can be read again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, logs.String())
	}
}

// TestTokenReadHasItsOwnDeadline: a read runs with its own context. A
// request that goes away while waiting for it does not cut it short for
// the others; a read that never answers ends at ReadTimeout, and the
// request waiting for it is refused then, not at its own deadline.
func TestTokenReadHasItsOwnDeadline(t *testing.T) {
	t.Parallel()
	src := newHangSource(server.TokenFor("s1", "acme", "a"))
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	auth := server.NewAuthenticatorWithConfig(src, server.AuthConfig{
		TTL: 5 * time.Second, MaxStale: time.Minute, ReadTimeout: 50 * time.Millisecond, Now: clk.Now,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(auth.WaitForRead)

	// A client gives up on the first read; the read goes on and its list
	// answers the next request without another read.
	gone, cancel := context.WithCancel(context.Background())
	first := authenticate(gone, auth, "s1")
	<-src.started
	cancel()
	if r := returned(t, "a cancelled request", first); r.ok || !errors.Is(r.err, server.ErrTokensUnavailable) {
		t.Fatalf("a request cancelled while waiting for the first read: %+v", r)
	}
	src.answer <- nil
	auth.WaitForRead()
	if r := returned(t, "after the read", authenticate(context.Background(), auth, "s1")); !r.ok || r.err != nil {
		t.Fatalf("after the read the cancelled request started: %+v", r)
	}
	if calls, _ := src.reads(); calls != 1 {
		t.Fatalf("%d reads, want 1", calls)
	}
	src.mu.Lock()
	cut := len(src.ctxErrs)
	src.mu.Unlock()
	if cut != 0 {
		t.Fatal("the read was cut short by the request that started it")
	}

	// Past the bound, the source never answers: the read ends at its
	// deadline and the request (which has none) is refused.
	clk.Advance(time.Minute)
	if r := returned(t, "a read that never answers", authenticate(context.Background(), auth, "s1")); r.ok || !errors.Is(r.err, server.ErrTokensUnavailable) || !strings.Contains(r.err.Error(), "no answer within 50ms") {
		t.Fatalf("past the bound, a read that never answers: %+v, want ErrTokensUnavailable after ReadTimeout", r)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.ctxErrs) != 1 || !errors.Is(src.ctxErrs[0], context.DeadlineExceeded) {
		t.Fatalf("the read's context ended with %v, want its deadline", src.ctxErrs)
	}
}

// TestTokensTableThatHangsIsServedFromTheCache: another transaction holds
// an ACCESS EXCLUSIVE lock on the real tokens table, so the server's read
// of it blocks in PostgreSQL (a database that hangs rather than refuses).
// Requests within the bound are answered from the last list at once, past
// it they are refused at once; once the lock goes, the read ends, the
// revocation made before it applies and requests are accepted again.
func TestTokensTableThatHangsIsServedFromTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, tt := tokenTable(t)
	acme, globex := tt.mustAdd(t, "acme"), tt.mustAdd(t, "globex")
	away, back := tokensAway(t, pool)

	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &syncbuf.Buffer{}
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	// ReadTimeout is long: the read must still hang when the test looks.
	auth := server.NewAuthenticatorWithConfig(tt, server.AuthConfig{TTL: 5 * time.Second, MaxStale: time.Minute, ReadTimeout: time.Minute, Now: clk.Now})
	t.Cleanup(auth.WaitForRead) // after the lock is released (cleanups run last first)
	s, err := server.New(server.Config{Store: store, Registry: schemasReg(), Auth: auth, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// get runs a request and returns its status, or 0 if it is still
	// waiting (for the read that hangs) after the failsafe.
	get := func(token string) int {
		code := make(chan int, 1)
		go func() {
			req := httptest.NewRequest("GET", "/schemas", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			code <- w.Code
		}()
		select {
		case c := <-code:
			return c
		case <-time.After(failsafe):
			return 0
		}
	}
	must := func(want int, token string) {
		t.Helper()
		if got := get(token); got != want {
			t.Fatalf("GET /schemas: want %d, got %d (0: still waiting for the read of the tokens)", want, got)
		}
	}
	must(200, acme)
	must(200, globex)

	// A first failed read (the table is away for a moment) ends the
	// source's good standing: from now on no request waits for a read the
	// cache can stand in for.
	clk.Advance(5 * time.Second)
	away()
	must(200, acme)
	back()
	if _, err := tt.Revoke(ctx, "globex-app"); err != nil {
		t.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `LOCK TABLE eventstream_api_tokens IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	// Within the bound: the next read blocks on the lock; every request is
	// answered from the list read before the revocation.
	clk.Advance(5 * time.Second)
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for i := range 40 {
		token := acme
		if i%2 == 1 {
			token = globex
		}
		wg.Go(func() { codes <- get(token) })
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("within the bound, while the read hangs: %d, want 200 (0: still waiting for it)", c)
		}
	}

	// Past the bound, the same read still blocked: refused at once.
	clk.Advance(time.Minute)
	must(503, acme)
	must(503, globex)
	if n := logs.Lines("level=WARN", "cannot read the tokens"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}

	// The lock goes: the read that waited for it ends, and the revocation
	// applies.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	auth.WaitForRead()
	must(200, acme)
	must(401, globex)
	if n := logs.Lines("level=INFO", "can be read again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, logs.String())
	}
}

// testTokens is a TokenTable in a fresh schema with the api component
// migrated.
type testTokens struct{ server.TokenTable }

func tokenTable(t *testing.T) (*pgxpool.Pool, testTokens) {
	t.Helper()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(context.Background(), pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	return pool, testTokens{server.TokenTable{Pool: pool}}
}

// mustAdd adds a token named TENANT-app for tenant and returns its secret.
func (tt testTokens) mustAdd(t *testing.T, tenant string) string {
	t.Helper()
	secret, err := tt.Add(context.Background(), tenant, tenant+"-app")
	if err != nil {
		t.Fatal(err)
	}
	return secret
}
