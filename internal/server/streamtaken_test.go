package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/server"
)

// acmeEvents are n events of tenant acme, to append to the store directly.
func acmeEvents(n int) []eventstore.Event {
	evs := make([]eventstore.Event, n)
	for i := range evs {
		evs[i] = eventstore.Event{ID: eventstore.NewID(), Type: "course.generation.requested", Source: "test",
			Payload: json.RawMessage(fmt.Sprintf(`{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}`, uuid.New())),
			Meta:    eventstore.Meta{SchemaVersion: 2, TenantID: "acme"}}
	}
	return evs
}

// sameAnswer is what of a response must not depend on whose a taken
// stream is, nor on its version or events: the status, the headers but
// Date, and the body with the stream id (the caller's own input) blanked.
func sameAnswer(r response, stream string) string {
	var h []string
	for k, v := range r.header {
		if k != "Date" {
			h = append(h, k+": "+strings.Join(v, ", "))
		}
	}
	slices.Sort(h)
	return fmt.Sprintf("%d\n%s\n%s", r.code, strings.Join(h, "\n"), strings.ReplaceAll(r.body, stream, "STREAM"))
}

// TestAppendToAnotherTenantsStreamRevealsNothingOfIt: stream ids are
// shared by every tenant, so a tenant's append to a stream of another
// tenant (or of none) is refused, and the refusal tells it that the id is
// taken. It must tell nothing more: the answer is the same for a stream of
// one event and one of four, for acme's streams and a stream of no tenant,
// whatever version the append expects (4, which acme's stream is at,
// included), names neither the owner nor a version, and writes nothing.
func TestAppendToAnotherTenantsStreamRevealsNothingOfIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	ctx := context.Background()
	// Stream ids of one length, so that the answers' sizes compare.
	taken := map[string]int{"taken-one": 1, "taken-big": 4, "taken-nob": 2}
	for _, s := range []string{"taken-one", "taken-big"} {
		if _, err := e.store.Append(ctx, s, eventstore.NoStream, acmeEvents(taken[s])...); err != nil {
			t.Fatal(err)
		}
	}
	// A stream whose events name no tenant: the store refuses to write
	// one, an import of an old log or a hand-written row does not.
	if _, err := e.store.Append(ctx, "taken-nob", eventstore.NoStream, acmeEvents(2)...); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE events SET tenant_id = '', meta = meta - 'tenant_id' WHERE stream = 'taken-nob'`); err != nil {
		t.Fatal(err)
	}
	before := e.logSize()

	var first string
	for _, expected := range []string{"", "any", "no-stream", "exists", "1", "2", "4", "5"} {
		for s := range taken {
			var r response
			if expected == "" {
				r = e.do("POST", "/streams/"+s+"/events", globexToken, requestedEvent(""))
			} else {
				r = e.do("POST", "/streams/"+s+"/events", globexToken, requestedEvent(""), "Expected-Version", expected)
			}
			if r.code != 409 || !strings.Contains(r.body, `"kind":"stream_taken"`) {
				t.Fatalf("globex appends to %s expecting %q: want 409 stream_taken, got %d %s", s, expected, r.code, r.body)
			}
			for _, leak := range []string{"acme", "actual_version", "expected_version", "version\":"} {
				if strings.Contains(r.body, leak) {
					t.Errorf("globex's refusal for %s (expecting %q) holds %q: %s", s, expected, leak, r.body)
				}
			}
			got := sameAnswer(r, s)
			if first == "" {
				first = got
			} else if got != first {
				t.Errorf("globex's refusal for %s (expecting %q) differs from the first:\n%s\n--- first:\n%s", s, expected, got, first)
			}
		}
	}
	// Nothing written, anywhere.
	if n := e.logSize(); n != before {
		t.Fatalf("the log holds %d events after the refusals, want %d", n, before)
	}
	for s, n := range taken {
		evs, err := e.store.ReadStream(ctx, s, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != n {
			t.Errorf("%s holds %d events, want %d", s, len(evs), n)
		}
	}
	// A read answers as for a stream that does not exist.
	nothing := sameAnswer(e.must(404, "GET", "/streams/taken-new", globexToken, ""), "taken-new")
	for s := range taken {
		if got := sameAnswer(e.must(404, "GET", "/streams/"+s, globexToken, ""), s); got != nothing {
			t.Errorf("globex reads %s:\n%s\n--- a stream that does not exist:\n%s", s, got, nothing)
		}
	}
	// The owner still appends to its own.
	e.must(201, "POST", "/streams/taken-big/events", acmeToken, requestedEvent(""), "Expected-Version", "4")
}

// TestTenantAppendsToItsOwnAndFreeStreams: the cases a tenant produces on
// streams that are its own or free are unchanged by the refusal above.
func TestTenantAppendsToItsOwnAndFreeStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	conflict := func(r response, actual float64) {
		t.Helper()
		m := r.json(t)
		if r.code != 409 || m["kind"] != "concurrency" || m["actual_version"] != actual {
			t.Fatalf("want 409 concurrency with actual_version %v, got %d %s", actual, r.code, r.body)
		}
	}
	version := func(r response, want float64) {
		t.Helper()
		if got := r.json(t)["version"]; got != want {
			t.Fatalf("version %v, want %v: %s", got, want, r.body)
		}
	}
	post := func(stream, expected string) response {
		return e.do("POST", "/streams/"+stream+"/events", globexToken, requestedEvent(""), "Expected-Version", expected)
	}
	conflict(post("globex-a", "exists"), 0)
	conflict(post("globex-a", "2"), 0)
	version(e.must(201, "POST", "/streams/globex-a/events", globexToken, requestedEvent(""), "Expected-Version", "no-stream"), 1)
	conflict(post("globex-a", "no-stream"), 1)
	version(e.must(201, "POST", "/streams/globex-a/events", globexToken, requestedEvent(""), "Expected-Version", "1"), 2)
	version(e.must(201, "POST", "/streams/globex-a/events", globexToken, requestedEvent(""), "Expected-Version", "exists"), 3)
	version(e.must(201, "POST", "/streams/globex-a/events", globexToken, requestedEvent("")), 4)
	conflict(post("globex-a", "2"), 4)
	version(e.must(201, "POST", "/streams/globex-b/events", globexToken, requestedEvent("")), 1)
	if n := len(e.must(200, "GET", "/streams/globex-a", globexToken, "").json(t)["events"].([]any)); n != 4 {
		t.Fatalf("globex-a holds %d events, want 4", n)
	}
}

// TestStreamCreatedMeanwhileByAnotherTenantRevealsNothing: acme creates a
// stream with 3 events after globex's append found it empty and before
// globex's events reach the store. The store's conflict names acme's
// version (3); globex must get the refusal it gets for any stream of
// another tenant, not that conflict.
func TestStreamCreatedMeanwhileByAnotherTenantRevealsNothing(t *testing.T) {
	t.Parallel()
	for _, expected := range []string{"any", "no-stream"} {
		t.Run(expected, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, server.Limits{})
			rs := &racingStore{Store: e.store, stream: "contested"}
			rs.create = func() {
				if _, err := e.store.Append(context.Background(), "contested", eventstore.NoStream, acmeEvents(3)...); err != nil {
					t.Error(err)
				}
			}
			s, err := server.New(server.Config{Store: rs, Registry: schemasReg(), Auth: server.NewAuthenticator(server.Tokens{
				server.TokenFor(globexToken, "globex", "globex-app"),
			})})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)
			racing := &env{t: t, srv: srv}
			r := racing.do("POST", "/streams/contested/events", globexToken, requestedEvent(""), "Expected-Version", expected)
			if r.code != 409 || !strings.Contains(r.body, `"kind":"stream_taken"`) || strings.Contains(r.body, "version") {
				t.Fatalf("globex's append to the stream acme created meanwhile: want 409 stream_taken and no version, got %d %s", r.code, r.body)
			}
			evs, err := e.store.ReadStream(context.Background(), "contested", 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 3 {
				t.Fatalf("contested holds %d events, want acme's 3", len(evs))
			}
		})
	}
}
