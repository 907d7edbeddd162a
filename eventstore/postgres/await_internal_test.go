package postgres

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// An append whose group committed before the caller's context ended
// returns its result, not the context's error: the events are stored,
// and the caller (and the server's metrics, which count it as written)
// would otherwise be told they may not be. Go's select picks at random
// among ready cases, so the outcome must be looked at first.
func TestAppendCommittedBeforeTheContextEndedReturnsItsResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := eventstore.AppendResult{Stream: "s", Events: []eventstore.Event{{Stream: "s", Version: 1}}}
	for i := range 200 {
		result := make(chan outcome, 1)
		result <- outcome{res: want, wrote: true}
		o := awaitOutcome(ctx, result)
		if o.err != nil || !o.wrote || len(o.res.Events) != 1 {
			t.Fatalf("try %d: outcome %+v; want the committed result, written", i, o)
		}
	}
}
