package server_test

import (
	"cmp"
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
	cases := []reservedCase{
		{"one event", acmeToken, eventWith("", `{"appended_by":"ops"}`), 0, "/meta/appended_by"},
		{"another token's name", acmeToken, eventWith("", `{"appended_by":"acme-app"}`), 0, "/meta/appended_by"},
		{"in another case", acmeToken, eventWith("", `{"Appended_By":"ops"}`), 0, "/meta/Appended_By"},
		{"second of a batch", acmeToken, `{"events":[` + eventWith("", "") + `,` + eventWith("", `{"tenant_id":"acme","appended_by":""}`) + `]}`, 1, "/meta/appended_by"},
		{"the operator's", operatorToken, eventWith("", `{"tenant_id":"acme","appended_by":"acme-app"}`), 0, "/meta/appended_by"},
	}
	e.wantReserved(cases)
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
	e.operatorInTable()

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
// its own name and key id stamped, not the tenant's token's, and the
// tenant reads them.
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
	// A token of a list (a tokens file's line) has a key id too: the
	// start of the hash it is listed by.
	if got, want := m["appended_by_key"], server.HashToken(operatorToken)[:server.KeyIDLen]; got != want {
		t.Fatalf("meta.appended_by_key = %v, want the operator token's %q", got, want)
	}
	if got, want := m["producer"], "acme-app"; got != want {
		t.Fatalf("meta.producer = %v, want the client's %q", got, want)
	}
}

// operatorInTable adds the operator's fixed token, which streamMetas and
// logSize read with, to the tokens table of an env made with tokenTable.
func (e *env) operatorInTable() {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO eventstream_api_tokens (token_sha256, tenant_id, name) VALUES ($1, $2, 'ops')`,
		server.HashToken(operatorToken), server.AllTenants); err != nil {
		e.t.Fatal(err)
	}
}

// listedKeys returns the hash prefixes of the tokens listing, as
// `eventstream tokens list --json` prints it, by the token's full hash:
// the one row whose hash_prefix starts the hash of each secret.
func (e *env) listedKeys(secrets ...string) map[string]string {
	e.t.Helper()
	list, err := server.TokenTable{Pool: e.pool}.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := json.Marshal(list)
	if err != nil {
		e.t.Fatal(err)
	}
	var rows []struct {
		HashPrefix string `json:"hash_prefix"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range secrets {
		h := server.HashToken(s)
		for _, r := range rows {
			if r.HashPrefix != "" && strings.HasPrefix(h, r.HashPrefix) {
				if _, twice := out[s]; twice {
					e.t.Fatalf("two listed tokens have hash prefixes of %s: %s", h, b)
				}
				out[s] = r.HashPrefix
			}
		}
		if out[s] == "" {
			e.t.Fatalf("no listed token has a hash prefix of %s: %s", h, b)
		}
	}
	return out
}

// TestAppendedByKeyTellsTokensApart: two tokens of a tenant with the same
// name, and one without a name, stamp the same appended_by as each other
// where their names are alike, but each its own meta.appended_by_key: the
// hash prefix that the tokens listing shows for it.
func TestAppendedByKeyTellsTokensApart(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	tokens := []struct{ secret, name string }{
		{e.addToken("acme", "acme-app"), "acme-app"},
		{e.addToken("acme", "acme-app"), "acme-app"},
		{e.addToken("acme", ""), ""},
	}
	for _, tok := range tokens {
		e.must(201, "POST", "/streams/shared/events", tok.secret, eventWith("", ""))
	}
	listed := e.listedKeys(tokens[0].secret, tokens[1].secret, tokens[2].secret)

	metas := e.streamMetas("shared")
	if len(metas) != len(tokens) {
		t.Fatalf("the stream holds %d events, want %d", len(metas), len(tokens))
	}
	seen := map[any]int{}
	for i, m := range metas {
		if got, want := m["appended_by"], tokens[i].name; got != want {
			t.Errorf("event %d: meta.appended_by = %v, want %q", i+1, got, want)
		}
		key := m["appended_by_key"]
		if got, want := key, listed[tokens[i].secret]; got != want {
			t.Errorf("event %d: meta.appended_by_key = %v, want the listed hash prefix %q (meta %v)", i+1, got, want, m)
		}
		if s, _ := key.(string); len(s) != server.KeyIDLen {
			t.Errorf("event %d: meta.appended_by_key = %v, want %d hex digits", i+1, key, server.KeyIDLen)
		}
		// Left unset, producer names the token: by its name, or by its key
		// id when it has none.
		if got, want := m["producer"], "http/"+cmp.Or(tokens[i].name, listed[tokens[i].secret]); got != want {
			t.Errorf("event %d: meta.producer = %v, want %q", i+1, got, want)
		}
		if j, twice := seen[key]; twice {
			t.Errorf("events %d and %d, of different tokens, carry the same appended_by_key %v", j, i+1, key)
		}
		seen[key] = i + 1
	}
}

// TestAppendedByKeyFromTheClientIsRefused: a client cannot send the key id
// either, in any case (the Kelvin sign folds onto k for encoding/json), as
// any token; the first key the server stamps, in sorted order, is named.
// Nothing of the request is written.
func TestAppendedByKeyFromTheClientIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	cases := []reservedCase{
		{"one event", acmeToken, eventWith("", `{"appended_by_key":"0123456789ab"}`), 0, "/meta/appended_by_key"},
		{"in another case", acmeToken, eventWith("", `{"Appended_By_Key":"0123456789ab"}`), 0, "/meta/Appended_By_Key"},
		{"in upper case", acmeToken, eventWith("", `{"APPENDED_BY_KEY":""}`), 0, "/meta/APPENDED_BY_KEY"},
		{"with the Kelvin sign", acmeToken, eventWith("", `{"appended_by_\u212aey":"0123456789ab"}`), 0, "/meta/appended_by_\u212aey"},
		{"beside appended_by", acmeToken, eventWith("", `{"appended_by_key":"x","appended_by":"x"}`), 0, "/meta/appended_by"},
		{"second of a batch", acmeToken, `{"events":[` + eventWith("", "") + `,` + eventWith("", `{"tenant_id":"acme","appended_by_key":"x"}`) + `]}`, 1, "/meta/appended_by_key"},
		{"the operator's", operatorToken, eventWith("", `{"tenant_id":"acme","appended_by_key":"x"}`), 0, "/meta/appended_by_key"},
	}
	e.wantReserved(cases)
}

// TestAppendedByKeyRetries: a retry of the same ids by the token that
// appended them gets the original result and leaves the stamp as it was;
// by another token with the same name, or another unnamed one, the key id
// differs, and it is a 409 duplicate, the stored events untouched.
func TestAppendedByKeyRetries(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	billing := e.addToken("acme", "acme-billing")
	twin := e.addToken("acme", "acme-billing")
	anon := e.addToken("acme", "")
	anonTwin := e.addToken("acme", "")
	listed := e.listedKeys(billing, anon)

	// The tenant and the producer are named, so that another token's
	// retry is the same request, not one defaulted otherwise.
	request := func() string {
		return `{"events":[` + eventWith(uuid.NewString(), `{"tenant_id":"acme","producer":"billing-service"}`) + `]}`
	}
	for _, tc := range []struct{ stream, token, other, name string }{
		{"invoices", billing, twin, "acme-billing"},
		{"receipts", anon, anonTwin, ""},
	} {
		body := request()
		first := e.must(201, "POST", "/streams/"+tc.stream+"/events", tc.token, body)
		again := e.must(201, "POST", "/streams/"+tc.stream+"/events", tc.token, body)
		if first.body != again.body {
			t.Fatalf("%s: the same token's retry answered\n%s\nnot the original\n%s", tc.stream, again.body, first.body)
		}
		r := e.do("POST", "/streams/"+tc.stream+"/events", tc.other, body)
		if r.code != 409 || !strings.Contains(r.body, `"kind":"duplicate"`) {
			t.Errorf("%s: a retry of the same ids by another token named %q: want 409 duplicate, got %d: %s", tc.stream, tc.name, r.code, r.body)
		}
		metas := e.streamMetas(tc.stream)
		if len(metas) != 1 {
			t.Fatalf("%s: the stream holds %d events, want 1", tc.stream, len(metas))
		}
		if got, want := metas[0]["appended_by_key"], listed[tc.token]; got != want {
			t.Errorf("%s: meta.appended_by_key = %v after the retries, want the first token's %q", tc.stream, got, want)
		}
		if got, want := metas[0]["appended_by"], tc.name; got != want {
			t.Errorf("%s: meta.appended_by = %v, want %q", tc.stream, got, want)
		}
	}
	if n := e.logSize(); n != 2 {
		t.Fatalf("the log has %d events, want 2", n)
	}
}

// reservedCase is an append that sends a key only the server writes: the
// request, and the index and pointer the refusal must name.
type reservedCase struct {
	name, token, body string
	index             int
	pointer           string
}

// wantReserved sends each case to a new stream and wants the API's 400
// validation refusal with rule reserved, its index and pointer, and
// nothing written.
func (e *env) wantReserved(cases []reservedCase) {
	t := e.t
	t.Helper()
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
