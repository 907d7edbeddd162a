package bench

import (
	"context"
	"testing"
)

// replay's latency is per batch applied, and its ops/s batches per second:
// the rebuild ends on an empty page (the end of the log), whose Progress
// carried no event, and which our side counted as a batch with its own
// latency while the raw consumer, which stops at the last row, counted
// none. At 2,000 events both sides apply two pages of 1,000.
func TestReplayCountsOnlyBatchesWithEvents(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("replay"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if got, want := rep.Ours.Ops, rep.Raw.Ops; got != want || want != 2 {
		t.Errorf("our rebuild counted %d batches, the raw consumer %d, want 2 each (2,000 events in pages of 1,000)", got, want)
	}
}
