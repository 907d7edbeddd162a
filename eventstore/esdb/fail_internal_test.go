package esdb

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// A subscription's drop reaches the backend as the bare gRPC status, with
// none of the client's classification. EventStoreDB ends a subscription so
// when its node stops being the leader (NotFound "Leader info available"),
// knows of no leader during an election (Unknown "No leader info available
// in response"), is not ready or too busy (Unavailable), or times a read
// out (Aborted): each is an outage to wait out (RpcExceptions in
// EventStoreDB's source). A stream that is not found is not.
func TestUnavailableReadsEventStoreDBsBareStatuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.NotFound, "Leader info available"), true},
		{status.Error(codes.Unknown, "No leader info available in response"), true},
		{status.Error(codes.Unavailable, "Server Is Not Ready"), true},
		{status.Error(codes.Aborted, "Operation timed out: read"), true},
		{status.Error(codes.NotFound, "Event stream 's' is not found."), false},
		{status.Error(codes.Unknown, "Unexpected ReadAllResult: Error"), false},
	} {
		wrapped := fmt.Errorf("esdb: subscription to $all dropped by the server: %w", c.err)
		if got := errors.Is(unavailable(wrapped), eventstore.ErrUnavailable); got != c.want {
			t.Errorf("%v: ErrUnavailable %v, want %v", c.err, got, c.want)
		}
	}
}

// EventStoreDB refuses a $all position inside a record with "Trying to
// read from an invalid position": gRPC Unknown in 23.10, InvalidArgument
// from 24.x on (RpcExceptions.InvalidPositionException). Only Unknown was
// recognized, so on 24.10 (the version the compose file runs) a
// subscription from such a position reported a transient drop on every
// Next, forever, and ReadAll a generic error instead of one naming the
// position. The stand-in answers as 24.x does; 23.10's answer is checked
// here.
func TestInvalidPositionInEveryServerVersion(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unknown, "Trying to read from an invalid position."), true},
		{status.Error(codes.InvalidArgument, "Trying to read from an invalid position."), true},
		{status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded."), false},
		{status.Error(codes.Unavailable, "Server Is Not Ready"), false},
	} {
		if got := invalidPosition(fmt.Errorf("subscription dropped: %w", c.err)); got != c.want {
			t.Errorf("%v: invalid position %v, want %v", c.err, got, c.want)
		}
	}
}
