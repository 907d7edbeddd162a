package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brainhq/eventstream/internal/server"
)

// seed appends events of two types under one correlation id, and others.
func (e *env) seed() {
	e.t.Helper()
	for i := range 3 {
		e.must(201, "POST", fmt.Sprintf("/streams/orders-%d/events", i), acmeToken, requestedEvent("acme"))
	}
	e.must(201, "POST", "/streams/orders-0/events", acmeToken,
		`{"type":"course.generation.failed","payload":{"course_id":"5b9a2c61-0d7e-4f7e-9a51-0a4c9a3e8d21","stage":"outlining","reason":"model timeout","attempt":1},"meta":{"correlation_id":"corr-1"}}`)
	e.must(201, "POST", "/streams/other/events", globexToken, requestedEvent(""))
	e.project()
}

func TestUISignInFilterAndOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.seed()
	if r := e.must(401, "GET", "/ui/", "", ""); !strings.Contains(r.body, `id="token"`) {
		t.Fatalf("without a token the sign-in page is shown: %s", r.body)
	}
	if r := e.must(401, "POST", "/ui/login", "", "token=wrong&next=/ui/", "Content-Type", "application/x-www-form-urlencoded"); !strings.Contains(r.body, "not valid") {
		t.Fatalf("bad token: %s", r.body)
	}
	r := e.must(303, "POST", "/ui/login", "", "token="+url.QueryEscape(operatorToken)+"&next=https://evil.example/", "Content-Type", "application/x-www-form-urlencoded")
	cookie := r.header.Get("Set-Cookie")
	if r.header.Get("Location") != "/ui/" || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Fatalf("sign in: %v", r.header)
	}
	page := func(path string) string {
		return e.must(200, "GET", path, "", "", "Cookie", strings.SplitN(cookie, ";", 2)[0]).body
	}
	rows := regexp.MustCompile(`<tr class="event"`)
	all := page("/ui/")
	if n := len(rows.FindAllString(all, -1)); n != 5 {
		t.Fatalf("operator's audit log lists %d events, want 5", n)
	}
	if n := len(rows.FindAllString(page("/ui/?type=course.generation.failed"), -1)); n != 1 {
		t.Fatalf("type filter: %d rows", n)
	}
	if n := len(rows.FindAllString(page("/ui/?type=course.%25"), -1)); n != 5 {
		t.Fatalf("type prefix filter: %d rows", n)
	}
	if n := len(rows.FindAllString(page("/ui/?tenant=globex"), -1)); n != 1 {
		t.Fatalf("tenant filter: %d rows", n)
	}
	if n := len(rows.FindAllString(page("/ui/?correlation=corr-1"), -1)); n != 4 {
		t.Fatalf("correlation filter: %d rows", n)
	}
	if n := len(rows.FindAllString(page("/ui/?since=2000-01-01T00:00&until=2001-01-01T00:00"), -1)); n != 0 {
		t.Fatalf("time filter: %d rows", n)
	}
	e.must(400, "GET", "/ui/?since=yesterday", operatorToken, "")
	id := regexp.MustCompile(`href="/ui/events/([0-9a-f-]{36})"`).FindStringSubmatch(page("/ui/?type=course.generation.failed"))[1]
	ev := page("/ui/events/" + id)
	for _, want := range []string{`id="payload"`, "&#34;course_id&#34;", `id="follow"`, "course.generation"} {
		if !strings.Contains(ev, want) {
			t.Fatalf("event page lacks %s:\n%s", want, ev)
		}
	}
	e.must(404, "GET", "/ui/events/"+"00000000-0000-4000-8000-000000000000", operatorToken, "")
	e.must(404, "GET", "/ui/events/not-a-uuid", operatorToken, "")
	pp := page("/ui/projections")
	if !strings.Contains(pp, `id="lag"`) || !strings.Contains(pp, "audit") || !strings.Contains(pp, "No parked events") {
		t.Fatalf("projections page:\n%s", pp)
	}
	if r := e.do("GET", "/ui/", operatorToken, ""); !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("CSP: %v", r.header)
	}
	if r := e.must(303, "POST", "/ui/logout", "", ""); !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %v", r.header)
	}
}

// chromium returns the headless browser, or "" when none is installed.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// headless starts a headless browser (at its first use) with a profile of
// its own, closed at the test's end; extra adds to its options.
func headless(t *testing.T, browser string, extra ...chromedp.ExecAllocatorOption) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return bctx
}

// TestUIInHeadlessChromium drives the audit browser in a real browser:
// sign in, the list loads, a filter narrows it, an event opens, its
// correlation id is followed.
func TestUIInHeadlessChromium(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): the audit browser was not tested in a browser")
	}
	e := newEnv(t, server.Limits{})
	e.seed()

	bctx := headless(t, browser)
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate(e.srv.URL+"/ui/")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	// waitFor waits until the page's address contains want (a click that
	// navigates returns before the new page is there).
	waitFor := func(want string) {
		t.Helper()
		for {
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				t.Fatalf("location: %v", err)
			}
			if strings.Contains(loc, want) {
				if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("tenant"))); err != nil {
					t.Fatalf("page at %s: %v", loc, err)
				}
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the browser never reached %s (at %s)", want, loc)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	rows := func() int {
		t.Helper()
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#events tr.event")))
		if err != nil {
			t.Fatalf("rows: %v", err)
		}
		return len(nodes)
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}

	// Sign in.
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), operatorToken),
		chromedp.Click(chromedp.ID("sign-in")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("events"))); err != nil {
		t.Fatalf("the audit log did not load: %v", err)
	}
	if who := text("tenant"); !strings.Contains(who, "operator") {
		t.Fatalf("signed in as %q", who)
	}
	if n := rows(); n != 5 {
		t.Fatalf("the page lists %d events, want 5", n)
	}

	// A filter narrows the list.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("f-type"), "course.generation.failed"),
		chromedp.Click(chromedp.ID("apply")),
	); err != nil {
		t.Fatalf("filter: %v", err)
	}
	waitFor("type=course.generation.failed")
	if n := rows(); n != 1 {
		t.Fatalf("the type filter left %d rows, want 1", n)
	}

	// An event opens.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#events tr.event a.open"))); err != nil {
		t.Fatalf("open: %v", err)
	}
	waitFor("/ui/events/")
	if title, payload := text("event-type"), text("payload"); title != "course.generation.failed" || !strings.Contains(payload, `"reason": "model timeout"`) {
		t.Fatalf("the opened event: %q %q", title, payload)
	}

	// Its correlation id is followed across streams.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("follow"))); err != nil {
		t.Fatalf("follow: %v", err)
	}
	waitFor("correlation=corr-1")
	if n := rows(); n != 4 {
		t.Fatalf("following corr-1 lists %d events, want 4", n)
	}
}

// TestUIInHeadlessChromiumRefusesAnotherSitesSignIn: a page of another site
// that posts the sign-in form with its own token, as soon as a signed-out
// browser opens it, does not leave that browser signed in.
func TestUIInHeadlessChromiumRefusesAnotherSitesSignIn(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): the audit browser was not tested in a browser")
	}
	e := newEnv(t, server.Limits{})
	e.seed()
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/ui/login">
<input name="token" value="%s"><input name="next" value="/ui/"></form>
<script>document.getElementById("f").submit()</script>`, e.srv.URL, globexToken)
	}))
	t.Cleanup(attacker.Close)
	// Another site: localhost is not 127.0.0.1.
	evil := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)

	bctx := headless(t, browser)
	if err := chromedp.Do(bctx, chromedp.Navigate(evil)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	for { // the form posts itself and the browser lands on the audit browser
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		if strings.HasPrefix(loc, e.srv.URL) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the other site's form never reached the audit browser (at %s)", loc)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/ui/")); err != nil {
		t.Fatal(err)
	}
	signedIn, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("events") !== null || document.getElementById("token") === null`))
	if err != nil {
		t.Fatal(err)
	}
	if signedIn {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("another site's form signed the browser in:\n%v", html)
	}
}
