package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/server"
)

func TestEveryAPIEndpointNeedsAToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, ep := range [][2]string{
		{"POST", "/streams/s/events"}, {"GET", "/streams/s"}, {"GET", "/events"},
		{"GET", "/projections"}, {"GET", "/schemas"}, {"GET", "/schemas/course.generation.requested/2"},
	} {
		for _, token := range []string{"", "es_wrong"} {
			r := e.do(ep[0], ep[1], token, requestedEvent(""))
			if r.code != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with token %q: %d %s", ep[0], ep[1], token, r.code, r.body)
			}
		}
	}
	if e.logSize() != 0 {
		t.Fatal("an unauthenticated append wrote")
	}
	e.must(200, "GET", "/healthz", "", "")
	e.must(200, "GET", "/readyz", "", "")
	e.ready = fmt.Errorf("migrations of eventstore are not applied")
	if r := e.must(503, "GET", "/readyz", "", ""); !strings.Contains(r.body, "not applied") {
		t.Fatalf("readyz: %s", r.body)
	}
}

func TestAppendAndRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	r := e.must(201, "POST", "/streams/orders-1/events", acmeToken, requestedEvent(""))
	got := r.json(t)
	if got["stream"] != "orders-1" || got["version"] != float64(1) || got["position"] != float64(1) {
		t.Fatalf("append: %s", r.body)
	}
	if r.header.Get("Location") != "/streams/orders-1" {
		t.Fatalf("Location = %q", r.header.Get("Location"))
	}
	// A batch, with the expected version in the body, then in a header.
	batch := fmt.Sprintf(`{"expected_version": 1, "events": [%s, %s]}`, requestedEvent(""), requestedEvent("acme"))
	r = e.must(201, "POST", "/streams/orders-1/events", acmeToken, batch)
	if got := r.json(t); got["version"] != float64(3) || len(got["events"].([]any)) != 2 {
		t.Fatalf("batch: %s", r.body)
	}
	e.must(201, "POST", "/streams/orders-1/events", acmeToken, requestedEvent(""), "Expected-Version", "3")
	// Retrying with the same id is idempotent.
	id := uuid.NewString()
	one := fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}}`, id, uuid.New())
	first := e.must(201, "POST", "/streams/orders-2/events", acmeToken, one).json(t)
	again := e.must(201, "POST", "/streams/orders-2/events", acmeToken, one).json(t)
	if first["position"] != again["position"] {
		t.Fatalf("a retried append moved: %v then %v", first, again)
	}

	r = e.must(200, "GET", "/streams/orders-1?from=2&limit=2", acmeToken, "")
	stream := r.json(t)
	evs := stream["events"].([]any)
	if len(evs) != 2 || evs[0].(map[string]any)["version"] != float64(2) || stream["next"] != float64(4) {
		t.Fatalf("read stream: %s", r.body)
	}
	meta := evs[0].(map[string]any)["meta"].(map[string]any)
	if meta["tenant_id"] != "acme" || meta["schema_version"] != float64(2) || meta["producer"] != "http/acme-app" {
		t.Fatalf("defaults filled from the token and the registry: %v", meta)
	}
	r = e.must(200, "GET", "/events?from=2&limit=10", acmeToken, "")
	if all := r.json(t); len(all["events"].([]any)) != 4 || all["end"] != true {
		t.Fatalf("read all: %s", r.body)
	}
	r = e.must(200, "GET", "/events?type=course.generation.failed", acmeToken, "")
	if n := len(r.json(t)["events"].([]any)); n != 0 {
		t.Fatalf("type filter: %d events", n)
	}
	e.must(404, "GET", "/streams/nope", acmeToken, "")
	e.must(400, "GET", "/events?from=abc", acmeToken, "")
	// A type filter no event can have is a refusal, not an empty page.
	if r := e.do("GET", "/events?type=Not%20a%20type", acmeToken, ""); r.code != 400 || !strings.Contains(r.body, `"rule":"type-name"`) {
		t.Fatalf("GET /events with a malformed type filter: %d %s, want 400 with rule type-name", r.code, r.body)
	}
	e.must(400, "GET", "/streams/orders-1?limit=-1", acmeToken, "")
	e.must(404, "GET", "/nope", acmeToken, "")
}

func TestAppendRefusalsWriteNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{MaxBodyBytes: 64 << 10, MaxBatchEvents: 3})
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	badPayload := fmt.Sprintf(`{"events":[%s, {"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":0,"language":"en"}}]}`, requestedEvent(""), uuid.New())
	deep := strings.Repeat(`{"a":`, 10_000) + "1" + strings.Repeat("}", 10_000)
	cases := []struct {
		name, body string
		headers    []string
		code       int
		want       []string
	}{
		{"payload breaks its schema", badPayload, nil, 400, []string{`"index":1`, `"pointer":"/payload/attempt"`, `"rule":"minimum"`}},
		{"unknown type", `{"type":"no.such","payload":{}}`, nil, 400, []string{`"kind":"validation"`}},
		{"unknown schema version", `{"type":"course.generation.requested","payload":{},"meta":{"schema_version":9}}`, nil, 400, []string{`"rule":`}},
		{"malformed JSON", `{"type":`, nil, 400, []string{`"kind":"validation"`}},
		{"not an object", `[1]`, nil, 400, []string{`"rule":"type"`}},
		{"unknown key", `{"type":"course.generation.requested","payload":{},"surprise":1}`, nil, 400, []string{`"rule":"envelope"`}},
		{"duplicate key", `{"type":"a","type":"b","payload":{}}`, nil, 400, []string{`duplicate`}},
		{"payload not an object", `{"type":"course.generation.requested","payload":[1]}`, nil, 400, []string{`"kind":"validation"`}},
		{"10,000 levels of nesting", `{"type":"course.generation.requested","payload":` + deep + `}`, nil, 400, []string{`"kind":"validation"`}},
		{"too many events", fmt.Sprintf(`{"events":[%s,%s,%s,%s]}`, requestedEvent(""), requestedEvent(""), requestedEvent(""), requestedEvent("")), nil, 400, []string{`"rule":"batch-size"`}},
		{"no events", `{"events":[]}`, nil, 400, []string{`"rule":"batch-size"`}},
		{"body too large", `{"type":"x","payload":{"a":"` + strings.Repeat("x", 70<<10) + `"}}`, nil, 413, []string{`"kind":"too_large"`}},
		{"bad expected version", requestedEvent(""), []string{"Expected-Version", "-7"}, 400, []string{`"rule":"expected-version"`}},
		{"header and body disagree", fmt.Sprintf(`{"expected_version":1,"events":[%s]}`, requestedEvent("")), []string{"Expected-Version", "2"}, 400, []string{"disagree"}},
		{"wrong expected version", requestedEvent(""), []string{"Expected-Version", "no-stream"}, 409, []string{`"kind":"concurrency"`, `"actual_version":1`}},
		{"another id's content", "", nil, 0, nil},
	}
	for _, tc := range cases {
		if tc.code == 0 {
			continue
		}
		r := e.do("POST", "/streams/s/events", acmeToken, tc.body, tc.headers...)
		if r.code != tc.code {
			t.Errorf("%s: want %d, got %d: %s", tc.name, tc.code, r.code, r.body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s: body lacks %s: %s", tc.name, w, r.body)
			}
		}
	}
	if n := e.logSize(); n != 1 {
		t.Fatalf("refused appends wrote: the log has %d events, want 1", n)
	}
	// The same id with other content is a 409 duplicate.
	id := uuid.NewString()
	ev := func(topic string) string {
		return fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":{"course_id":"%s","topic":%q,"attempt":1,"language":"en"}}`, id, "0f0f0f0f-0000-4000-8000-000000000000", topic)
	}
	e.must(201, "POST", "/streams/d/events", acmeToken, ev("one"))
	if r := e.must(409, "POST", "/streams/d/events", acmeToken, ev("two")); !strings.Contains(r.body, `"kind":"duplicate"`) {
		t.Fatalf("duplicate id: %s", r.body)
	}
	e.must(400, "POST", "/streams/"+strings.Repeat("x", 300)+"/events", acmeToken, requestedEvent(""))
}

func TestTenantsSeeOnlyTheirOwnEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/acme-course/events", acmeToken, requestedEvent(""))
	e.must(201, "POST", "/streams/globex-course/events", globexToken, requestedEvent(""))

	// Another tenant's stream does not exist for reading; an append to it
	// is refused as a taken id, without naming its owner
	// (TestAppendToAnotherTenantsStreamRevealsNothingOfIt).
	e.must(404, "GET", "/streams/acme-course", globexToken, "")
	if r := e.must(409, "POST", "/streams/acme-course/events", globexToken, requestedEvent("")); strings.Contains(r.body, "acme\"") || !strings.Contains(r.body, `"kind":"stream_taken"`) {
		t.Fatalf("the refusal reveals the owner: %s", r.body)
	}
	// An event of another tenant cannot be written, anywhere.
	e.must(403, "POST", "/streams/globex-2/events", globexToken, requestedEvent("acme"))
	r := e.must(200, "GET", "/events", globexToken, "")
	for _, ev := range r.json(t)["events"].([]any) {
		if ev.(map[string]any)["meta"].(map[string]any)["tenant_id"] != "globex" {
			t.Fatalf("globex sees %v", ev)
		}
	}
	if n := len(r.json(t)["events"].([]any)); n != 1 {
		t.Fatalf("globex sees %d events, want 1", n)
	}
	// The operator sees both, and can filter by tenant.
	if e.logSize() != 2 {
		t.Fatalf("operator sees %d events", e.logSize())
	}
	if r := e.must(200, "GET", "/events?tenant=acme", operatorToken, ""); len(r.json(t)["events"].([]any)) != 1 {
		t.Fatalf("operator tenant filter: %s", r.body)
	}
	e.must(200, "GET", "/streams/acme-course", operatorToken, "")
	// An operator's event needs an explicit tenant.
	e.must(400, "POST", "/streams/ops/events", operatorToken, requestedEvent(""))
	e.must(201, "POST", "/streams/ops/events", operatorToken, requestedEvent("initech"))

	// The audit browser: another tenant's event is not found; lists hold
	// only the token's tenant's rows, whatever the filter says.
	e.project()
	acmeEvent := e.must(200, "GET", "/streams/acme-course", acmeToken, "").json(t)["events"].([]any)[0].(map[string]any)["id"].(string)
	e.must(404, "GET", "/ui/events/"+acmeEvent, globexToken, "")
	e.must(200, "GET", "/ui/events/"+acmeEvent, acmeToken, "")
	r = e.must(200, "GET", "/ui/?tenant=acme", globexToken, "")
	if strings.Contains(r.body, "acme-course") || !strings.Contains(r.body, "globex-course") {
		t.Fatalf("globex's audit page shows acme rows or misses its own")
	}
}

func TestSchemasAndProjections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	r := e.must(200, "GET", "/schemas/course.generation.requested/2", acmeToken, "")
	if r.header.Get("Content-Type") != "application/schema+json" || !strings.Contains(r.body, `"language"`) {
		t.Fatalf("schema: %s", r.body)
	}
	if r := e.must(200, "GET", "/schemas/course.generation.requested/latest", acmeToken, ""); !strings.Contains(r.body, `"language"`) {
		t.Fatalf("latest: %s", r.body)
	}
	e.must(200, "GET", "/schemas/course.generation.requested/v1", acmeToken, "")
	e.must(404, "GET", "/schemas/course.generation.requested/9", acmeToken, "")
	e.must(404, "GET", "/schemas/nope/1", acmeToken, "")
	if r := e.must(200, "GET", "/schemas", acmeToken, ""); !strings.Contains(r.body, `"mission.created"`) {
		t.Fatalf("schemas: %s", r.body)
	}
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	r = e.must(200, "GET", "/projections", acmeToken, "")
	lag := r.json(t)["projections"].([]any)[0].(map[string]any)
	if lag["projection"] != "audit" || lag["lag_events"] != float64(1) {
		t.Fatalf("projections: %s", r.body)
	}
}

func TestMetricsCoverAppendsRefusalsAndConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":"course.generation.requested","payload":{"course_id":"x","topic":"Go","attempt":1,"language":"en"}}`)
	e.must(409, "POST", "/streams/s/events", acmeToken, requestedEvent(""), "Expected-Version", "no-stream")
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":"made.up.type","payload":{}}`)
	r := e.must(200, "GET", "/metrics", "", "")
	for _, want := range []string{
		`eventstream_appends_total{outcome="ok"} 1`,
		`eventstream_appends_total{outcome="invalid"} 2`,
		`eventstream_appends_total{outcome="conflict"} 1`,
		`eventstream_events_total{outcome="ok",type="course.generation.requested"} 1`,
		`eventstream_validation_refusals_total{rule="format",type="course.generation.requested"} 1`,
		`eventstream_validation_refusals_total{rule="unknown-type",type="unknown"} 1`,
		`eventstream_concurrency_conflicts_total 1`,
		`eventstream_append_duration_seconds_count 4`,
		`eventstream_http_requests_total{code="201",method="POST",route="POST /streams/{stream}/events"} 1`,
		`eventstream_projection_events_total{projection="audit"}`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(r.body, "acme") || strings.Contains(r.body, acmeToken) {
		t.Fatal("metrics carry a tenant or a token")
	}
}

// TestHeaderLimit runs the real http.Server with its limits.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	s, err := server.New(server.Config{Store: e.store, Registry: schemasReg(), Auth: server.NewAuthenticator(server.Tokens{}), Limits: server.Limits{MaxHeaderBytes: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer("127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", res.StatusCode)
	}
	if hs.ReadHeaderTimeout != 10*time.Second || hs.ReadTimeout != 30*time.Second || hs.IdleTimeout != 120*time.Second {
		t.Fatalf("default timeouts: %+v", hs)
	}
}

// TestTwoTenantsRacingForANewStream: whichever tenant creates a stream
// owns it; the other's concurrent appends get 409 stream_taken (never a
// conflict naming the owner's version) and never land in it.
func TestTwoTenantsRacingForANewStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	const streams, writers = 8, 6
	var wg sync.WaitGroup
	for i := range streams {
		for w := range writers {
			token := acmeToken
			if w%2 == 1 {
				token = globexToken
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", fmt.Sprintf("/streams/race-%d/events", i), token, requestedEvent(""))
				if r.code != 201 && (r.code != 409 || !strings.Contains(r.body, `"kind":"stream_taken"`)) {
					t.Errorf("race-%d: %d %s", i, r.code, r.body)
				}
			}()
		}
	}
	wg.Wait()
	for i := range streams {
		r := e.must(200, "GET", fmt.Sprintf("/streams/race-%d", i), operatorToken, "")
		evs := r.json(t)["events"].([]any)
		owner := evs[0].(map[string]any)["meta"].(map[string]any)["tenant_id"]
		for _, ev := range evs {
			if got := ev.(map[string]any)["meta"].(map[string]any)["tenant_id"]; got != owner {
				t.Fatalf("race-%d holds events of %v and %v", i, owner, got)
			}
		}
		if len(evs) != writers/2 {
			t.Fatalf("race-%d holds %d events, want the owner's %d", i, len(evs), writers/2)
		}
	}
}

// TestAppendPastTheDeadlineIsRetriedWithItsIDs: an append that times out
// while the store holds it may still commit. The 503 names the ids the
// server gave the events, and a retry with those ids writes nothing twice.
func TestAppendPastTheDeadlineIsRetriedWithItsIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{RequestTimeout: time.Second})
	ctx := context.Background()

	// A successful append names the ids it gave.
	r := e.must(201, "POST", "/streams/fast/events", acmeToken, requestedEvent(""))
	var ok struct {
		Events []struct{ ID string } `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.body), &ok); err != nil || len(ok.Events) != 1 {
		t.Fatalf("append: %s", r.body)
	}
	if id, err := uuid.Parse(ok.Events[0].ID); err != nil || id.Version() != 7 {
		t.Fatalf("the server's id %q is not a UUIDv7", ok.Events[0].ID)
	}

	// Hold the append lock from another connection: the store's committer
	// takes the append and waits for the lock past the request deadline.
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrate.LockKey("append", e.store.Schema())); err != nil {
		t.Fatal(err)
	}
	bodies := []string{requestedEvent(""), requestedEvent("acme")}
	batch := `{"events":[` + strings.Join(bodies, ",") + `]}`
	r = e.must(503, "POST", "/streams/slow/events", acmeToken, batch)
	var timeout struct {
		Kind     string   `json:"kind"`
		EventIDs []string `json:"event_ids"`
	}
	if err := json.Unmarshal([]byte(r.body), &timeout); err != nil || timeout.Kind != "timeout" || len(timeout.EventIDs) != 2 {
		t.Fatalf("503 body: %s", r.body)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The committer writes the append once the lock is free, after the
	// client was told 503.
	stream := func() []any {
		r := e.do("GET", "/streams/slow", operatorToken, "")
		if r.code == 404 {
			return nil
		}
		if r.code != 200 {
			t.Fatalf("read: %d %s", r.code, r.body)
		}
		return r.json(t)["events"].([]any)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(stream()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the timed-out append was never written")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The retry, with the ids of the 503, is acknowledged and writes
	// nothing.
	for i, id := range timeout.EventIDs {
		bodies[i] = `{"id":"` + id + `",` + strings.TrimPrefix(bodies[i], "{")
	}
	r = e.must(201, "POST", "/streams/slow/events", acmeToken, `{"events":[`+strings.Join(bodies, ",")+`]}`)
	if err := json.Unmarshal([]byte(r.body), &ok); err != nil || len(ok.Events) != 2 || ok.Events[0].ID != timeout.EventIDs[0] || ok.Events[1].ID != timeout.EventIDs[1] {
		t.Fatalf("retry: %s", r.body)
	}
	evs := stream()
	if len(evs) != 2 {
		t.Fatalf("the stream holds %d events after the retry, want 2", len(evs))
	}
	for i, ev := range evs {
		if got := ev.(map[string]any)["id"]; got != timeout.EventIDs[i] {
			t.Fatalf("event %d has id %v, want %s", i+1, got, timeout.EventIDs[i])
		}
	}
}

// TestReadAllRefusesAPositionBeyondTheLog: a from position no log can reach
// (above 2^63-1, PostgreSQL's bigint) is a 400, never the log from its start.
func TestReadAllRefusesAPositionBeyondTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	for _, from := range []string{"18446744073709551615", "9223372036854775808", "1/18446744073709551615"} {
		if r := e.do("GET", "/events?from="+from, acmeToken, ""); r.code != 400 || !strings.Contains(r.body, `"rule":"query"`) {
			t.Errorf("from=%s: %d %s, want 400", from, r.code, r.body)
		}
	}
	if r := e.must(200, "GET", "/events?from=9223372036854775807", acmeToken, ""); len(r.json(t)["events"].([]any)) != 0 {
		t.Fatalf("from the largest position: %s", r.body)
	}
}
