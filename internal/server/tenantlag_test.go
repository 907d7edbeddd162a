package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
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
		if l := auditLag(t, e, c.token); l["lag_events"] != c.want || l["lag_events_at_least"] != nil {
			t.Errorf("GET /projections gives %s an audit lag of %v events (at least: %v), want exactly %v", c.token, l["lag_events"], l["lag_events_at_least"], c.want)
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
	// A rate: sampled, an event passed, sampled again half a second later
	// (the rate is over the time between two samples, at least 0.5 s).
	h.must(201, "POST", "/streams/acme-rate/events", acmeToken, requestedEvent(""))
	if _, err := h.rt.CatchUp(context.Background(), "reactor", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if got := reactor(operatorToken)["events_per_second"]; got == 0.0 {
		t.Fatalf("the operator is given no rate of the reactor, which passed an event in the last second: the tenants' 0 below would prove nothing")
	}
	for _, token := range []string{acmeToken, globexToken} {
		if l := reactor(token); l["errors"] != 0.0 || l["events_per_second"] != 0.0 {
			t.Errorf("%s is given the reactor's errors %v and rate %v over every tenant's events; want 0, 0", token, l["errors"], l["events_per_second"])
		}
	}
}

// readCountingStore counts ReadAll's pages and the positions of the log
// they looked at (from From to the page's Next), matched or not.
type readCountingStore struct {
	eventstore.Store
	mu     sync.Mutex
	pages  int
	looked uint64
}

func (c *readCountingStore) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	page, err := c.Store.ReadAll(ctx, opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pages++
	if err == nil && page.Next.Commit > opts.From.Commit {
		c.looked += page.Next.Commit - opts.From.Commit
	}
	return page, err
}

func (c *readCountingStore) counts() (pages int, looked uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pages, c.looked
}

// TestTenantLagFarBehindIsBoundedAndSaysAtLeast: when a projection is far
// behind (a rebuild, an outage), a tenant's lag looks at a bounded window
// of the log after the projection's position, not at the whole backlog on
// every request (the log has no index on the tenant: a read filtered by
// tenant scans every event up to its last match), and says that its count
// is a lower bound.
func TestTenantLagFarBehindIsBoundedAndSaysAtLeast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	ctx := context.Background()
	event := func(tenant string) eventstore.Event {
		return eventstore.Event{Type: "course.generation.requested", Source: "test",
			Payload: json.RawMessage(fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1}`, uuid.New())),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: tenant}}
	}
	// One of acme's events within the window, one beyond it, and a
	// backlog of globex's events between them.
	if _, err := e.store.Append(ctx, "acme-near", eventstore.Any, event("acme")); err != nil {
		t.Fatal(err)
	}
	backlog := server.TenantLagWindow + 2000
	for n := 0; n < backlog; {
		var batch []eventstore.Event
		for ; n < backlog && len(batch) < 1000; n++ {
			batch = append(batch, event("globex"))
		}
		if _, err := e.store.Append(ctx, "globex-backlog", eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.Append(ctx, "acme-far", eventstore.Any, event("acme")); err != nil {
		t.Fatal(err)
	}

	counting := &readCountingStore{Store: e.store}
	s, err := server.New(server.Config{Store: counting, Registry: schemasReg(), Pool: e.pool, Runtime: e.rt,
		Auth: server.NewAuthenticator(server.Tokens{
			server.TokenFor(acmeToken, "acme", "acme-app"),
			server.TokenFor(operatorToken, server.AllTenants, "ops"),
		})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	counted := &env{t: t, srv: srv}

	l := auditLag(t, counted, acmeToken)
	if l["lag_events"] != 1.0 || l["lag_events_at_least"] != true {
		t.Errorf("acme, with one event in the window and one beyond, is given the audit lag %v events (at least: %v); want at least 1", l["lag_events"], l["lag_events_at_least"])
	}
	pages, looked := counting.counts()
	if pages > server.TenantLagPages || looked > uint64(server.TenantLagWindow)+1 {
		t.Errorf("acme's lag read %d pages over %d positions of the log; want at most %d pages over %d positions (the backlog is %d events)",
			pages, looked, server.TenantLagPages, server.TenantLagWindow+1, backlog+2)
	}

	// The audit browser says so too, on the events page and the
	// projections page.
	if p := counted.must(200, "GET", "/ui/", acmeToken, "").body; !strings.Contains(p, "far behind the log (at least 1 of your events)") {
		t.Errorf("the events page does not say acme's lag is a lower bound:\n%s", p)
	}
	if p := counted.must(200, "GET", "/ui/projections", acmeToken, "").body; !strings.Contains(p, "&ge; 1</td>") {
		t.Errorf("the projections page does not say acme's lag is a lower bound:\n%s", p)
	}

	l = auditLag(t, counted, operatorToken)
	if got, want := l["lag_events"], float64(backlog+2); got != want || l["lag_events_at_least"] != nil {
		t.Errorf("the operator is given the audit lag %v events (at least: %v); want exactly %v", got, l["lag_events_at_least"], want)
	}
}
