package cli

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// TestDuplicateKindFollowsTheError: every error that is
// eventstore.ErrDuplicateEvent exits 4 and is reported as kind
// "duplicate", not only a *DuplicateEventError: an aggregate's reused
// command id (aggregates.CommandReusedError, which is ErrDuplicateEvent
// and names no event id) exited 4 too, but was reported as kind
// "concurrency", a wrong expected version it is not.
func TestDuplicateKindFollowsTheError(t *testing.T) {
	for _, tc := range []struct {
		err              error
		kind, stream, id string
	}{
		{fmt.Errorf("append: %w", &eventstore.DuplicateEventError{ID: "e1", Stream: "s1"}), "duplicate", "s1", "e1"},
		{fmt.Errorf("demo: %w", &aggregates.CommandReusedError{Aggregate: "course", ID: "c1", CommandID: uuid.New()}), "duplicate", "", ""},
		{&eventstore.ConcurrencyError{Stream: "s2", Expected: eventstore.Exact(1), Actual: 2}, "concurrency", "s2", ""},
	} {
		r := reportOf(tc.err)
		if r.Code != ExitConflict || r.Kind != tc.kind || r.Stream != tc.stream || r.ID != tc.id {
			t.Errorf("%v: want code %d, kind %q, stream %q, id %q; got %+v", tc.err, ExitConflict, tc.kind, tc.stream, tc.id, r)
		}
	}
}
