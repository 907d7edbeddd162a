package memory_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/schemas"
)

// AppendReporting (eventstore.WriteReporter) tells an append that wrote
// from an idempotent retry, which wrote nothing and got the original
// result: the server's metrics count written events by it.
func TestAppendReportingTellsRetriesFromWrites(t *testing.T) {
	s, err := memory.New(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ev := eventstore.Event{ID: uuid.New(), Type: "course.generation.requested", Source: "tests",
		Payload: json.RawMessage(`{"course_id":"` + uuid.NewString() + `","topic":"Go","attempt":1}`),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme"}}
	first, wrote, err := s.AppendReporting(ctx, "s", eventstore.NoStream, ev)
	if err != nil || !wrote {
		t.Fatalf("first append: wrote %v, err %v; want written", wrote, err)
	}
	again, wrote, err := s.AppendReporting(ctx, "s", eventstore.NoStream, ev)
	if err != nil || wrote || again.Position() != first.Position() {
		t.Fatalf("retry: wrote %v, err %v, at %v; want the original result at %v, not written", wrote, err, again.Position(), first.Position())
	}
	other := ev
	other.ID = uuid.New()
	if _, wrote, err := s.AppendReporting(ctx, "s", eventstore.NoStream, other); err == nil || wrote {
		t.Fatalf("a conflicting append: wrote %v, err %v; want a conflict, not written", wrote, err)
	}
}
