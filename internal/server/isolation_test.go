package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/server"
)

// TestDuplicateIDDoesNotNameAnotherTenantsStream: an id already stored by
// another tenant is refused (409, nothing written), and the refusal does not
// tell the caller which stream of that tenant holds it.
func TestDuplicateIDDoesNotNameAnotherTenantsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	id := uuid.NewString()
	ev := func() string {
		return fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}}`, id, uuid.New())
	}
	e.must(201, "POST", "/streams/acme-merger-plans/events", acmeToken, ev())
	r := e.must(409, "POST", "/streams/globex-1/events", globexToken, ev())
	if !strings.Contains(r.body, `"kind":"duplicate"`) || strings.Contains(r.body, "acme-merger-plans") {
		t.Fatalf("duplicate id of another tenant: %s", r.body)
	}
	if n := e.logSize(); n != 1 {
		t.Fatalf("the log has %d events, want 1", n)
	}
	// The operator is told where it is.
	if r := e.must(409, "POST", "/streams/ops-1/events", operatorToken, strings.Replace(ev(), `}}`, `},"meta":{"tenant_id":"acme"}}`, 1)); !strings.Contains(r.body, "acme-merger-plans") {
		t.Fatalf("the operator's 409 does not name the stream: %s", r.body)
	}
}

// racingStore lets another tenant create a stream right after the server
// found it empty, before the server appends: the interleaving of two
// requests that check ownership at the same moment.
type racingStore struct {
	eventstore.Store
	stream string
	create func()
	once   sync.Once
}

func (s *racingStore) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadStream(ctx, stream, from, limit)
	if stream == s.stream && errors.Is(err, eventstore.ErrStreamNotFound) {
		s.once.Do(s.create)
	}
	return evs, err
}

// TestAppendExpectingAStreamNeverLandsInAnotherTenants: globex appends with
// an expected version that needs the stream to exist ("exists", or a
// version) to a stream that is empty when its ownership is checked; acme
// creates it before globex's append. Globex's events must not land in
// acme's stream.
func TestAppendExpectingAStreamNeverLandsInAnotherTenants(t *testing.T) {
	t.Parallel()
	for _, expected := range []string{"exists", "1"} {
		t.Run(expected, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, server.Limits{})
			rs := &racingStore{Store: e.store, stream: "contested"}
			rs.create = func() {
				ev := eventstore.Event{ID: eventstore.NewID(), Type: "course.generation.requested", Source: "test",
					Payload: json.RawMessage(fmt.Sprintf(`{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}`, uuid.New())),
					Meta:    eventstore.Meta{SchemaVersion: 2, TenantID: "acme"}}
				if _, err := e.store.Append(context.Background(), "contested", eventstore.NoStream, ev); err != nil {
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
			if r.code != 409 && r.code != 404 {
				t.Errorf("globex's append: %d %s, want 409 (the stream did not exist when checked) or 404", r.code, r.body)
			}
			evs, err := e.store.ReadStream(context.Background(), "contested", 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Meta.TenantID != "acme" {
					t.Fatalf("acme's stream holds an event of %s", ev.Meta.TenantID)
				}
			}
		})
	}
}
