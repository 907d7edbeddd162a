package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/server"
)

// signIn posts the sign-in form with a token and extra headers.
func (e *env) signIn(token string, headers ...string) response {
	e.t.Helper()
	return e.do("POST", "/ui/login", "", "token="+url.QueryEscape(token)+"&next=/ui/",
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, headers...)...)
}

// sessionCookie returns the Set-Cookie of the session cookie in r: the
// __Host- one if r sets it (over TLS, where the other is only cleared),
// else the plain HTTP one.
func sessionCookie(t testing.TB, r response) *http.Cookie {
	t.Helper()
	cookies := (&http.Response{Header: r.header}).Cookies()
	for _, name := range []string{"__Host-eventstream_token", "eventstream_token"} {
		for _, c := range cookies {
			if c.Name == name {
				return c
			}
		}
	}
	t.Fatalf("no session cookie in %v", r.header)
	return nil
}

// TestUISessionCookieIsSecureBehindATLSProxy: the documented deployment
// terminates TLS in a proxy, so the server sees plain HTTP; the proxy says
// so with X-Forwarded-Proto or Forwarded. The cookie holding the token must
// then be Secure, or a browser sends it in clear to any http:// URL of the
// host (one an attacker on the network makes it load). Plain HTTP without
// such a header (serve --dev on a laptop) keeps a cookie the browser stores.
// Signing out clears the cookie with the same attributes. The Secure cookie
// is the __Host- one, for the whole host (TestUISessionCookieIsHostPrefixedOverTLS).
func TestUISessionCookieIsSecureBehindATLSProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, c := range []struct {
		name    string
		headers []string
		secure  bool
	}{
		{"plain HTTP", nil, false},
		{"X-Forwarded-Proto https", []string{"X-Forwarded-Proto", "https"}, true},
		{"X-Forwarded-Proto HTTPS, then http", []string{"X-Forwarded-Proto", "HTTPS, http"}, true},
		{"X-Forwarded-Proto http", []string{"X-Forwarded-Proto", "http"}, false},
		{"Forwarded proto=https", []string{"Forwarded", `for=192.0.2.1;proto=https;host=audit.example`}, true},
		{"Forwarded quoted proto", []string{"Forwarded", `for="[2001:db8::1]";proto="https", for=10.0.0.1;proto=http`}, true},
		{"Forwarded proto=http", []string{"Forwarded", `proto=http`}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := e.signIn(operatorToken, c.headers...)
			if in.code != http.StatusSeeOther {
				t.Fatalf("sign in: %d %s", in.code, in.body)
			}
			out := e.do("POST", "/ui/logout", "", "", c.headers...)
			path := "/ui/"
			if c.secure {
				path = "/"
			}
			for what, ck := range map[string]*http.Cookie{"sign-in": sessionCookie(t, in), "sign-out": sessionCookie(t, out)} {
				if ck.Secure != c.secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != path {
					t.Errorf("%s cookie: Secure=%v HttpOnly=%v SameSite=%v Path=%q; want Secure=%v, HttpOnly, SameSite=Strict, Path=%s",
						what, ck.Secure, ck.HttpOnly, ck.SameSite, ck.Path, c.secure, path)
				}
			}
		})
	}
}

// TestUISessionCookieIsSecureOverTLS: served over TLS directly, the
// session cookie is Secure, and so is the one that clears it.
func TestUISessionCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	tls := httptest.NewTLSServer(e.h)
	t.Cleanup(tls.Close)
	client := tls.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.PostForm(tls.URL+"/ui/login", url.Values{"token": {operatorToken}, "next": {"/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ck := sessionCookie(t, response{code: res.StatusCode, header: res.Header}); !ck.Secure {
		t.Fatalf("over TLS the session cookie is not Secure: %v", res.Header)
	}
	res, err = client.Post(tls.URL+"/ui/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ck := sessionCookie(t, response{code: res.StatusCode, header: res.Header}); !ck.Secure || ck.MaxAge >= 0 {
		t.Fatalf("over TLS signing out does not clear a Secure cookie: %v", res.Header)
	}
}

// TestUISignInAndOutRefuseOtherSites: a page of another site cannot sign a
// browser in (with the attacker's own token: the victim then browses, and
// trusts, the attacker's tenant as if it were theirs) or out. The
// SameSite cookie does not prevent either: it limits when the cookie is
// sent, not when it is set or cleared by a cross-site form post. A
// same-origin browser and a client that sends neither Sec-Fetch-Site nor
// Origin (curl, scripts) still sign in.
func TestUISignInAndOutRefuseOtherSites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, c := range []struct {
		name    string
		headers []string
		ok      bool
	}{
		{"no browser headers", nil, true},
		{"same origin", []string{"Sec-Fetch-Site", "same-origin", "Origin", e.srv.URL}, true},
		{"same origin behind a proxy that rewrites Host", []string{"Sec-Fetch-Site", "same-origin", "Origin", "https://audit.example"}, true},
		{"typed in the address bar", []string{"Sec-Fetch-Site", "none"}, true},
		{"old browser, same origin", []string{"Origin", e.srv.URL}, true},
		{"cross site", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, false},
		{"same site, other origin", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://other.audit.example"}, false},
		{"old browser, other origin", []string{"Origin", "https://evil.example"}, false},
		{"opaque origin", []string{"Origin", "null"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []response{e.signIn(globexToken, c.headers...), e.do("POST", "/ui/logout", "", "", c.headers...)} {
				set := r.header.Get("Set-Cookie") != ""
				switch {
				case c.ok && (r.code != http.StatusSeeOther || !set):
					t.Errorf("refused: %d %v %s", r.code, r.header, r.body)
				case !c.ok && (r.code != http.StatusForbidden || set):
					t.Errorf("another site's form post: %d, Set-Cookie %q; want 403 and no cookie", r.code, r.header.Get("Set-Cookie"))
				}
			}
		})
	}
}

// TestEveryResponseCarriesTheSecurityHeaders: every answer of the server,
// not only the audit browser's rendered pages, tells the browser not to
// guess its content type, not to show it in a frame (clickjacking; the
// CSP for current browsers, X-Frame-Options for older ones) and to run or
// load nothing it names: the redirects, the style sheet, the plain-text
// and JSON errors, the API's JSON with attacker-written strings in it.
func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.seed()
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	for _, c := range []struct {
		method, path, token, body string
		headers                   []string
	}{
		{"GET", "/", "", "", nil},
		{"GET", "/ui", "", "", nil},
		{"GET", "/ui/", "", "", nil},
		{"GET", "/ui/", acmeToken, "", nil},
		{"GET", "/ui/login", "", "", nil},
		{"POST", "/ui/login", "", "token=" + acmeToken + "&next=/ui/", form},
		{"POST", "/ui/login", "", "token=wrong", form},
		{"POST", "/ui/logout", "", "", nil},
		{"GET", "/ui/logout", "", "", nil},
		{"GET", "/ui/events/not-a-uuid", acmeToken, "", nil},
		{"GET", "/ui/projections", acmeToken, "", nil},
		{"GET", "/ui/static/style.css", "", "", nil},
		{"GET", "/ui/nothing-here", "", "", nil},
		{"GET", "/events", acmeToken, "", nil},
		{"GET", "/events", "", "", nil},
		{"GET", "/streams/orders-0", acmeToken, "", nil},
		{"POST", "/streams/orders-0/events", acmeToken, "{", nil},
		{"GET", "/schemas/course.generation.requested/latest", acmeToken, "", nil},
		{"GET", "/healthz", "", "", nil},
		{"GET", "/readyz", "", "", nil},
		{"GET", "/metrics", "", "", nil},
	} {
		r := e.do(c.method, c.path, c.token, c.body, c.headers...)
		h := r.header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %s (%d): X-Content-Type-Options %q, X-Frame-Options %q, Content-Security-Policy %q",
				c.method, c.path, r.code, h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"), h.Get("Content-Security-Policy"))
		}
	}
}

// TestUISessionEndsWhenItsTokenIsRevoked: the cookie is checked like a
// bearer token on every page, so a browser signed in with a token is
// signed out, on its next page past the token list's TTL, once the token
// is revoked; it does not live on as a session of its own.
func TestUISessionEndsWhenItsTokenIsRevoked(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true, auth: server.AuthConfig{TTL: 10 * time.Millisecond}})
	ctx := context.Background()
	tt := server.TokenTable{Pool: e.pool}
	secret, err := tt.Add(ctx, "acme", "browser")
	if err != nil {
		t.Fatal(err)
	}
	in := e.signIn(secret)
	if in.code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", in.code, in.body)
	}
	cookie := "eventstream_token=" + sessionCookie(t, in).Value
	for _, p := range []string{"/ui/", "/ui/projections"} {
		e.must(200, "GET", p, "", "", "Cookie", cookie)
	}
	if _, err := tt.Revoke(ctx, "browser"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the TTL
	for _, p := range []string{"/ui/", "/ui/projections"} {
		if r := e.must(401, "GET", p, "", "", "Cookie", cookie); !strings.Contains(r.body, `id="token"`) || !strings.Contains(r.body, "not valid") {
			t.Errorf("GET %s with a revoked token's cookie: not the sign-in page:\n%s", p, r.body)
		}
	}
}

// TestUISignInRedirectsOnlyWithinTheBrowser: the address signed in to
// comes from the form, which a link can fill in; whatever it holds, the
// redirect stays on this host, in the audit browser.
func TestUISignInRedirectsOnlyWithinTheBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	base, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, next := range []string{
		"https://evil.example/ui/", "//evil.example/ui/", "/\\evil.example/ui/", "\\\\evil.example/ui/",
		"/ui/../..//evil.example/", "/ui/..%2f..%2f/evil.example",
		"javascript:alert(1)//ui/", "",
		// A control character makes a Location that Go's client refuses and
		// browsers rewrite.
		"/ui/\t/evil.example", "/ui/../\t/evil.example", "/ui/\r\nLocation: https://evil.example", "/ui/\x7f",
	} {
		r := e.do("POST", "/ui/login", "", url.Values{"token": {operatorToken}, "next": {next}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		loc := r.header.Get("Location")
		// Browsers drop tabs and newlines from a URL and read "\" as "/".
		seen := strings.ReplaceAll(strings.NewReplacer("\t", "", "\r", "", "\n", "").Replace(loc), "\\", "/")
		to, err := base.Parse(seen)
		if r.code != http.StatusSeeOther || err != nil || to.Host != base.Host || !strings.HasPrefix(seen, "/") || strings.HasPrefix(seen, "//") {
			t.Errorf("next=%q: %d, Location %q", next, r.code, loc)
		}
	}
	r := e.signIn(operatorToken)
	if got := r.header.Get("Location"); got != "/ui/" {
		t.Errorf("next=/ui/: Location %q", got)
	}
	r = e.do("POST", "/ui/login", "", url.Values{"token": {operatorToken}, "next": {"/ui/events/x?y=1"}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if got := r.header.Get("Location"); got != "/ui/events/x?y=1" {
		t.Errorf("next=/ui/events/x?y=1: Location %q", got)
	}
}

// TestUISignInWhileTheTokensCannotBeReadSaysSo: while the token list cannot
// be read, signing in answers 503 and says why, like every other request
// with a token, instead of telling the operator that a good token is not
// valid (they would go and revoke or recreate it); it sets no cookie.
func TestUISignInWhileTheTokensCannotBeReadSaysSo(t *testing.T) {
	t.Parallel()
	src := &switchSource{tokens: server.Tokens{server.TokenFor("s1", "acme", "a")}, err: errors.New("connection refused")}
	store, err := memory.New(schemasReg())
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Store: store, Registry: schemasReg(), Auth: server.NewAuthenticator(src), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	r := e.signIn("s1")
	if r.code != http.StatusServiceUnavailable || strings.Contains(r.body, "not valid") || !strings.Contains(r.body, "cannot be checked") || r.header.Get("Set-Cookie") != "" {
		t.Fatalf("sign in while the tokens cannot be read: %d, Set-Cookie %q:\n%s", r.code, r.header.Get("Set-Cookie"), r.body)
	}
}
