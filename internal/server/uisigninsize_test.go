package server_test

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUISignInFormIsBounded: the sign-in form is read, whole, from anyone,
// before any token is checked, and outside the bound on the append bodies
// in flight (which only a token reaches): at the API's body limit (4 MiB),
// each request with no token held megabytes while it trickled in. A form
// holds a token and the address to go back to, which is bounded by the
// request line the server takes: a larger one is 413, read no further, and
// signs nothing in; the largest the sign-in page can send still signs in.
func TestUISignInFormIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	form := "Content-Type"
	big := url.Values{"token": {operatorToken}, "next": {"/ui/"}, "pad": {strings.Repeat("x", 1<<20)}}.Encode()
	r := e.do("POST", "/ui/login", "", big, form, "application/x-www-form-urlencoded")
	if r.code != http.StatusRequestEntityTooLarge || r.header.Get("Set-Cookie") != "" {
		t.Fatalf("a 1 MiB sign-in form: want 413 and no cookie, got %d, Set-Cookie %q: %.200s", r.code, r.header.Get("Set-Cookie"), r.body)
	}
	// A next as long as a request line may be, every byte of it escaped
	// in the form (three times its size).
	next := "/ui/?type=" + strings.Repeat(",", 60<<10)
	r = e.do("POST", "/ui/login", "", url.Values{"token": {operatorToken}, "next": {next}}.Encode(), form, "application/x-www-form-urlencoded")
	if r.code != http.StatusSeeOther || r.header.Get("Location") != next {
		t.Fatalf("a sign-in with a %d-byte next: want 303 to it, got %d: %.200s", len(next), r.code, r.body)
	}
}

// TestUISignInKeepsTheLongestNextTheServerTakes: the sign-in page's next
// is the address the browser asked for, whose request line Go's server
// reads up to --max-header-bytes plus its 4 KiB of buffer, not
// --max-header-bytes alone. A next of that length, every byte of it
// escaped by the form, was refused 413 where it must sign in and go back.
func TestUISignInKeepsTheLongestNextTheServerTakes(t *testing.T) {
	t.Parallel()
	const maxHeader = 4 << 10
	e := newEnv(t, server.Limits{MaxHeaderBytes: maxHeader})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.MaxHeaderBytes = maxHeader // as server.HTTPServer sets it
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Past --max-header-bytes, within what the server reads.
	asked := "/ui/?type=" + strings.Repeat(",", maxHeader+2<<10)
	res, err := client.Get(srv.URL + asked)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindSubmatch(page)
	if res.StatusCode != http.StatusUnauthorized || m == nil {
		t.Fatalf("GET a %d-byte address with no token: want 401 and the sign-in page, got %d: %.200s", len(asked), res.StatusCode, page)
	}
	next := html.UnescapeString(string(m[1]))
	if next != asked {
		t.Fatalf("the sign-in page's next is %.60q…, want the address asked for", next)
	}
	res, err = client.PostForm(srv.URL+"/ui/login", url.Values{"token": {operatorToken}, "next": {next}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != asked {
		t.Fatalf("sign in from a %d-byte address: want 303 back to it, got %d", len(asked), res.StatusCode)
	}
}
