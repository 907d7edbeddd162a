package server_test

import (
	"net/http"
	"net/url"
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
