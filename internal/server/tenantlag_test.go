package server_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// auditLag returns the audit projection's entry of GET /projections as
// token sees it.
func auditLag(t *testing.T, e *env, token string) map[string]any {
	t.Helper()
	for _, x := range e.must(200, "GET", "/projections", token, "").json(t)["projections"].([]any) {
		if l := x.(map[string]any); l["projection"] == "audit" {
			return l
		}
	}
	t.Fatalf("no audit projection in GET /projections for %s", token)
	return nil
}

// TestTenantSeesTheLagOfItsOwnEventsOnly: the lag a tenant is shown (GET
// /projections, the audit browser's projections page and its notice that
// the newest events are not listed yet) counts its own events only. A lag
// over every tenant's events would tell it how much the others write, and
// when. The operator sees the whole lag.
func TestTenantSeesTheLagOfItsOwnEventsOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for range 3 {
		e.must(201, "POST", "/streams/globex-lag/events", globexToken, requestedEvent("globex"))
	}
	e.must(201, "POST", "/streams/acme-lag/events", acmeToken, requestedEvent("acme"))
	for _, c := range []struct {
		token string
		want  float64
	}{{acmeToken, 1}, {globexToken, 3}, {operatorToken, 4}} {
		if got := auditLag(t, e, c.token)["lag_events"]; got != c.want {
			t.Errorf("GET /projections gives %s an audit lag of %v events, want %v", c.token, got, c.want)
		}
	}
	if p := e.must(200, "GET", "/ui/", acmeToken, "").body; !strings.Contains(p, "is 1 events behind") {
		t.Errorf("acme's audit log does not say 1 of its events is not listed yet:\n%s", p)
	}

	e.project()
	for range 2 {
		e.must(201, "POST", "/streams/globex-lag/events", globexToken, requestedEvent("globex"))
	}
	if l := auditLag(t, e, acmeToken); l["lag_events"] != 0.0 || l["lag_seconds"] != 0.0 {
		t.Errorf("acme, all of whose events are projected, is given the audit lag %v events, %v s; want 0, 0", l["lag_events"], l["lag_seconds"])
	}
	if got := auditLag(t, e, operatorToken)["lag_events"]; got != 2.0 {
		t.Errorf("the operator is given an audit lag of %v events, want 2", got)
	}
	if p := e.must(200, "GET", "/ui/", acmeToken, "").body; strings.Contains(p, `id="lag-notice"`) {
		t.Errorf("acme's audit log says the projection lags behind globex's events:\n%s", p)
	}
	for _, c := range []struct{ token, want string }{{acmeToken, "0"}, {operatorToken, "2"}} {
		pp := e.must(200, "GET", "/ui/projections", c.token, "").body
		// Projection, generation, position, head, lag (events).
		m := regexp.MustCompile(`<td>audit</td>(?:\s*<td class="[^"]*">[^<]*</td>){3}\s*<td class="num[^"]*">(\d+)</td>`).FindStringSubmatch(pp)
		if m == nil {
			t.Fatalf("no audit row:\n%s", pp)
		}
		if m[1] != c.want {
			t.Errorf("the projections page shows %s an audit lag of %s events, want %s", c.token, m[1], c.want)
		}
	}
}

// TestTenantIsNotGivenEveryTenantsErrorsAndRate: a projection's failed
// attempts and its rate count every tenant's events and cannot be cut
// down to one tenant's: a tenant is given 0 for both (it learns of its
// own events' failures from its parked events), the operator the figures.
func TestTenantIsNotGivenEveryTenantsErrorsAndRate(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t)
	reactor := func(token string) map[string]any {
		t.Helper()
		for _, x := range h.must(200, "GET", "/projections", token, "").json(t)["projections"].([]any) {
			if l := x.(map[string]any); l["projection"] == "reactor" {
				return l
			}
		}
		t.Fatalf("no reactor in GET /projections for %s", token)
		return nil
	}
	if got := reactor(operatorToken)["errors"]; got == 0.0 {
		t.Fatalf("the operator is given no errors of the reactor, which failed on two events")
	}
	for _, token := range []string{acmeToken, globexToken} {
		if l := reactor(token); l["errors"] != 0.0 || l["events_per_second"] != 0.0 {
			t.Errorf("%s is given the reactor's errors %v and rate %v over every tenant's events; want 0, 0", token, l["errors"], l["events_per_second"])
		}
	}
}
