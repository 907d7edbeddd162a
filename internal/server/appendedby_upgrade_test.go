package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// sentEvent is an event of course.generation.requested as a client sends
// it in an append of tenant acme: its id, course and producer ("": left
// out, for the server to default) and free-form meta keys.
type sentEvent struct {
	id       uuid.UUID
	course   string
	producer string
	extra    map[string]any
}

func newSentEvent(producer string, extra map[string]any) sentEvent {
	return sentEvent{id: uuid.New(), course: uuid.NewString(), producer: producer, extra: extra}
}

func (s sentEvent) payload() string {
	return fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1,"language":"en"}`, s.course)
}

// appendBody is the body of an append of evs.
func appendBody(evs ...sentEvent) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i, s := range evs {
		if i > 0 {
			b.WriteString(",")
		}
		meta := map[string]any{"tenant_id": "acme"}
		maps.Copy(meta, s.extra)
		if s.producer != "" {
			meta["producer"] = s.producer
		}
		m, _ := json.Marshal(meta)
		fmt.Fprintf(&b, `{"id":%q,"type":"course.generation.requested","payload":%s,"meta":%s}`, s.id, s.payload(), m)
	}
	b.WriteString("]}")
	return b.String()
}

// storeAsBefore appends evs to stream directly through the store, as an
// earlier release of the API stored what token (named name) sent: the
// meta the API fills in (schema version, source, the producer a client
// leaves out) and stamp, the earlier release's stamp (nil: none).
func (e *env) storeAsBefore(stream, name string, stamp map[string]any, evs ...sentEvent) eventstore.AppendResult {
	e.t.Helper()
	typ := "course.generation.requested"
	stored := make([]eventstore.Event, len(evs))
	for i, s := range evs {
		extra := maps.Clone(s.extra)
		if len(stamp) > 0 {
			if extra == nil {
				extra = map[string]any{}
			}
			maps.Copy(extra, stamp)
		}
		m := eventstore.Meta{TenantID: "acme", SchemaVersion: schemas.MustDefault().Latest(typ), Producer: s.producer, Extra: extra}
		if m.Producer == "" {
			m.Producer = "http/" + name
		}
		stored[i] = eventstore.Event{ID: s.id, Type: typ, Source: "http", Payload: json.RawMessage(s.payload()), Meta: m}
	}
	res, err := e.store.Append(context.Background(), stream, eventstore.Any, stored...)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// wantOriginal fails unless r is the answer to the append whose result
// was res: 201 with res's stream, versions, positions and events.
func wantOriginal(t testing.TB, what string, r response, res eventstore.AppendResult) {
	t.Helper()
	if r.code != 201 {
		t.Errorf("%s: want 201 with the original result, got %d: %s", what, r.code, r.body)
		return
	}
	var got struct {
		Stream   string              `json:"stream"`
		Version  int64               `json:"version"`
		Position eventstore.Position `json:"position"`
		Events   []struct {
			ID       uuid.UUID           `json:"id"`
			Type     string              `json:"type"`
			Version  int64               `json:"version"`
			Position eventstore.Position `json:"position"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("%s: %s", what, r.body)
	}
	ok := got.Stream == res.Stream && got.Version == res.Version() && got.Position == res.Position() && len(got.Events) == len(res.Events)
	for i := 0; ok && i < len(got.Events); i++ {
		g, w := got.Events[i], res.Events[i]
		ok = g.ID == w.ID && g.Type == w.Type && g.Version == w.Version && g.Position == w.Position
	}
	if !ok {
		t.Errorf("%s: answered\n%s\nnot the original result %+v", what, r.body, res)
	}
}

// wantDuplicate fails unless r is a 409 duplicate.
func wantDuplicate(t testing.TB, what string, r response) {
	t.Helper()
	if r.code != 409 || !strings.Contains(r.body, `"kind":"duplicate"`) {
		t.Errorf("%s: want 409 duplicate, got %d: %s", what, r.code, r.body)
	}
}

// wantStored fails unless stream holds exactly the events of ids, in this
// order, with their meta's stamp keys as stamp has them (nil: none).
func (e *env) wantStored(stream string, stamp map[string]any, ids ...uuid.UUID) {
	e.t.Helper()
	var out struct {
		Events []struct {
			ID   uuid.UUID      `json:"id"`
			Meta map[string]any `json:"meta"`
		} `json:"events"`
	}
	r := e.must(200, "GET", "/streams/"+stream, operatorToken, "")
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		e.t.Fatalf("read %s: %s", stream, r.body)
	}
	if len(out.Events) != len(ids) {
		e.t.Fatalf("%s holds %d events, want %d: %s", stream, len(out.Events), len(ids), r.body)
	}
	for i, ev := range out.Events {
		if ev.ID != ids[i] {
			e.t.Errorf("%s: event %d is %s, want %s", stream, i+1, ev.ID, ids[i])
		}
		for _, k := range []string{"appended_by", "appended_by_key"} {
			got, has := ev.Meta[k]
			want, wanted := stamp[k]
			if has != wanted || got != want {
				e.t.Errorf("%s: event %d: meta.%s = %v (present %v), want %v (present %v)", stream, i+1, k, got, has, want, wanted)
			}
		}
	}
}

// TestAppendedByRetryOfAnEventStoredBeforeTheStamp: an event that a
// release before the stamp stored carries no appended_by nor
// appended_by_key. A retry of its append through the API, stamped by the
// server, is the same content but for the stamp: it gets the original
// result, the whole append or a part of it, and nothing is written nor
// stamped. The stored event names no token, so another token of the
// tenant, or the operator, that retries it gets the original result too,
// as before the upgrade.
func TestAppendedByRetryOfAnEventStoredBeforeTheStamp(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	billing := e.addToken("acme", "acme-billing")
	intern := e.addToken("acme", "acme-intern")

	// The first event's producer was left out, so the server filled it
	// in; the second names it, and a free-form key beside.
	a := newSentEvent("", nil)
	b := newSentEvent("billing-service", map[string]any{"trace_id": "t-9"})
	orig := e.storeAsBefore("invoices", "acme-billing", nil, a, b)

	wantOriginal(t, "the same token's retry", e.do("POST", "/streams/invoices/events", billing, appendBody(a, b)), orig)
	part := eventstore.AppendResult{Stream: orig.Stream, Events: orig.Events[1:]}
	wantOriginal(t, "the same token's retry of the second event alone", e.do("POST", "/streams/invoices/events", billing, appendBody(b)), part)
	// Expected-Version as the first append may have sent it: the retry is
	// recognised before the version is checked.
	wantOriginal(t, "the retry with expected version no-stream", e.do("POST", "/streams/invoices/events", billing, appendBody(a, b), "Expected-Version", "no-stream"), orig)
	wantOriginal(t, "another token's retry", e.do("POST", "/streams/invoices/events", intern, appendBody(b)), part)
	wantOriginal(t, "the operator's retry", e.do("POST", "/streams/invoices/events", operatorToken, appendBody(b)), part)

	e.wantStored("invoices", nil, a.id, b.id)
	if n := e.logSize(); n != 2 {
		t.Fatalf("the log has %d events, want 2", n)
	}
}

// TestAppendedByRetryOfAnEventStampedWithItsNameOnly: the release before
// appended_by_key stamped appended_by only. A retry by a token of that
// name gets the original result (the name is all that release recorded,
// so two tokens named alike are not told apart); a token of another name
// is another appender, and gets 409 duplicate as for a stamped event.
func TestAppendedByRetryOfAnEventStampedWithItsNameOnly(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	billing := e.addToken("acme", "acme-billing")
	twin := e.addToken("acme", "acme-billing")
	intern := e.addToken("acme", "acme-intern")

	a := newSentEvent("billing-service", nil)
	stamp := map[string]any{"appended_by": "acme-billing"}
	orig := e.storeAsBefore("invoices", "acme-billing", stamp, a)

	wantOriginal(t, "the same token's retry", e.do("POST", "/streams/invoices/events", billing, appendBody(a)), orig)
	wantOriginal(t, "the retry by a token of the same name", e.do("POST", "/streams/invoices/events", twin, appendBody(a)), orig)
	wantDuplicate(t, "the retry by a token of another name", e.do("POST", "/streams/invoices/events", intern, appendBody(a)))
	wantDuplicate(t, "the operator's retry", e.do("POST", "/streams/invoices/events", operatorToken, appendBody(a)))

	e.wantStored("invoices", stamp, a.id)
	if n := e.logSize(); n != 1 {
		t.Fatalf("the log has %d events, want 1", n)
	}
}

// TestAppendedByRetryBeforeTheStampStillRefuses: recognising an event
// stored before the stamp takes nothing else for a retry. Its id with
// another payload, or sent with a new event, is 409 duplicate; in another
// stream it is the other-stream duplicate; a client that sends the stamp
// itself is refused as ever, whatever is stored. Nothing is written: not
// the new event of the mixed append, and no stamp on the stored one.
func TestAppendedByRetryBeforeTheStampStillRefuses(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	billing := e.addToken("acme", "acme-billing")

	a := newSentEvent("billing-service", nil)
	e.storeAsBefore("invoices", "acme-billing", nil, a)

	other := a
	other.course = uuid.NewString()
	wantDuplicate(t, "the id with another payload", e.do("POST", "/streams/invoices/events", billing, appendBody(other)))
	traced := a
	traced.extra = map[string]any{"trace_id": "t-1"}
	wantDuplicate(t, "the id with another free-form key", e.do("POST", "/streams/invoices/events", billing, appendBody(traced)))
	fresh := newSentEvent("billing-service", nil)
	wantDuplicate(t, "the stored event sent with a new one", e.do("POST", "/streams/invoices/events", billing, appendBody(a, fresh)))
	wantDuplicate(t, "a new event sent before the stored one", e.do("POST", "/streams/invoices/events", billing, appendBody(fresh, a)))
	r := e.do("POST", "/streams/receipts/events", billing, appendBody(a))
	if r.code != 409 || !strings.Contains(r.body, "already stored in another stream") {
		t.Errorf("the id in another stream: want 409 already stored in another stream, got %d: %s", r.code, r.body)
	}

	for _, stamp := range []map[string]any{{"appended_by": "acme-billing"}, {"appended_by": "acme-billing", "appended_by_key": "0123456789ab"}, {"appended_by": ""}} {
		forged := a
		forged.extra = stamp
		r := e.do("POST", "/streams/invoices/events", billing, appendBody(forged))
		if r.code != 400 || !strings.Contains(r.body, `"rule":"reserved"`) {
			t.Errorf("the stored event sent with meta %v: want 400 reserved, got %d: %s", stamp, r.code, r.body)
		}
	}

	e.wantStored("invoices", nil, a.id)
	e.must(404, "GET", "/streams/receipts", operatorToken, "")
	if n := e.logSize(); n != 1 {
		t.Fatalf("the log has %d events, want 1", n)
	}
}

// TestAppendedByConcurrentRetriesBeforeTheStamp: many retries at once of
// an append stored before the stamp, by two tokens, each get the original
// result, and the log still holds the one copy, unstamped.
func TestAppendedByConcurrentRetriesBeforeTheStamp(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	e.operatorInTable()
	tokens := []string{e.addToken("acme", "acme-billing"), e.addToken("acme", "acme-intern")}

	a, b := newSentEvent("billing-service", nil), newSentEvent("billing-service", nil)
	orig := e.storeAsBefore("invoices", "acme-billing", nil, a, b)
	body := appendBody(a, b)

	const n = 16
	got := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, err := http.NewRequest("POST", e.srv.URL+"/streams/invoices/events", strings.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			got[i], errs[i] = response{code: res.StatusCode, body: string(b)}, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("retry %d: %v", i, errs[i])
		}
		wantOriginal(t, fmt.Sprintf("retry %d", i), got[i], orig)
	}
	e.wantStored("invoices", nil, a.id, b.id)
	if n := e.logSize(); n != 2 {
		t.Fatalf("the log has %d events, want 2", n)
	}
}
