package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/server"
)

// addToken creates a token of tenant named name in the tokens table of an
// env made with tokenTable.
func (e *env) addToken(tenant, name string) string {
	e.t.Helper()
	secret, err := server.TokenTable{Pool: e.pool}.Add(context.Background(), tenant, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// streamMetas reads a stream as the operator and returns its events' meta.
func (e *env) streamMetas(stream string) []map[string]any {
	e.t.Helper()
	var out struct {
		Events []struct {
			Meta map[string]any `json:"meta"`
		} `json:"events"`
	}
	r := e.must(200, "GET", "/streams/"+stream, operatorToken, "")
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		e.t.Fatalf("read %s: %s", stream, r.body)
	}
	metas := make([]map[string]any, len(out.Events))
	for i, ev := range out.Events {
		metas[i] = ev.Meta
	}
	return metas
}

// eventWith is an event of course.generation.requested with id (none if
// empty) and meta (none if empty).
func eventWith(id, meta string) string {
	s := fmt.Sprintf(`{"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}`, uuid.New())
	if id != "" {
		s += fmt.Sprintf(`,"id":%q`, id)
	}
	if meta != "" {
		s += `,"meta":` + meta
	}
	return s + "}"
}

// TestAppendedByRecordsTheToken: every event appended through the API
// carries meta.appended_by, the name of the token that appended it, beside
// the producer the client claims; it is read back by the stream, the log
// and the audit browser.
func TestAppendedByRecordsTheToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	one := e.must(201, "POST", "/streams/billing/events", acmeToken, eventWith("", `{"producer":"globex-app","trace_id":"t-1"}`))
	e.must(201, "POST", "/streams/billing/events", acmeToken,
		`{"events":[`+eventWith("", "")+`,`+eventWith("", `{"tenant_id":"acme"}`)+`]}`)

	metas := e.streamMetas("billing")
	if len(metas) != 3 {
		t.Fatalf("the stream holds %d events, want 3", len(metas))
	}
	for i, m := range metas {
		if got, want := m["appended_by"], "acme-app"; got != want {
			t.Errorf("event %d: meta.appended_by = %v, want %q (meta %v)", i+1, got, want, m)
		}
	}
	// The producer stays the client's claim, and other free-form keys stay.
	if got, want := metas[0]["producer"], "globex-app"; got != want {
		t.Errorf("meta.producer = %v, want the client's %q", got, want)
	}
	if got, want := metas[0]["trace_id"], "t-1"; got != want {
		t.Errorf("meta.trace_id = %v, want %q", got, want)
	}

	// The tenant's own read of the log shows it too.
	r := e.must(200, "GET", "/events", acmeToken, "")
	for _, ev := range r.json(t)["events"].([]any) {
		m := ev.(map[string]any)["meta"].(map[string]any)
		if got, want := m["appended_by"], "acme-app"; got != want {
			t.Errorf("GET /events: meta.appended_by = %v, want %q", got, want)
		}
	}

	// The audit browser's event view shows the meta as stored.
	e.project()
	var appended struct {
		Events []struct{ ID string } `json:"events"`
	}
	if err := json.Unmarshal([]byte(one.body), &appended); err != nil || len(appended.Events) != 1 {
		t.Fatalf("append: %s", one.body)
	}
	cookie := strings.SplitN(sessionCookie(t, e.signIn(acmeToken)).String(), ";", 2)[0]
	page := e.must(200, "GET", "/ui/events/"+appended.Events[0].ID, "", "", "Cookie", cookie).body
	pre := regexp.MustCompile(`(?s)<pre id="meta">(.*?)</pre>`).FindStringSubmatch(page)
	if pre == nil {
		t.Fatalf("the event page has no meta: %s", page)
	}
	if meta := html.UnescapeString(pre[1]); !strings.Contains(meta, `"appended_by": "acme-app"`) {
		t.Fatalf("the audit browser's meta lacks appended_by: %s", meta)
	}
}

// TestAppendedByFromTheClientIsRefused: a client that sends the key itself
// (in any case: a reader decoding with encoding/json would take
// "Appended_By" for it) gets a 400 naming the event, the pointer and the
// rule, and nothing of the request is written.
func TestAppendedByFromTheClientIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	cases := []struct {
		name, token, body string
		index             int
		pointer           string
	}{
		{"one event", acmeToken, eventWith("", `{"appended_by":"ops"}`), 0, "/meta/appended_by"},
		{"another token's name", acmeToken, eventWith("", `{"appended_by":"acme-app"}`), 0, "/meta/appended_by"},
		{"in another case", acmeToken, eventWith("", `{"Appended_By":"ops"}`), 0, "/meta/Appended_By"},
		{"second of a batch", acmeToken, `{"events":[` + eventWith("", "") + `,` + eventWith("", `{"tenant_id":"acme","appended_by":""}`) + `]}`, 1, "/meta/appended_by"},
		{"the operator's", operatorToken, eventWith("", `{"tenant_id":"acme","appended_by":"acme-app"}`), 0, "/meta/appended_by"},
	}
	for _, tc := range cases {
		r := e.do("POST", "/streams/forged/events", tc.token, tc.body)
		if r.code != 400 {
			t.Errorf("%s: want 400, got %d: %s", tc.name, r.code, r.body)
			continue
		}
		var got struct {
			Kind    string `json:"kind"`
			Index   *int   `json:"index"`
			Pointer string `json:"pointer"`
			Rule    string `json:"rule"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("%s: %s", tc.name, r.body)
		}
		if got.Kind != "validation" || got.Index == nil || *got.Index != tc.index || got.Pointer != tc.pointer || got.Rule != "reserved" {
			t.Errorf("%s: want kind validation, index %d, pointer %s, rule reserved: %s", tc.name, tc.index, tc.pointer, r.body)
		}
	}
	if n := e.logSize(); n != 0 {
		t.Fatalf("refused appends wrote: the log has %d events, want 0", n)
	}
	e.must(404, "GET", "/streams/forged", operatorToken, "")
}

// TestAppendedByRetries: a retry of the same ids by the token that
// appended them is stamped alike and answered with the original result;
// by another token of the same tenant (or the operator) the stamp differs,
// and it is a 409 duplicate, the stored events untouched, even when the
// client's own claims (meta.producer) are the same.
func TestAppendedByRetries(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	billing := e.addToken("acme", "acme-billing")
	intern := e.addToken("acme", "acme-intern")
	// The operator's fixed token, which streamMetas and logSize read with.
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO eventstream_api_tokens (token_sha256, tenant_id, name) VALUES ($1, $2, 'ops')`,
		server.HashToken(operatorToken), server.AllTenants); err != nil {
		t.Fatal(err)
	}

	// The tenant and the producer are named, so that another token's
	// retry is the same request, not one defaulted otherwise (an omitted
	// producer is "http/" and the token's name); the stamp is the only
	// free-form key of the second event.
	body := `{"events":[` + eventWith(uuid.NewString(), `{"tenant_id":"acme","producer":"billing-service","trace_id":"t-9"}`) + `,` +
		eventWith(uuid.NewString(), `{"tenant_id":"acme","producer":"billing-service"}`) + `]}`
	first := e.must(201, "POST", "/streams/invoices/events", billing, body)
	again := e.must(201, "POST", "/streams/invoices/events", billing, body)
	if first.body != again.body {
		t.Fatalf("the same token's retry answered\n%s\nnot the original\n%s", again.body, first.body)
	}
	check := func(when string) {
		t.Helper()
		metas := e.streamMetas("invoices")
		if len(metas) != 2 {
			t.Fatalf("%s: the stream holds %d events, want 2", when, len(metas))
		}
		for i, m := range metas {
			if got, want := m["appended_by"], "acme-billing"; got != want {
				t.Errorf("%s: event %d: meta.appended_by = %v, want %q", when, i+1, got, want)
			}
		}
	}
	check("after the same token's retry")

	for _, tc := range []struct{ name, token string }{{"another token of the tenant", intern}, {"the operator", operatorToken}} {
		r := e.do("POST", "/streams/invoices/events", tc.token, body)
		if r.code != 409 || !strings.Contains(r.body, `"kind":"duplicate"`) {
			t.Errorf("%s's retry of the same ids: want 409 duplicate, got %d: %s", tc.name, r.code, r.body)
		}
	}
	check("after other tokens' retries")
	if n := e.logSize(); n != 2 {
		t.Fatalf("the log has %d events, want 2", n)
	}
}

// TestAppendedByOperator: an operator's token appending for a tenant gets
// its own name stamped, not the tenant's token's, and the tenant reads it.
func TestAppendedByOperator(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/repair/events", operatorToken, eventWith("", `{"tenant_id":"acme","producer":"acme-app"}`))
	r := e.must(200, "GET", "/streams/repair", acmeToken, "")
	evs := r.json(t)["events"].([]any)
	if len(evs) != 1 {
		t.Fatalf("acme reads %d events, want 1: %s", len(evs), r.body)
	}
	m := evs[0].(map[string]any)["meta"].(map[string]any)
	if got, want := m["appended_by"], "ops"; got != want {
		t.Fatalf("meta.appended_by = %v, want the operator token's %q", got, want)
	}
	if got, want := m["producer"], "acme-app"; got != want {
		t.Fatalf("meta.producer = %v, want the client's %q", got, want)
	}
}
