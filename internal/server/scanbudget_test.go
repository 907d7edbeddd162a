package server_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/server"
)

// eventsPage is one answer of GET /events.
type eventsPage struct {
	ids  []string
	pos  []float64
	next any
	end  bool
}

func (e *env) eventsPage(token, query string) eventsPage {
	e.t.Helper()
	m := e.must(200, "GET", "/events?"+query, token, "").json(e.t)
	var p eventsPage
	for _, ev := range m["events"].([]any) {
		ev := ev.(map[string]any)
		p.ids = append(p.ids, ev["id"].(string))
		p.pos = append(p.pos, ev["position"].(float64))
	}
	p.next, p.end = m["next"], m["end"] == true
	return p
}

// followEvents reads GET /events?query from the start of the log, following
// next until end, and returns the ids it got in order and the pages it
// took. It fails past maxPages.
func (e *env) followEvents(token, query string, maxPages int) (ids []string, pages []eventsPage) {
	e.t.Helper()
	from := ""
	for {
		if len(pages) == maxPages {
			e.t.Fatalf("GET /events?%s: no end after %d pages", query, maxPages)
		}
		q := query
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		p := e.eventsPage(token, q)
		pages = append(pages, p)
		ids = append(ids, p.ids...)
		if p.end {
			return ids, pages
		}
		from = fmt.Sprint(p.next)
	}
}

// TestFilteredReadEndsOnTheScanBudgetAndResumes: a filtered GET /events
// (a tenant's token filters by its tenant) looks at no more than
// MaxScanEvents events of the log. Over a stretch of other tenants' events
// the page ends early, not end, with next the first event it did not look
// at; following next gives every matching event exactly once, in order.
// Without the budget the first page scans the whole log to fill itself.
func TestFilteredReadEndsOnTheScanBudgetAndResumes(t *testing.T) {
	t.Parallel()
	const budget = 7
	e := newEnv(t, server.Limits{MaxScanEvents: budget})
	batch := func(n int) string {
		evs := make([]string, n)
		for i := range evs {
			evs[i] = requestedEvent("")
		}
		return `{"events":[` + strings.Join(evs, ",") + `]}`
	}
	// The log: 20 of globex's, 1 of acme's, 16 of globex's, 3 of acme's,
	// 9 of globex's, 1 of acme's, 2 of globex's.
	var want []string
	acme := func(n int) {
		r := e.must(201, "POST", "/streams/acme-s/events", acmeToken, batch(n)).json(t)
		for _, ev := range r["events"].([]any) {
			want = append(want, ev.(map[string]any)["id"].(string))
		}
	}
	globex := func(n int) { e.must(201, "POST", "/streams/globex-s/events", globexToken, batch(n)) }
	globex(20)
	acme(1)
	globex(16)
	acme(3)
	globex(9)
	acme(1)
	globex(2)
	log, err := e.store.ReadAll(context.Background(), eventstore.ReadAllOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var all eventsPage // every event's position, from the store
	for _, ev := range log.Events {
		all.pos = append(all.pos, float64(ev.Position.Commit))
	}
	if len(all.pos) != 52 || !log.End {
		t.Fatalf("the log holds %d events (end %v), want 52", len(all.pos), log.End)
	}

	// The first page looks at the first 7 events, all globex's: it is
	// empty, not end, and goes on from the 8th.
	first := e.eventsPage(acmeToken, "limit=100")
	if len(first.ids) != 0 || first.end || first.next != all.pos[budget] {
		t.Fatalf("acme's first page: %d events, end %v, next %v; want none, not end, next %v (the first event not looked at)",
			len(first.ids), first.end, first.next, all.pos[budget])
	}

	for _, tc := range []struct {
		name, token, query string
	}{
		{"tenant", acmeToken, "limit=2"},
		{"tenant, page of one", acmeToken, "limit=1"},
		{"tenant, large page", acmeToken, "limit=1000"},
		{"operator's tenant and type filters", operatorToken, "limit=3&tenant=acme&type=course.generation.requested"},
	} {
		got, pages := e.followEvents(tc.token, tc.query, 100)
		if !slices.Equal(got, want) {
			t.Errorf("%s: following next gave %d events %v, want acme's %d in order, each once: %v", tc.name, len(got), got, len(want), want)
		}
		// 52 events, at most 7 looked at per page.
		if len(pages) < (52+budget-1)/budget {
			t.Errorf("%s: %d pages; with at most %d events looked at per page it takes at least %d", tc.name, len(pages), budget, (52+budget-1)/budget)
		}
	}
	// A page may still end on its limit inside the budget.
	if p := e.eventsPage(acmeToken, fmt.Sprintf("limit=1&from=%v", all.pos[37])); len(p.ids) != 1 || p.end || p.next != all.pos[38] {
		t.Fatalf("a page of one from acme's event: %d events, end %v, next %v; want 1, not end, next %v", len(p.ids), p.end, p.next, all.pos[38])
	}
	// An unfiltered page (an operator's) looks at no more either.
	if p := e.eventsPage(operatorToken, "limit=1000"); len(p.ids) != budget || p.end || p.next != all.pos[budget] {
		t.Fatalf("the operator's unfiltered page: %d events, end %v, next %v; want %d, not end, next %v", len(p.ids), p.end, p.next, budget, all.pos[budget])
	}
}
