package projections_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
)

// metricValue finds a metric of the family by its projection label.
func metricValue(families []*dto.MetricFamily, name, projection string) (float64, bool) {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" && l.GetValue() == projection {
					switch {
					case m.Gauge != nil:
						return m.GetGauge().GetValue(), true
					case m.Counter != nil:
						return m.GetCounter().GetValue(), true
					case m.Histogram != nil:
						return float64(m.GetHistogram().GetSampleCount()), true
					}
				}
			}
		}
	}
	return 0, false
}

func TestPrometheusMetrics(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 500, 50)
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.Registerer = reg
	pool := database(t)
	rt := newRuntime(t, pool, store, cfg, audit.Projection(), analytics.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)
	head := float64(headOf(t, store).Commit)

	deadline := time.Now().Add(10 * time.Second)
	for {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		pos, ok1 := metricValue(families, "eventstream_projection_position", "audit")
		lag, ok2 := metricValue(families, "eventstream_projection_lag_events", "audit")
		total, _ := metricValue(families, "eventstream_projection_events_total", "audit")
		running, _ := metricValue(families, "eventstream_projection_running", "analytics")
		batches, _ := metricValue(families, "eventstream_projection_batch_seconds", "audit")
		_, ok3 := metricValue(families, "eventstream_projection_parked_events", "analytics")
		_, ok4 := metricValue(families, "eventstream_projection_lag_seconds", "analytics")
		if ok1 && ok2 && ok3 && ok4 && pos == head && lag == 0 && total == 500 && running == 1 && batches >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: position %v (head %v) lag %v total %v running %v batches %v", pos, head, lag, total, running, batches)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The metrics go to the registry given, and only once.
	if _, err := projections.New(pool, store, registry(t), cfg, audit.Projection()); err == nil {
		t.Fatal("a second runtime registered the same metrics on the same registry")
	}
}
