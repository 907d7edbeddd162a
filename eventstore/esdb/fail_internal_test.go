package esdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
)

// passedDeadline is a caller's context whose deadline has passed but whose
// own timer has not fired yet: the moment in which the client's timer for
// the same deadline can already have failed the call.
type passedDeadline struct{ context.Context }

func (passedDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (passedDeadline) Err() error                  { return nil }

// A client DeadlineExceeded that comes from the caller's own deadline is
// the caller's context error, never an outage, even when the client's
// timer fires before the context's (TestStandIn_AppendWaitsAsLongAsTheCallerAllows
// failed so, now and then, on a loaded machine). With a deadline still
// ahead (the client's own default deadline), it is an outage.
func TestFailTellsTheCallersDeadlineFromAnOutage(t *testing.T) {
	t.Parallel()
	s := &Store{life: context.Background()}
	err := s.fail(passedDeadline{context.Background()}, "append to \"slow\"", errors.New("rpc error: code = DeadlineExceeded"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("a call past the caller's deadline: %v, want context.DeadlineExceeded only", err)
	}
	ahead, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	err = s.fail(ahead, "append to \"slow\"", errors.New("rpc error: code = DeadlineExceeded"))
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call whose caller's deadline is an hour away: %v, want the client's error, not the caller's deadline", err)
	}
}
