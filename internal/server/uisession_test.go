package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/server"
)

// TestUISessionCookieIsNotTheToken: the audit browser's cookie holds a
// session id, not the API token it signed in with. A stolen cookie (or a
// log that recorded one) is then not a credential of the API, and a cookie
// holding a token (as earlier versions set it) opens nothing. The database
// keeps neither the cookie's value nor the token in clear.
func TestUISessionCookieIsNotTheToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	in := e.signIn(operatorToken)
	if in.code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", in.code, in.body)
	}
	id := sessionCookie(t, in).Value
	if id == "" || strings.Contains(id, operatorToken) {
		t.Fatalf("the session cookie holds the token: %q", id)
	}
	e.must(200, "GET", "/ui/", "", "", "Cookie", "eventstream_token="+id)
	if r := e.do("GET", "/events", id, ""); r.code != http.StatusUnauthorized {
		t.Fatalf("the session cookie's value as the API's bearer token: %d, want 401: %s", r.code, r.body)
	}
	if r := e.must(401, "GET", "/ui/", "", "", "Cookie", "eventstream_token="+operatorToken); !strings.Contains(r.body, `id="token"`) {
		t.Fatalf("a cookie holding the token itself: not the sign-in page:\n%s", r.body)
	}
	var rows string
	if err := e.pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(row_to_json(s)::text, E'\n'), '') FROM eventstream_ui_sessions s`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows == "" || strings.Contains(rows, id) || strings.Contains(rows, operatorToken) {
		t.Fatalf("eventstream_ui_sessions holds the cookie's value or the token in clear, or nothing:\n%s", rows)
	}
}

// TestUISignOutEndsTheSessionOnTheServer: signing out ends the session
// itself, not only the browser's copy of the cookie: a copy taken before
// (another browser, a log, a thief) opens nothing afterwards. Sessions are
// in the database, so another server on it knows them as well, before and
// after.
func TestUISignOutEndsTheSessionOnTheServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	other, err := server.New(server.Config{
		Store: e.store, Registry: schemasReg(), Pool: e.pool, Runtime: e.rt,
		Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	otherSrv := httptest.NewServer(other.Handler())
	t.Cleanup(otherSrv.Close)
	o := &env{t: t, srv: otherSrv}

	in := e.signIn(acmeToken)
	cookie := "eventstream_token=" + sessionCookie(t, in).Value
	e.must(200, "GET", "/ui/", "", "", "Cookie", cookie)
	o.must(200, "GET", "/ui/projections", "", "", "Cookie", cookie)
	out := e.must(303, "POST", "/ui/logout", "", "", "Cookie", cookie)
	if ck := sessionCookie(t, out); ck.MaxAge >= 0 || ck.Value != "" {
		t.Fatalf("sign out does not clear the cookie: %v", out.header)
	}
	for _, s := range []*env{e, o} {
		for _, p := range []string{"/ui/", "/ui/projections"} {
			if r := s.must(401, "GET", p, "", "", "Cookie", cookie); !strings.Contains(r.body, `id="token"`) || !strings.Contains(r.body, "sign in again") {
				t.Errorf("GET %s with the cookie of a session signed out: not the sign-in page:\n%s", p, r.body)
			}
		}
	}
	// The token itself is not affected.
	e.must(200, "GET", "/ui/", acmeToken, "")
}

// TestUISignOutEndsTheSessionWithoutADatabase: a server without a
// database keeps its sessions in the process, with the same promise.
func TestUISignOutEndsTheSessionWithoutADatabase(t *testing.T) {
	t.Parallel()
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Store: store, Registry: schemasReg(),
		Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	in := e.signIn(acmeToken)
	id := sessionCookie(t, in).Value
	if strings.Contains(id, acmeToken) {
		t.Fatalf("the session cookie holds the token: %q", id)
	}
	cookie := "eventstream_token=" + id
	e.must(200, "GET", "/ui/projections", "", "", "Cookie", cookie)
	e.must(303, "POST", "/ui/logout", "", "", "Cookie", cookie)
	e.must(401, "GET", "/ui/projections", "", "", "Cookie", cookie)
	e.must(401, "GET", "/ui/projections", "", "", "Cookie", "eventstream_token="+acmeToken)
}

// TestUISessionExpires: a session lasts Config.SessionTTL from sign-in,
// however much it is used; past it, its cookie shows the sign-in page.
func TestUISessionExpires(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{sessionTTL: 90 * time.Minute})
	in := e.signIn(acmeToken)
	cookie := "eventstream_token=" + sessionCookie(t, in).Value
	e.must(200, "GET", "/ui/", "", "", "Cookie", cookie)
	ctx := context.Background()
	var lasts time.Duration
	if err := e.pool.QueryRow(ctx, `SELECT extract(epoch FROM expires_at - created_at)::float8 * 1e9 FROM eventstream_ui_sessions`).Scan(&lasts); err != nil {
		t.Fatal(err)
	}
	if lasts != 90*time.Minute {
		t.Fatalf("the session lasts %v, want the configured 1h30m", lasts)
	}
	// Time passes: move the session's end into the past.
	if _, err := e.pool.Exec(ctx, `UPDATE eventstream_ui_sessions SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if r := e.must(401, "GET", "/ui/", "", "", "Cookie", cookie); !strings.Contains(r.body, "sign in again") {
		t.Fatalf("an expired session: not the sign-in page:\n%s", r.body)
	}
	// Signing in again drops the expired session from the table.
	e.signIn(acmeToken)
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM eventstream_ui_sessions WHERE expires_at <= now()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d expired sessions kept after a sign-in", n)
	}

	// Unconfigured, a session lasts the documented 12 h.
	d := newEnv(t, server.Limits{})
	sessionCookie(t, d.signIn(acmeToken))
	if err := d.pool.QueryRow(ctx, `SELECT extract(epoch FROM expires_at - created_at)::float8 * 1e9 FROM eventstream_ui_sessions`).Scan(&lasts); err != nil {
		t.Fatal(err)
	}
	if lasts != 12*time.Hour {
		t.Fatalf("with the default SessionTTL, a session lasts %v, want 12h", lasts)
	}
}

// TestAuthenticatedAnswersAreNeverCached: every answer to a request with
// a token (the API's JSON, which holds a tenant's events and payloads,
// its errors, and the audit browser's pages) says Cache-Control: no-store,
// so that no browser or proxy cache keeps a copy past the token's or the
// session's life.
func TestAuthenticatedAnswersAreNeverCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/acme-cache/events", acmeToken, requestedEvent("acme"))
	e.project()
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/events", acmeToken},
		{"GET", "/streams/acme-cache", acmeToken},
		{"GET", "/streams/acme-cache", globexToken},
		{"GET", "/projections", acmeToken},
		{"GET", "/schemas", acmeToken},
		{"GET", "/events", "wrong"},
		{"GET", "/ui/", acmeToken},
		{"GET", "/ui/", ""},
	} {
		if r := e.do(c.method, c.path, c.token, ""); r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s (%d): Cache-Control %q, want no-store", c.method, c.path, r.code, r.header.Get("Cache-Control"))
		}
	}
}

// TestUISessionCookieIsHostPrefixedOverTLS: over TLS (ours, or a proxy's
// that says so) the session cookie is __Host-: Secure, Path=/ and no
// Domain, so that neither a page of the host over plain HTTP (which an
// attacker on the network can make the browser load) nor another
// subdomain can set one in its place. Over TLS only that cookie is read: a
// cookie of the plain HTTP name, which such a page can set, opens nothing,
// even holding a live session's id. Signing in over TLS also clears the
// plain HTTP cookie an earlier version left (it may hold the token). Over
// plain HTTP the cookie keeps its name and /ui/ and is not Secure, which a
// browser would refuse there, and it works.
func TestUISessionCookieIsHostPrefixedOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	viaProxy := []string{"X-Forwarded-Proto", "https"}

	in := e.signIn(acmeToken, viaProxy...)
	ck := sessionCookie(t, in)
	if ck.Name != "__Host-eventstream_token" || !ck.Secure || ck.Path != "/" || ck.Domain != "" || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("behind a TLS proxy: cookie %q Secure=%v Path=%q Domain=%q HttpOnly=%v SameSite=%v; want __Host-eventstream_token, Secure, Path=/, no Domain, HttpOnly, Strict",
			ck.Name, ck.Secure, ck.Path, ck.Domain, ck.HttpOnly, ck.SameSite)
	}
	cleared := false
	for _, c := range (&http.Response{Header: in.header}).Cookies() {
		cleared = cleared || (c.Name == "eventstream_token" && c.MaxAge < 0 && c.Path == "/ui/")
	}
	if !cleared {
		t.Errorf("signing in over TLS leaves an earlier plain HTTP cookie in place: %v", in.header)
	}
	e.must(200, "GET", "/ui/", "", "", append([]string{"Cookie", "__Host-eventstream_token=" + ck.Value}, viaProxy...)...)
	if r := e.must(401, "GET", "/ui/", "", "", append([]string{"Cookie", "eventstream_token=" + ck.Value}, viaProxy...)...); !strings.Contains(r.body, `id="token"`) {
		t.Fatalf("over TLS, a live session's id under the plain HTTP name: not the sign-in page:\n%s", r.body)
	}
	out := e.must(303, "POST", "/ui/logout", "", "", append([]string{"Cookie", "__Host-eventstream_token=" + ck.Value}, viaProxy...)...)
	if c := sessionCookie(t, out); c.Name != "__Host-eventstream_token" || c.MaxAge >= 0 || !c.Secure || c.Path != "/" {
		t.Errorf("signing out behind a TLS proxy does not clear the __Host- cookie: %v", out.header)
	}
	e.must(401, "GET", "/ui/", "", "", append([]string{"Cookie", "__Host-eventstream_token=" + ck.Value}, viaProxy...)...)

	// Our own TLS.
	tls := httptest.NewTLSServer(e.h)
	t.Cleanup(tls.Close)
	client := tls.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.PostForm(tls.URL+"/ui/login", url.Values{"token": {acmeToken}, "next": {"/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if c := sessionCookie(t, response{code: res.StatusCode, header: res.Header}); c.Name != "__Host-eventstream_token" || !c.Secure || c.Path != "/" {
		t.Fatalf("over TLS: cookie %q Secure=%v Path=%q, want __Host-eventstream_token, Secure, Path=/", c.Name, c.Secure, c.Path)
	}

	// Plain HTTP.
	in = e.signIn(acmeToken)
	ck = sessionCookie(t, in)
	if ck.Name != "eventstream_token" || ck.Secure || ck.Path != "/ui/" {
		t.Fatalf("over plain HTTP: cookie %q Secure=%v Path=%q; want eventstream_token, not Secure, Path=/ui/", ck.Name, ck.Secure, ck.Path)
	}
	e.must(200, "GET", "/ui/", "", "", "Cookie", "eventstream_token="+ck.Value)
}

// TestUISignInAgainEndsTheBrowsersSession: a browser that signs in again
// (as another token or the same) while it holds a live session ends that
// session first: a copy of the old cookie opens nothing afterwards, and
// the sessions of a browser do not pile up. So over TLS, and without a
// database.
func TestUISignInAgainEndsTheBrowsersSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Store: store, Registry: schemasReg(),
		Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app"), server.TokenFor(globexToken, "globex", "globex-app")}),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	mem := &env{t: t, srv: srv}
	for _, c := range []struct {
		name    string
		e       *env
		cookie  string
		headers []string
	}{
		{"postgres", e, "eventstream_token", nil},
		{"postgres over TLS", e, "__Host-eventstream_token", []string{"X-Forwarded-Proto", "https"}},
		{"in memory", mem, "eventstream_token", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			with := func(cookie string) []string { return append([]string{"Cookie", c.cookie + "=" + cookie}, c.headers...) }
			first := sessionCookie(t, c.e.signIn(acmeToken, c.headers...)).Value
			c.e.must(200, "GET", "/ui/projections", "", "", with(first)...)
			for _, token := range []string{acmeToken, globexToken} {
				again := c.e.signIn(token, with(first)...)
				if again.code != http.StatusSeeOther {
					t.Fatalf("sign in again: %d %s", again.code, again.body)
				}
				next := sessionCookie(t, again).Value
				if r := c.e.must(401, "GET", "/ui/projections", "", "", with(first)...); !strings.Contains(r.body, "sign in again") {
					t.Fatalf("the session signed in over still opens a page, or not the sign-in page:\n%s", r.body)
				}
				c.e.must(200, "GET", "/ui/projections", "", "", with(next)...)
				first = next
			}
		})
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM eventstream_ui_sessions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d sessions left by two browsers that signed in three times each, want 2", n)
	}
}

// TestUISessionsOfATokenAreCapped: a token keeps at most
// Config.MaxSessions live sessions (DefaultMaxSessions, 20, unless set):
// a sign-in past it ends the token's oldest session, so that signing in
// in a loop cannot fill the sessions table. The other tokens' sessions are
// not touched, and sign-ins at the same moment do not overshoot the cap.
func TestUISessionsOfATokenAreCapped(t *testing.T) {
	t.Parallel()
	count := func(e *env, token string) int {
		t.Helper()
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM eventstream_ui_sessions WHERE token_sha256 = $1`, server.HashToken(token)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	open := func(e *env, id string) int {
		return e.do("GET", "/ui/projections", "", "", "Cookie", "eventstream_token="+id).code
	}

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		if server.DefaultMaxSessions != 20 {
			t.Fatalf("DefaultMaxSessions = %d; the documentation says 20", server.DefaultMaxSessions)
		}
		e := newEnv(t, server.Limits{})
		var ids []string
		for range server.DefaultMaxSessions + 1 {
			ids = append(ids, sessionCookie(t, e.signIn(acmeToken)).Value)
		}
		if n := count(e, acmeToken); n != server.DefaultMaxSessions {
			t.Fatalf("%d sessions of one token after %d sign-ins, want %d", n, len(ids), server.DefaultMaxSessions)
		}
		if got := open(e, ids[0]); got != http.StatusUnauthorized {
			t.Errorf("the oldest session past the cap: %d, want 401", got)
		}
		for _, id := range ids[1:] {
			if got := open(e, id); got != http.StatusOK {
				t.Fatalf("a session within the cap: %d, want 200", got)
			}
		}
	})

	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		e := newEnvWith(t, envOptions{maxSessions: 3})
		globex := sessionCookie(t, e.signIn(globexToken)).Value
		var ids []string
		for range 5 {
			ids = append(ids, sessionCookie(t, e.signIn(acmeToken)).Value)
		}
		if n := count(e, acmeToken); n != 3 {
			t.Fatalf("%d sessions of one token with MaxSessions 3", n)
		}
		for i, id := range ids {
			want := http.StatusOK
			if i < 2 {
				want = http.StatusUnauthorized
			}
			if got := open(e, id); got != want {
				t.Errorf("session %d of 5 (cap 3): %d, want %d", i+1, got, want)
			}
		}
		if got := open(e, globex); got != http.StatusOK {
			t.Errorf("another token's session: %d, want 200", got)
		}
		// Sign-ins at the same moment: each succeeds (a redirect with a
		// session cookie), and the cap holds: 3 of the 8 new sessions
		// live, every older one ended.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		fresh := make(chan string, 8)
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for range 8 {
			wg.Go(func() {
				res, err := noRedirect.PostForm(e.srv.URL+"/ui/login", url.Values{"token": {acmeToken}, "next": {"/ui/"}})
				if err != nil {
					errs <- err
					return
				}
				res.Body.Close()
				for _, c := range res.Cookies() {
					if c.Name == "eventstream_token" && c.Value != "" && res.StatusCode == http.StatusSeeOther {
						fresh <- c.Value
						return
					}
				}
				errs <- fmt.Errorf("a sign-in at the same moment as others: %d, cookies %v; want 303 with a session cookie", res.StatusCode, res.Cookies())
			})
		}
		wg.Wait()
		close(errs)
		close(fresh)
		for err := range errs {
			t.Fatal(err)
		}
		if n := count(e, acmeToken); n != 3 {
			t.Fatalf("%d sessions of one token after 8 sign-ins at once with MaxSessions 3", n)
		}
		live := 0
		for id := range fresh {
			if open(e, id) == http.StatusOK {
				live++
			}
		}
		if live != 3 {
			t.Errorf("%d of the 8 sessions signed in at once open the audit log, want 3 (the cap)", live)
		}
		for i, id := range ids {
			if got := open(e, id); got != http.StatusUnauthorized {
				t.Errorf("session %d of 5, older than the 8 signed in at once: %d, want 401", i+1, got)
			}
		}
	})

	t.Run("without a database", func(t *testing.T) {
		t.Parallel()
		store, err := memory.New(schemasReg())
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.New(server.Config{Store: store, Registry: schemasReg(), MaxSessions: 2,
			Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app"), server.TokenFor(globexToken, "globex", "globex-app")}),
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		m := &env{t: t, srv: srv}
		globex := sessionCookie(t, m.signIn(globexToken)).Value
		var ids []string
		for range 4 {
			ids = append(ids, sessionCookie(t, m.signIn(acmeToken)).Value)
		}
		for i, id := range ids {
			want := http.StatusOK
			if i < 2 {
				want = http.StatusUnauthorized
			}
			if got := open(m, id); got != want {
				t.Errorf("session %d of 4 (cap 2): %d, want %d", i+1, got, want)
			}
		}
		if got := open(m, globex); got != http.StatusOK {
			t.Errorf("another token's session: %d, want 200", got)
		}
	})
}

// TestUIExpiredSessionsArePurgedWithoutASignIn: a started server deletes
// the expired sessions every SessionPurgeInterval, every token's, though
// nobody signs in, and keeps the live ones, which still open pages. The
// expired ones open nothing before they are deleted.
func TestUIExpiredSessionsArePurgedWithoutASignIn(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{purgeInterval: 50 * time.Millisecond})
	ctx := context.Background()
	count := func(where string) int {
		t.Helper()
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM eventstream_ui_sessions WHERE `+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	open := func(id string) int {
		return e.do("GET", "/ui/projections", "", "", "Cookie", "eventstream_token="+id).code
	}
	acme1 := sessionCookie(t, e.signIn(acmeToken)).Value
	acme2 := sessionCookie(t, e.signIn(acmeToken)).Value
	globex := sessionCookie(t, e.signIn(globexToken)).Value
	ops := sessionCookie(t, e.signIn(operatorToken)).Value
	// Two rounds, so that the purge is seen to come back, not only to run
	// once when the server starts.
	for _, round := range []struct {
		expire []string // tokens whose sessions time moves past their end
		gone   []string // their cookies
		live   []string
	}{
		{[]string{acmeToken, globexToken}, []string{acme1, acme2, globex}, []string{ops}},
		{[]string{operatorToken}, []string{ops}, nil},
	} {
		for _, token := range round.expire {
			if _, err := e.pool.Exec(ctx, `UPDATE eventstream_ui_sessions SET expires_at = now() - interval '1 second' WHERE token_sha256 = $1`, server.HashToken(token)); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.Now().Add(10 * time.Second); count("expires_at <= now()") > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d expired sessions still kept 10s after they expired, with SessionPurgeInterval 50ms and no sign-in", count("expires_at <= now()"))
			}
		}
		if n, want := count("true"), len(round.live); n != want {
			t.Fatalf("%d sessions left after the purge, want the %d live ones", n, want)
		}
		for _, id := range round.gone {
			if got := open(id); got != http.StatusUnauthorized {
				t.Errorf("an expired session: %d, want 401", got)
			}
		}
		for _, id := range round.live {
			if got := open(id); got != http.StatusOK {
				t.Errorf("a live session after a purge: %d, want 200", got)
			}
		}
	}
}

// TestUIExpiredSessionsArePurgedWithoutADatabase: so in the process too.
func TestUIExpiredSessionsArePurgedWithoutADatabase(t *testing.T) {
	t.Parallel()
	s, err := server.New(server.Config{Store: memoryStore(t), Registry: schemasReg(), SessionTTL: 300 * time.Millisecond,
		SessionPurgeInterval: 50 * time.Millisecond,
		Auth:                 server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
		Logger:               slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// The sessions' clock stands still until the test moves it past the
	// TTL: on a loaded machine the first session could otherwise expire,
	// and be purged, before the second sign-in is counted.
	start := time.Now()
	var elapsed atomic.Int64
	server.SetSessionClock(s, func() time.Time { return start.Add(time.Duration(elapsed.Load())) })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	e.signIn(acmeToken)
	e.signIn(acmeToken)
	if n := server.SessionCount(s); n != 2 {
		t.Fatalf("%d sessions after two sign-ins, want 2", n)
	}
	elapsed.Store(int64(300 * time.Millisecond))
	for deadline := time.Now().Add(10 * time.Second); server.SessionCount(s) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still kept 10s after they expired (TTL 300ms), with SessionPurgeInterval 50ms and no sign-in", server.SessionCount(s))
		}
	}
}

// TestServerUpkeepStops: the upkeep Start starts (the session purge)
// stops at Close and when Start's context ends: no goroutine outlives the
// server. New starts none. Not parallel, so that the goroutines of other
// tests do not count.
func TestServerUpkeepStops(t *testing.T) {
	store := memoryStore(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	purging := func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "server.(*Server).purgeSessions")
	}
	newServer := func() *server.Server {
		s, err := server.New(server.Config{Store: store, Registry: schemasReg(), SessionPurgeInterval: time.Millisecond,
			Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	s := newServer()
	if purging() {
		t.Fatal("New started the upkeep")
	}
	s.Close() // never started: nothing to stop
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Close: want an error")
	}

	s = newServer()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("a second Start: want an error")
	}
	// The upkeep's goroutine shows purgeSessions once it has been
	// scheduled; on a loaded machine that may take a while.
	for deadline := time.Now().Add(30 * time.Second); !purging(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no upkeep running 30s after Start")
		}
	}
	s.Close()
	if purging() {
		t.Fatal("the upkeep still runs after Close returned")
	}
	s.Close()

	s = newServer()
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	for deadline := time.Now().Add(5 * time.Second); purging(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upkeep still runs 5s after Start's context ended")
		}
	}
	s.Close()
}

// memoryStore is an in-memory log, for servers without a database.
func memoryStore(t *testing.T) *memory.Store {
	t.Helper()
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	return store
}
