package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// TestRebuildMaxRateHoldsWithinAPage: MaxEventsPerSecond (replay and
// backfill --max-rate, "at most N events per second") was applied between
// pages only, so a page of up to BatchSize events went out at full speed,
// and a log of one page was not paced at all. At 100 events/s a page of
// 300 now goes in slices of at most 10 events (0.1 s of the rate), with a
// wait before each one after the first. The pacing's clock is a fake one
// that moves only when waited on: the test counts waits, it times nothing.
func TestRebuildMaxRateHoldsWithinAPage(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 300, 25)
	pool := database(t)
	cfg := fastConfig()
	cfg.BatchSize = 1000 // the whole log is one page
	rt := newRuntime(t, pool, store, cfg, audit.Projection())
	clock := time.Unix(1_000_000, 0)
	var waits int
	var waited time.Duration
	projections.SetPaceClock(rt, func() time.Time { return clock }, func(ctx context.Context, d time.Duration) bool {
		waits++
		waited += d
		clock = clock.Add(d)
		return ctx.Err() == nil
	})
	var slices []int64
	var last int64
	res, err := rt.Rebuild(context.Background(), audit.Name, projections.RebuildOptions{
		MaxEventsPerSecond: 100,
		Progress: func(p projections.RebuildProgress) {
			slices = append(slices, p.Events-last)
			last = p.Events
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 300 {
		t.Fatalf("rebuild read %d events, want 300", res.Events)
	}
	for i, n := range slices {
		if n > 10 {
			t.Fatalf("slice %d applied %d events at once, above 10 (0.1 s at 100 events/s): %v", i, n, slices)
		}
	}
	// 300 events at 100/s with a first slice of 10 free: 29 waits, 2.9 s.
	if waits != 29 || waited < 2900*time.Millisecond-time.Microsecond || waited > 2900*time.Millisecond+time.Microsecond {
		t.Fatalf("the rebuild waited %d times, %v in all; want 29 waits, 2.9 s (slices %v)", waits, waited, slices)
	}
}
