package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/projections/audit"
)

// headFailingStore is a log whose Head fails while fail is set, as when
// the log cannot be reached: the lag cannot be measured.
type headFailingStore struct {
	*postgres.Store
	fail atomic.Bool
}

func (s *headFailingStore) Head(ctx context.Context) (eventstore.Position, error) {
	if s.fail.Load() {
		return eventstore.Position{}, errors.New("the log cannot be reached")
	}
	return s.Store.Head(ctx)
}

// TestLagGaugesAreLeftOutWhileTheLagCannotBeMeasured: while the lag
// cannot be measured, the gauges read from the last measure (lag,
// position, head, parked, held, stopped) are left out once it is 10
// intervals old, rather than go on reporting the last figures (no lag)
// as current while the projection falls behind; they come back with the
// next measure. Before, the last snapshot was exported for ever.
func TestLagGaugesAreLeftOutWhileTheLagCannotBeMeasured(t *testing.T) {
	t.Parallel()
	store := &headFailingStore{Store: logStore(t)}
	fill(t, store.Store, 20, 5)
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.Registerer = reg
	rt := newRuntime(t, database(t), store, cfg, audit.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)

	gauges := func() (lag, held float64, ok bool, running float64) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		lag, ok1 := metricValue(families, "eventstream_projection_lag_seconds", "audit")
		held, ok2 := metricValue(families, "eventstream_projection_held", "audit")
		running, _ = metricValue(families, "eventstream_projection_running", "audit")
		return lag, held, ok1 && ok2, running
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}
	wait("the lag gauges", func() bool { _, held, ok, _ := gauges(); return ok && held == 1 })

	store.fail.Store(true)
	time.Sleep(15 * cfg.MetricsInterval)
	if lag, held, ok, running := gauges(); ok {
		t.Fatalf("the lag has not been measured for 15 intervals, yet the gauges report lag %vs, held %v", lag, held)
	} else if running != 1 {
		t.Fatalf("running is this process's own figure and stays: %v", running)
	}

	store.fail.Store(false)
	wait("the lag gauges back", func() bool { _, _, ok, _ := gauges(); return ok })
}
