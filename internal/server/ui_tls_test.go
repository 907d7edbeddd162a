package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUIInHeadlessChromiumKeepsTheSessionCookie: a real browser keeps the
// session cookie the server chooses, and sends it back, in the deployments
// docs/operations/serve.md describes. Over TLS (the server's own, or a
// proxy's that terminates it and says so with X-Forwarded-Proto) the
// browser stores exactly __Host-eventstream_token (Secure, HttpOnly,
// SameSite=Strict, Path=/, host-only) and no plain cookie; over plain HTTP
// exactly eventstream_token, not Secure, for /ui/. With it the audit log
// opens; signing out removes it from the browser and the audit log asks to
// sign in again. A server that set the plain cookie over TLS, or the
// __Host- one without Secure (which the browser refuses), fails here.
func TestUIInHeadlessChromiumKeepsTheSessionCookie(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): the audit browser was not tested in a browser")
	}
	e := newEnv(t, server.Limits{})
	e.seed()

	// tlsServer serves h over TLS, with httptest's certificate, which the
	// browser is told to trust by its key (as if a CA it trusts had
	// signed it), so that the page is a secure context like any other
	// https:// page, not one with a bypassed certificate error.
	tlsServer := func(t *testing.T, h http.Handler) (string, []chromedp.ExecAllocatorOption) {
		srv := httptest.NewTLSServer(h)
		t.Cleanup(srv.Close)
		spki := sha256.Sum256(srv.Certificate().RawSubjectPublicKeyInfo)
		return srv.URL, []chromedp.ExecAllocatorOption{
			chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		}
	}
	backend, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		serve func(t *testing.T) (string, []chromedp.ExecAllocatorOption)
		// the cookie the browser must hold once signed in
		cookie, path string
		secure       bool
	}{
		{"TLS directly", func(t *testing.T) (string, []chromedp.ExecAllocatorOption) {
			return tlsServer(t, e.h)
		}, "__Host-eventstream_token", "/", true},
		{"TLS-terminating proxy", func(t *testing.T) (string, []chromedp.ExecAllocatorOption) {
			// The proxy reaches the server over plain HTTP and says
			// that the browser's connection was TLS, as the documented
			// proxy configurations do.
			proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(backend)
				r.SetXForwarded()
				r.Out.Header.Set("X-Forwarded-Proto", "https")
			}}
			return tlsServer(t, proxy)
		}, "__Host-eventstream_token", "/", true},
		{"plain HTTP", func(t *testing.T) (string, []chromedp.ExecAllocatorOption) {
			return e.srv.URL, nil
		}, "eventstream_token", "/ui/", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, flags := c.serve(t)
			// A browser of its own: cookies do not tell ports apart, so
			// one browser would carry a cookie from one case to the next.
			bctx := headless(t, browser, flags...)
			// The first run starts the browser; it must not carry a timeout.
			if err := chromedp.Do(bctx); err != nil {
				t.Fatalf("start chromium: %v", err)
			}
			ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
			defer cancel()
			browserSession(t, ctx, base, c.cookie, c.path, c.secure)
		})
	}
}

// browserSession signs in at base through the form, checks that the
// browser holds exactly the cookie named name (for path, Secure when
// secure, HttpOnly, SameSite=Strict, host-only) and that it opens the audit
// log, then signs out and checks that the cookie is gone and the audit log
// asks to sign in.
func browserSession(t *testing.T, ctx context.Context, base, name, path string, secure bool) {
	host, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cookies := func() []*network.Cookie {
		t.Helper()
		res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{})
		if err != nil {
			t.Fatalf("the browser's cookies: %v", err)
		}
		return res.Cookies
	}
	describe := func(cs []*network.Cookie) string {
		var b strings.Builder
		for _, c := range cs {
			fmt.Fprintf(&b, " {%s Domain=%s Path=%s Secure=%v HttpOnly=%v SameSite=%s}", c.Name, c.Domain, c.Path, c.Secure, c.HTTPOnly, c.SameSite)
		}
		if b.Len() == 0 {
			return " none"
		}
		return b.String()
	}
	// load runs the step, which navigates, and checks the page it lands
	// on: its status and which of the audit log and the sign-in form it
	// shows.
	load := func(what string, step chromedp.Action[chromedp.Void], wantCode int, wantPath string) {
		t.Helper()
		res, err := chromedp.RunResponse(ctx, step)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		at, err := url.Parse(res.URL)
		if err != nil {
			t.Fatal(err)
		}
		if int(res.Status) != wantCode || at.Path != wantPath {
			t.Fatalf("%s: the browser is at %s (%d), want %s (%d); it holds the cookies%s", what, res.URL, res.Status, wantPath, wantCode, describe(cookies()))
		}
		want, id := "the sign-in form", "token"
		if wantCode == http.StatusOK && wantPath == "/ui/" {
			want, id = "the audit log", "events"
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID(id))); err != nil {
			t.Fatalf("%s: %s at %s: %v", what, want, res.URL, err)
		}
		shows, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("events") ? "the audit log" : document.getElementById("token") ? "the sign-in form" : "neither"`))
		if err != nil {
			t.Fatal(err)
		}
		if shows != want {
			t.Fatalf("%s: the page at %s shows %s, want %s", what, res.URL, shows, want)
		}
	}

	load("open the audit log signed out", chromedp.Navigate(base+"/ui/"), http.StatusUnauthorized, "/ui/")
	if cs := cookies(); len(cs) != 0 {
		t.Fatalf("before signing in the browser holds the cookies%s", describe(cs))
	}

	load("sign in", chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("token"), operatorToken),
		chromedp.Click(chromedp.ID("sign-in")),
	), http.StatusOK, "/ui/")
	cs := cookies()
	if len(cs) != 1 {
		t.Fatalf("signed in, the browser holds the cookies%s; want %s alone", describe(cs), name)
	}
	if c := cs[0]; c.Name != name || c.Value == "" || c.Path != path || c.Domain != host.Hostname() || c.Secure != secure || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("signed in, the browser holds%s; want {%s Domain=%s Path=%s Secure=%v HttpOnly=true SameSite=Strict}",
			describe(cs), name, host.Hostname(), path, secure)
	}
	if who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("tenant"))); err != nil || !strings.Contains(who, "operator") {
		t.Fatalf("signed in as %q (%v)", who, err)
	}

	// A page that needs the session, opened afresh: the browser sends the
	// cookie back.
	load("open the audit log signed in", chromedp.Navigate(base+"/ui/?type=course.generation.failed"), http.StatusOK, "/ui/")
	if nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#events tr.event"))); err != nil || len(nodes) != 1 {
		t.Fatalf("the filtered audit log lists %d events (%v), want 1", len(nodes), err)
	}

	load("sign out", chromedp.Click(chromedp.CSS("form.who button[type=submit]")), http.StatusOK, "/ui/login")
	if cs := cookies(); len(cs) != 0 {
		t.Fatalf("signed out, the browser holds the cookies%s", describe(cs))
	}
	load("open the audit log signed out again", chromedp.Navigate(base+"/ui/"), http.StatusUnauthorized, "/ui/")
}
