package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// hostile breaks out of an element (a script and an image with a handler)
// and out of a quoted attribute (autofocus with a handler). Rendered
// escaped, none of it ever shows in a page as markup: "<script" and
// `onfocus="` can only appear there unescaped.
const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)>" autofocus onfocus="alert(3)` + "'&amp;"

// hostileEnv is a server whose tenants wrote hostile values everywhere
// they can, and whose projections park and stop on them with error texts
// that quote the events.
type hostileEnv struct {
	*env
	event  string // acme's event with hostile values in every field
	stream string // its stream
	// What each tenant may alone see: in acme's parked event's error
	// text, in the error text that stopped a projection (an operator's
	// only), in globex's parked event's error text.
	acmeParked, acmeStopped, globexParked string
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	topic := func(e eventstore.Event) string {
		var p struct{ Topic string }
		_ = json.Unmarshal(e.Payload, &p)
		return p.Topic
	}
	reactor := projections.Reaction("reactor", "reactor", projections.Types(2, "course.generation.requested"),
		func(_ context.Context, e eventstore.Event) error {
			if t := topic(e); strings.HasPrefix(t, "PARK") {
				return fmt.Errorf("cannot handle %q: %s", t, hostile)
			}
			return nil
		})
	stopper := projections.Projection{
		Name: "stopper", Handles: projections.Types(2, "course.generation.requested"), StopOnError: true,
		Handler: projections.EachEvent(func(_ context.Context, _ pgx.Tx, e eventstore.Event) error {
			if t := topic(e); strings.HasPrefix(t, "STOP") {
				return fmt.Errorf("cannot handle %q", t)
			}
			return nil
		}),
	}
	h := &hostileEnv{
		env:          newEnvWith(t, envOptions{extra: []projections.Projection{reactor, stopper}, retry: projections.RetryPolicy{MaxAttempts: 1}}),
		stream:       "acme-" + hostile,
		acmeParked:   "ACME-PARKED-" + uuid.NewString(),
		acmeStopped:  "ACME-STOPPED-" + uuid.NewString(),
		globexParked: "GLOBEX-PARKED-" + uuid.NewString(),
	}
	ev := func(topic, causation string) string {
		b, err := json.Marshal(map[string]any{
			"type": "course.generation.requested", "source": hostile, "target": hostile,
			"payload": map[string]any{"course_id": uuid.NewString(), "topic": topic, "attempt": 1, "language": "en", "requested_by": hostile},
			"meta":    map[string]any{"correlation_id": hostile, "causation_id": causation, hostile: hostile},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	path := "/streams/" + url.PathEscape(h.stream) + "/events"
	r := h.must(201, "POST", path, acmeToken, ev("PARK "+h.acmeParked+" "+hostile, hostile))
	h.event = r.json(t)["events"].([]any)[0].(map[string]any)["id"].(string)
	h.must(201, "POST", path, acmeToken, ev("STOP "+h.acmeStopped, h.event))
	h.must(201, "POST", "/streams/globex-1/events", globexToken, ev("PARK "+h.globexParked, ""))
	ctx := context.Background()
	for _, name := range []string{audit.Name, "reactor"} {
		if _, err := h.rt.CatchUp(ctx, name, 0); err != nil {
			t.Fatalf("catch up %s: %v", name, err)
		}
	}
	if _, err := h.rt.CatchUp(ctx, "stopper", 0); err == nil {
		t.Fatal("the stopper did not stop")
	}
	return h
}

// checkInert fails the test if a page holds hostile markup unescaped, or
// a link that leaves the audit browser.
func checkInert(t *testing.T, what, page string) {
	t.Helper()
	for _, bad := range []string{"<script", "<img", `onfocus="`, "javascript:"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("%s holds %q unescaped:\n%s", what, bad, page)
		}
	}
	for _, m := range regexp.MustCompile(`(?:href|action)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if u := html.UnescapeString(m[1]); !strings.HasPrefix(u, "/ui/") {
			t.Errorf("%s links to %q", what, u)
		}
	}
}

// TestUIRendersHostileValuesEscaped: every value a tenant or a handler
// wrote (stream, source, target, correlation and causation ids, payload,
// meta keys and values, dead-letter and stop error texts), in every page
// and in the filter form and the sign-in form that echo the address,
// shows as text: present, escaped, inert; and the links built from them
// lead where they say.
func TestUIRendersHostileValuesEscaped(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t)
	esc := html.EscapeString(hostile)
	page := func(path, token string) string {
		t.Helper()
		body := h.must(200, "GET", path, token, "").body
		checkInert(t, path, body)
		return body
	}

	ev := page("/ui/events/"+h.event, acmeToken)
	// The envelope: stream, source → target, correlation, causation.
	if n := strings.Count(ev, esc); n < 5 {
		t.Errorf("the event page shows the hostile value %d times in the envelope, want at least 5:\n%s", n, ev)
	}
	// The payload and meta as indented JSON (as PostgreSQL writes it:
	// quotes escaped, nothing else).
	if n := strings.Count(ev, html.EscapeString(strings.ReplaceAll(hostile, `"`, `\"`))); n != 6 {
		t.Errorf("the event page shows the hostile value %d times in payload and meta, want 6 (topic, requested_by, correlation_id, causation_id, a meta key and its value):\n%s", n, ev)
	}
	// The stream link, followed, lists the event's stream.
	m := regexp.MustCompile(`<tr><th>stream</th><td><a href="([^"]*)"`).FindStringSubmatch(ev)
	if m == nil {
		t.Fatalf("no stream link:\n%s", ev)
	}
	list := page(html.UnescapeString(m[1]), acmeToken)
	if n := strings.Count(list, `<tr class="event"`); n != 2 || !strings.Contains(list, "/ui/events/"+h.event) || !strings.Contains(list, `value="`+html.EscapeString(h.stream)) {
		t.Errorf("the stream link lists %d events, want the 2 of %q with the filter shown:\n%s", n, h.stream, list)
	}
	// The correlation link too.
	m = regexp.MustCompile(`<a id="follow" href="([^"]*)"`).FindStringSubmatch(ev)
	if m == nil {
		t.Fatalf("no correlation link:\n%s", ev)
	}
	if list := page(html.UnescapeString(m[1]), acmeToken); strings.Count(list, `<tr class="event"`) != 2 {
		t.Errorf("following the correlation id lists the wrong events:\n%s", list)
	}

	// The dead letters and the stopped projection's error, as the
	// operator sees them.
	pp := page("/ui/projections", operatorToken)
	for _, want := range []string{h.acmeParked, h.globexParked, h.acmeStopped, esc, "stopped: "} {
		if !strings.Contains(pp, want) {
			t.Errorf("the operator's projections page lacks %q:\n%s", want, pp)
		}
	}

	// The sign-in page keeps the address it was asked for.
	login := h.must(401, "GET", "/ui/?stream="+url.QueryEscape(hostile), "", "").body
	checkInert(t, "the sign-in page", login)
	if !strings.Contains(login, `name="next" value="/ui/?stream=`) {
		t.Errorf("the sign-in page lost the address:\n%s", login)
	}
}

// TestUIProjectionsPageShowsEachTenantItsOwnDeadLetters: the dead letters'
// error texts quote the events, so a tenant sees its own parked events
// only, and no projection's stop error (which may quote any tenant's
// event), on the page and in GET /projections.
func TestUIProjectionsPageShowsEachTenantItsOwnDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t)
	for _, c := range []struct {
		token        string
		sees, hidden []string
	}{
		{acmeToken, []string{h.acmeParked}, []string{h.globexParked, h.acmeStopped}},
		{globexToken, []string{h.globexParked}, []string{h.acmeParked, h.acmeStopped, "acme-"}},
	} {
		pp := h.must(200, "GET", "/ui/projections", c.token, "").body
		api := h.must(200, "GET", "/projections", c.token, "").body
		for _, s := range c.sees {
			if !strings.Contains(pp, s) {
				t.Errorf("the page lacks the tenant's own %q:\n%s", s, pp)
			}
		}
		for _, s := range c.hidden {
			if strings.Contains(pp, s) || strings.Contains(api, s) {
				t.Errorf("a tenant sees %q:\n%s\n%s", s, pp, api)
			}
		}
		if !strings.Contains(pp, "stopped: ") {
			t.Errorf("the tenant is not told the projection stopped:\n%s", pp)
		}
	}
}

// TestUIProjectionsPageCountsEachTenantItsOwnDeadLetters: the page hides
// another tenant's parked events, so its count of them too. Counting
// every tenant's in the Parked column would tell globex that acme has
// an event parked (and how many, and when more come), which the list
// below it keeps from it. The operator sees the whole count.
func TestUIProjectionsPageCountsEachTenantItsOwnDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t)
	parked := func(token string) string {
		t.Helper()
		pp := h.must(200, "GET", "/ui/projections", token, "").body
		// Projection, generation, position, head, lag, lag (s),
		// events/s, parked.
		m := regexp.MustCompile(`<td>reactor</td>(?:\s*<td class="[^"]*">[^<]*</td>){6}\s*<td class="num">(\d+)</td>`).FindStringSubmatch(pp)
		if m == nil {
			t.Fatalf("no reactor row:\n%s", pp)
		}
		return m[1]
	}
	for _, c := range []struct{ token, want string }{{acmeToken, "1"}, {globexToken, "1"}, {operatorToken, "2"}} {
		if got := parked(c.token); got != c.want {
			t.Errorf("the reactor's parked count shown to %s is %s, want %s", c.token, got, c.want)
		}
	}
}

// TestAPIProjectionsCountEachTenantItsOwnDeadLetters: GET /projections,
// like the audit browser's page, gives a tenant the count of its own
// parked events, not every tenant's, and no error text; the operator
// gets the whole count.
func TestAPIProjectionsCountEachTenantItsOwnDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t)
	for _, c := range []struct {
		token string
		want  float64
	}{{acmeToken, 1}, {globexToken, 1}, {operatorToken, 2}} {
		body := h.must(200, "GET", "/projections", c.token, "").json(t)
		found := false
		for _, x := range body["projections"].([]any) {
			lag := x.(map[string]any)
			if lag["projection"] != "reactor" {
				continue
			}
			found = true
			if lag["parked"] != c.want {
				t.Errorf("the reactor's parked count given to %s is %v, want %v", c.token, lag["parked"], c.want)
			}
			if c.token != operatorToken && lag["last_error"] != nil && lag["last_error"] != "" {
				t.Errorf("a tenant is given the reactor's last error: %v", lag["last_error"])
			}
		}
		if !found {
			t.Fatalf("no reactor in GET /projections for %s: %v", c.token, body)
		}
	}
}
