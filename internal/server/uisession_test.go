package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
