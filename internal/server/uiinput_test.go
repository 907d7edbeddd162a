package server_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUIFiltersRefuseValuesTheDatabaseCannotTake: a filter of the audit
// browser is the caller's input, not an outage. A value PostgreSQL refuses
// (a NUL, bytes that are not UTF-8, a type pattern ending in the LIKE
// escape character) is a 400 that says which filter, not a 503 that
// claims the audit log cannot be read: that would tell an operator the
// database is failing, count as a server error in the metrics, and log a
// warning per request, all at the will of any signed-in tenant.
func TestUIFiltersRefuseValuesTheDatabaseCannotTake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.seed()
	var logged bytes.Buffer
	s, err := server.New(server.Config{
		Store: e.store, Registry: schemasReg(), Pool: e.pool, Runtime: e.rt,
		Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app"), server.TokenFor(operatorToken, server.AllTenants, "ops")}),
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) (int, string) {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, c := range []struct{ path, token, filter string }{
		{"/ui/?stream=%00", acmeToken, "stream"},
		{"/ui/?stream=%ff", acmeToken, "stream"},
		{"/ui/?correlation=corr-%ff", acmeToken, "correlation"},
		{"/ui/?type=course%00", acmeToken, "type"},
		{"/ui/?type=%ff*", acmeToken, "type"},
		{"/ui/?tenant=ac%00me", operatorToken, "tenant"},
	} {
		code, body := get(c.path, c.token)
		if code != http.StatusBadRequest || strings.Contains(body, "cannot be read") || !strings.Contains(body, "The "+c.filter+" filter") {
			t.Errorf("%s: %d, want 400 naming the %s filter:\n%s", c.path, code, c.filter, body)
		}
	}
	// A pattern ending in a backslash is a pattern like any other: it
	// matches no type, and the page says so.
	if code, body := get(`/ui/?type=course*%5C`, acmeToken); code != http.StatusOK || !strings.Contains(body, "No events match.") {
		t.Errorf(`type=course*\: %d, want 200 and no events:\n%s`, code, body)
	}
	// Patterns still match.
	if code, body := get("/ui/?type=course.generation.*", acmeToken); code != http.StatusOK || strings.Count(body, `<tr class="event"`) != 4 {
		t.Errorf("type=course.generation.*: %d, want acme's 4 events:\n%s", code, body)
	}
	if strings.Contains(logged.String(), "level=WARN") || strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("a bad filter was logged as a failure:\n%s", logged.String())
	}
}
