package cli

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/schemas"
)

// TestCountsWhatAnotherWriterStoredAfterTheHeadAsPresent: two imports (or
// append --file runs) of the same file into one store at once each read
// the head before either writes; one writes the events, and the other's
// appends are idempotent retries that write nothing. Counted by position
// against the head it read, the other took the events, stored above that
// head, for its own writes: both printed "3 written, 0 already present".
// The store tells a write from a retry (eventstore.WriteReporter).
func TestCountsWhatAnotherWriterStoredAfterTheHeadAsPresent(t *testing.T) {
	t.Parallel()
	reg, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, keepVersions := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepVersions=%v", keepVersions), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, err := memory.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			run := make([]eventstore.Event, 3)
			for i := range run {
				run[i] = eventstore.Event{ID: uuid.New(), Type: "course.generation.requested", Stream: "course-1", Source: "test",
					Version: int64(i + 1), Meta: eventstore.Meta{SchemaVersion: 2, TenantID: "acme"},
					Payload: fmt.Appendf(nil, `{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}`, uuid.New())}
			}
			head, err := s.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The other run writes the events after this one read the head.
			var a app
			if w, pr, err := a.appendRun(ctx, s, run, head, keepVersions); err != nil || w != 3 || pr != 0 {
				t.Fatalf("the first run: %d written, %d present (%v), want 3 written", w, pr, err)
			}
			w, pr, err := a.appendRun(ctx, s, run, head, keepVersions)
			if err != nil {
				t.Fatal(err)
			}
			if w != 0 || pr != 3 {
				t.Errorf("the run that wrote nothing counts %d written, %d already present; want 0 written, 3 already present", w, pr)
			}
		})
	}
}
