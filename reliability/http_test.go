package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// The tokens of the HTTP tests: two tenants and an operator.
const (
	acmeSecret     = "es_reliability_acme_0123456789"
	globexSecret   = "es_reliability_globex_0123456789"
	operatorSecret = "es_reliability_operator_0123456789"
)

// httpEnv is the real server (internal/server) on a fresh schema of the
// shared PostgreSQL, with the audit projection for the UI.
type httpEnv struct {
	t      *testing.T
	url    string
	srv    *server.Server
	pool   *pgxpool.Pool
	store  eventstore.Store
	rt     *projections.Runtime
	gather *prometheus.Registry
}

// slowStore makes appends to the stream "slow" wait until their context
// ends, so the server's request deadline can be seen at work.
type slowStore struct{ eventstore.Store }

func (s slowStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if stream == "slow" {
		<-ctx.Done()
		return eventstore.AppendResult{}, ctx.Err()
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

func newHTTPEnv(t *testing.T, limits server.Limits) *httpEnv {
	t.Helper()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	pool := openPool(t, u, 8)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := projections.Uninstall(ctx, pool); err != nil {
			t.Errorf("uninstall projections: %v", err)
		}
	})
	reg := registry(t)
	pg := openStore(t, pool, reg, postgres.Options{})
	ms, err := server.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	e := &httpEnv{t: t, pool: pool, gather: prometheus.NewRegistry()}
	m, err := server.NewMetrics(e.gather, reg)
	if err != nil {
		t.Fatal(err)
	}
	e.store = m.InstrumentStore(slowStore{pg})
	e.rt, err = projections.New(pool, e.store, reg, projections.Config{Logger: quietLogger()}, audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tokens := server.Tokens{
		server.TokenFor(acmeSecret, "acme", "acme-app"),
		server.TokenFor(globexSecret, "globex", "globex-app"),
		server.TokenFor(operatorSecret, server.AllTenants, "ops"),
	}
	e.srv, err = server.New(server.Config{
		Store: e.store, Registry: reg, Pool: pool, Runtime: e.rt,
		Auth: server.NewAuthenticator(tokens), Gatherer: e.gather, Metrics: m,
		Limits: limits, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The real http.Server with its limits, not only the handler.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := e.srv.HTTPServer(ln.Addr().String())
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})
	e.url = "http://" + ln.Addr().String()
	return e
}

type httpResult struct {
	code int
	body string
}

func (r httpResult) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("not JSON (%d): %s", r.code, clip(r.body))
	}
	return m
}

func (e *httpEnv) do(method, path, token, body string) httpResult {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return httpResult{code: res.StatusCode, body: string(b)}
}

func (e *httpEnv) must(want int, method, path, token, body string) httpResult {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.code, want, clip(r.body))
	}
	return r
}

// logCount is the number of events in the log, read as the operator.
func (e *httpEnv) logCount() int {
	e.t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return int(h.Commit)
}

func probeBody(marker string, tenant string) string {
	meta := ""
	if tenant != "" {
		meta = fmt.Sprintf(`,"meta":{"tenant_id":%q,"correlation_id":%q}`, tenant, "corr-"+marker)
	}
	return fmt.Sprintf(`{"type":%q,"payload":{"writer":1,"seq":1,"i":0,"note":%q}%s}`, probeType, marker, meta)
}

// TestTenantIsolationOnEveryEndpoint seeds events of two tenants, then
// calls every endpoint of the API and the UI with the other tenant's
// token. The other tenant gets 404 for reads of streams (the same answer
// as for a stream that does not exist), 409 stream_taken for appends to
// them (stream ids are shared: docs/operations/tenants.md), lists without
// the first tenant's rows, 403 when it writes an event for the first
// tenant, and no response ever
// carries the first tenant's event ids, payloads or correlation ids. The
// owner, as a control, sees them all.
func TestTenantIsolationOnEveryEndpoint(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t, server.Limits{})
	ctx := context.Background()

	markers := []string{} // what only acme may ever see
	var acmeIDs []string
	for i := range 3 {
		m := fmt.Sprintf("ACME-PRIVATE-%d-%s", i, uuid.NewString())
		r := e.must(201, "POST", "/streams/acme-orders/events", acmeSecret, probeBody(m, "acme"))
		for _, ev := range r.json(t)["events"].([]any) {
			acmeIDs = append(acmeIDs, ev.(map[string]any)["id"].(string))
		}
		markers = append(markers, m, "corr-"+m)
	}
	// An operator writes acme's event into a stream of a neutral name.
	m := "ACME-OPS-" + uuid.NewString()
	r := e.must(201, "POST", "/streams/shared-name/events", operatorSecret, probeBody(m, "acme"))
	acmeIDs = append(acmeIDs, r.json(t)["events"].([]any)[0].(map[string]any)["id"].(string))
	markers = append(markers, m)
	markers = append(markers, acmeIDs...)
	for i := range 2 {
		e.must(201, "POST", "/streams/globex-orders/events", globexSecret, probeBody(fmt.Sprintf("GLOBEX-%d", i), ""))
	}
	if _, err := e.rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	before := e.logCount()

	type call struct {
		method, path, body string
		want               int
	}
	calls := []call{
		{"GET", "/streams/acme-orders", "", 404},
		{"GET", "/streams/acme-orders?from=2&limit=1", "", 404},
		{"GET", "/streams/shared-name", "", 404},
		{"POST", "/streams/acme-orders/events", probeBody("GLOBEX-INTRUDER", ""), 409},
		{"POST", "/streams/acme-orders/events", `{"expected_version":3,"events":[` + probeBody("GLOBEX-INTRUDER", "") + `]}`, 409},
		{"POST", "/streams/globex-new/events", probeBody("GLOBEX-FORGED", "acme"), 403},
		{"GET", "/events", "", 200},
		{"GET", "/events?tenant=acme", "", 200},
		{"GET", "/events?type=" + probeType + "&limit=1000", "", 200},
		{"GET", "/events?from=1&limit=1", "", 200},
		{"GET", "/projections", "", 200},
		{"GET", "/schemas", "", 200},
		{"GET", "/schemas/" + probeType + "/1", "", 200},
		{"GET", "/ui/", "", 200},
		{"GET", "/ui/?tenant=acme", "", 200},
		{"GET", "/ui/?stream=acme-orders", "", 200},
		{"GET", "/ui/?correlation=corr-" + markers[0], "", 200},
		{"GET", "/ui/projections", "", 200},
		{"GET", "/metrics", "", 200},
	}
	for _, id := range acmeIDs {
		calls = append(calls, call{"GET", "/ui/events/" + id, "", 404})
	}
	notFound := e.must(404, "GET", "/streams/no-such-stream", globexSecret, "")
	for _, c := range calls {
		r := e.do(c.method, c.path, globexSecret, c.body)
		if r.code != c.want {
			t.Errorf("globex %s %s: status %d, want %d: %s", c.method, c.path, r.code, c.want, clip(r.body))
		}
		for _, m := range markers {
			// A filter value globex typed comes back in the page's form:
			// that is its own input, not acme's data.
			if strings.Contains(c.path, m) {
				continue
			}
			if strings.Contains(r.body, m) {
				t.Errorf("globex %s %s: the response carries acme's %q", c.method, c.path, m)
			}
		}
		if strings.HasPrefix(c.path, "/streams/") && c.method == "GET" && r.body != notFound.body {
			t.Errorf("globex %s %s: the 404 differs from a missing stream's (%s vs %s): it reveals the stream exists", c.method, c.path, r.body, notFound.body)
		}
		if strings.HasPrefix(c.path, "/events") {
			for _, ev := range r.json(t)["events"].([]any) {
				if tn := ev.(map[string]any)["meta"].(map[string]any)["tenant_id"]; tn != "globex" {
					t.Errorf("globex %s: an event of tenant %v", c.path, tn)
				}
			}
		}
	}
	if after := e.logCount(); after != before {
		t.Errorf("the refused writes changed the log: %d events, was %d", after, before)
	}
	metrics := e.must(200, "GET", "/metrics", "", "")
	if strings.Contains(metrics.body, "acme") || strings.Contains(metrics.body, "globex") {
		t.Errorf("/metrics carries a tenant")
	}
	for _, secret := range []string{acmeSecret, globexSecret, operatorSecret} {
		if strings.Contains(metrics.body, secret) {
			t.Errorf("/metrics carries a token")
		}
	}

	// Controls: the owner and the operator see what globex did not.
	own := e.must(200, "GET", "/streams/acme-orders", acmeSecret, "")
	if n := len(own.json(t)["events"].([]any)); n != 3 {
		t.Errorf("acme reads %d events of its own stream, want 3", n)
	}
	for _, m := range markers[:2] {
		if !strings.Contains(own.body, m) {
			t.Errorf("acme's own read lacks %q: the marker check above would prove nothing", m)
		}
	}
	if ui := e.must(200, "GET", "/ui/events/"+acmeIDs[0], acmeSecret, ""); !strings.Contains(ui.body, markers[0]) {
		t.Errorf("acme's own event page lacks its payload")
	}
	all := e.must(200, "GET", "/events?limit=1000", operatorSecret, "")
	if n := len(all.json(t)["events"].([]any)); n != before {
		t.Errorf("the operator sees %d events, the log holds %d", n, before)
	}

	// Without a token, or with a wrong one: 401 everywhere.
	for _, c := range calls {
		if c.path == "/metrics" {
			continue
		}
		for _, tok := range []string{"", "es_wrong", acmeSecret[:len(acmeSecret)-1], acmeSecret + "x"} {
			r := e.do(c.method, c.path, tok, c.body)
			if r.code != 401 {
				t.Errorf("%s %s with token %q: status %d, want 401", c.method, c.path, tok, r.code)
			}
		}
	}
}

// TestTokensAreStoredHashed creates a token the way "eventstream tokens
// create" does and checks the table holds its SHA-256 only, and that a
// token one character off is refused.
func TestTokensAreStoredHashed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	pool := openPool(t, u, 2)
	ms, err := server.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	table := server.TokenTable{Pool: pool}
	secret, err := table.Add(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	var rows string
	if err := pool.QueryRow(ctx, `SELECT coalesce(string_agg(row_to_json(t)::text, E'\n'), '') FROM eventstream_api_tokens t`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rows, secret) || strings.Contains(rows, secret[3:]) {
		t.Fatalf("the tokens table holds the secret: %s", rows)
	}
	if !strings.Contains(rows, server.HashToken(secret)) {
		t.Fatalf("the tokens table lacks the secret's SHA-256: %s", rows)
	}
	auth := server.NewAuthenticator(table)
	if p, ok, err := auth.Authenticate(ctx, secret); err != nil || !ok || p.Tenant != "acme" {
		t.Fatalf("Authenticate(secret) = %+v, %v, %v", p, ok, err)
	}
	for _, wrong := range []string{secret[:len(secret)-1], secret + "A", strings.ToUpper(secret), server.HashToken(secret), ""} {
		if _, ok, err := auth.Authenticate(ctx, wrong); ok || err != nil {
			t.Errorf("Authenticate(%q) = %v, %v; want refused", wrong, ok, err)
		}
	}
}

// TestServerRequestLimits checks each documented limit on the real
// http.Server: body size (413), events per append (400 batch-size),
// header size (431), a client that never finishes its headers (the
// connection is closed), and the request deadline (503; the store here
// never starts the late append, so nothing is written — with a real store
// the append may still land, which is why the 503 carries the event ids).
// The server stays up after each.
func TestServerRequestLimits(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t, server.Limits{
		MaxBodyBytes: 64 << 10, MaxBatchEvents: 5, MaxHeaderBytes: 8 << 10,
		ReadHeaderTimeout: 300 * time.Millisecond, RequestTimeout: 500 * time.Millisecond,
	})
	alive := func() {
		t.Helper()
		e.must(200, "GET", "/healthz", "", "")
	}
	before := e.logCount()

	big := probeBody(strings.Repeat("x", 70<<10), "")
	if r := e.do("POST", "/streams/s/events", acmeSecret, big); r.code != 413 {
		t.Errorf("a %d-byte body: status %d, want 413: %s", len(big), r.code, clip(r.body))
	}
	alive()

	events := make([]string, 6)
	for i := range events {
		events[i] = probeBody(fmt.Sprint("batch-", i), "")
	}
	r := e.do("POST", "/streams/s/events", acmeSecret, `{"events":[`+strings.Join(events, ",")+`]}`)
	if r.code != 400 || r.json(t)["rule"] != "batch-size" {
		t.Errorf("6 events with a limit of 5: status %d: %s", r.code, clip(r.body))
	}
	e.must(201, "POST", "/streams/s/events", acmeSecret, `{"events":[`+strings.Join(events[:5], ",")+`]}`)
	alive()

	req, _ := http.NewRequest("GET", e.url+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 64<<10))
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("a 64 KiB header: %v", err)
	} else {
		res.Body.Close()
		if res.StatusCode != 431 {
			t.Errorf("a 64 KiB header with a limit of 8 KiB: status %d, want 431", res.StatusCode)
		}
	}
	alive()

	// A client that sends half a request line and stops: the server hangs
	// up after ReadHeaderTimeout (300 ms here) instead of holding the
	// connection. Within 5 s, so that the server's own 10 s default (the
	// limit not reaching the http.Server) fails the test.
	dialed := time.Now()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HT"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("a client that never finishes its headers still holds its connection after 20s")
	} else if n > 0 && !strings.Contains(string(buf[:n]), "408") && !strings.Contains(string(buf[:n]), "400") {
		t.Errorf("a stalled request line got %q", buf[:n])
	} else if took := time.Since(dialed); took > 5*time.Second {
		t.Errorf("a client that never finishes its headers was hung up on after %s, want about the 300ms ReadHeaderTimeout", took)
	}
	alive()

	r = e.do("POST", "/streams/slow/events", acmeSecret, probeBody("too-slow", ""))
	if r.code != 503 {
		t.Errorf("an append past the request deadline: status %d, want 503: %s", r.code, clip(r.body))
	}
	alive()
	if got, want := e.logCount(), before+5; got != want {
		t.Errorf("the log holds %d events, want %d (only the 5-event batch)", got, want)
	}
}

// TestHostileValuesOverHTTP sends hostile stream ids and bodies to the
// append endpoint: each is stored verbatim (201, and read back the same)
// or refused with 400 and the rule (or 404 for a stream id that cannot
// exist), nothing is written on a refusal, and the server stays up.
func TestHostileValuesOverHTTP(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t, server.Limits{})
	note := func(raw string) string {
		return `{"type":"` + probeType + `","payload":{"writer":1,"seq":2,"i":3,"note":` + raw + `}}`
	}
	payload := func(raw string) string { return `{"type":"` + probeType + `","payload":` + raw + `}` }
	cases := []struct {
		name, stream, body string
		code               int
		rule               string
	}{
		{"stream sql", sqlDrop, note(`"x"`), 201, ""},
		{"stream quotes", `it's "quoted"; --`, note(`"x"`), 201, ""},
		{"stream slash", "a/b", note(`"x"`), 201, ""},
		{"stream percent", "100%", note(`"x"`), 201, ""},
		{"stream unicode", "ünï🙂", note(`"x"`), 201, ""},
		{"stream nul", "a\x00b", note(`"x"`), 400, "stream-id"},
		{"stream invalid utf-8", "a\xffb", note(`"x"`), 400, "stream-id"},
		{"stream 256 bytes", strings.Repeat("s", 256), note(`"x"`), 400, "stream-id"},
		{"payload sql", "p1", note(`"` + sqlDrop + `"`), 201, ""},
		{"payload escaped nul", "p2", note(`"a\u0000b"`), 400, "nul"},
		{"payload invalid utf-8", "p3", note("\"a\xffb\""), 400, "utf-8"},
		{"payload lone surrogate", "p4", note(`"\udc00"`), 400, "surrogate"},
		{"payload duplicate key", "p5", payload(`{"writer":1,"seq":2,"i":3,"i":3}`), 400, "duplicate-key"},
		{"body duplicate key", "p6", `{"type":"x","type":"` + probeType + `","payload":{"writer":1,"seq":2,"i":3}}`, 400, "duplicate-key"},
		{"payload nested 10000", "p7", note(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), 400, "depth"},
		{"payload beyond float64", "p8", payload(`{"writer":1,"seq":123456789012345678901234567890123,"i":3}`), 201, ""},
		{"payload 1e400", "p9", payload(`{"writer":1,"seq":1e400,"i":3}`), 201, ""},
		{"payload 1 MB string", "p10", note(`"` + strings.Repeat("x", 1<<20) + `"`), 400, "event-size"},
		{"body not json", "p11", `{"type": "` + probeType + `", "payload": {]}`, 400, "json"},
		{"body trailing sql", "p12", note(`"x"`) + `; DROP TABLE events`, 400, "json"},
		{"body unknown field", "p13", `{"type":"` + probeType + `","payload":{"writer":1,"seq":2,"i":3},"drop":"table"}`, 400, "envelope"},
		{"type sql", "p14", `{"type":"` + sqlDrop + `","payload":{}}`, 400, "type-name"},
		{"tenant forged by a tenant", "p15", `{"type":"` + probeType + `","payload":{"writer":1,"seq":2,"i":3},"meta":{"tenant_id":"` + sqlDrop + `"}}`, 403, ""},
	}
	stored := 0
	for _, c := range cases {
		before := e.logCount()
		streamPath := "/streams/" + url.PathEscape(c.stream)
		r := e.do("POST", streamPath+"/events", acmeSecret, c.body)
		if r.code != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.code, c.code, clip(r.body))
			continue
		}
		if len(r.body) > 4096 {
			t.Errorf("%s: a %d-byte answer: the error repeats the input", c.name, len(r.body))
		}
		if c.code != 201 {
			if c.rule != "" && r.json(t)["rule"] != c.rule {
				t.Errorf("%s: rule %v, want %s: %s", c.name, r.json(t)["rule"], c.rule, clip(r.body))
			}
			if e.logCount() != before {
				t.Errorf("%s: refused, yet written", c.name)
			}
			continue
		}
		stored++
		got := e.must(200, "GET", streamPath, acmeSecret, "")
		var back struct {
			Stream string             `json:"stream"`
			Events []eventstore.Event `json:"events"`
		}
		if err := json.Unmarshal([]byte(got.body), &back); err != nil || len(back.Events) != 1 {
			t.Errorf("%s: read back %s (%v)", c.name, clip(got.body), err)
			continue
		}
		if back.Stream != c.stream || back.Events[0].Stream != c.stream {
			t.Errorf("%s: stream read back as %q, sent %q", c.name, back.Events[0].Stream, c.stream)
		}
		var sent struct {
			Payload json.RawMessage `json:"payload"`
		}
		_ = json.Unmarshal([]byte(c.body), &sent)
		if !sameJSON(t, sent.Payload, back.Events[0].Payload) {
			t.Errorf("%s: payload read back as %s, sent %s", c.name, clip(string(back.Events[0].Payload)), clip(string(sent.Payload)))
		}
	}
	e.must(200, "GET", "/healthz", "", "")
	var exists bool
	if err := e.pool.QueryRow(context.Background(), `SELECT to_regclass('events') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatalf("the events table after the hostile requests: %v, %v", exists, err)
	}
	if got := e.logCount(); got != stored {
		t.Errorf("the log holds %d events, %d were accepted", got, stored)
	}
}
