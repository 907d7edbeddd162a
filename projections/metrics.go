package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// staleSnapshots is how many MetricsIntervals the lag snapshot may go
// without a refresh before the gauges read from it are left out. A
// measure may take up to 5 intervals (monitor's timeout), so a slow one
// does not drop them.
const staleSnapshots = 10

// metrics exports the runtime's lag and counters to Prometheus. Gauges
// come from the last Lag snapshot taken by Run's monitor; counters are
// read from the runners' stats when scraped.
type metrics struct {
	rt *Runtime

	batch *prometheus.HistogramVec

	mu     sync.Mutex
	last   []Lag
	lastAt time.Time // when last was measured
	// staleAfter is how old last may get before the gauges it feeds are
	// left out: a snapshot the monitor can no longer refresh (the
	// database or the log unreachable, Run returned) would go on
	// reporting, say, no lag while the projection falls behind.
	staleAfter time.Duration

	position, head, lagEvents, lagSeconds, rate, parked, running, held, stopped *prometheus.Desc
	consumed, handled, errors                                                   *prometheus.Desc
}

func newMetrics(rt *Runtime, reg prometheus.Registerer) (*metrics, error) {
	l := []string{"projection"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("eventstream_projection_"+name, help, labels, nil)
	}
	m := &metrics{
		rt:         rt,
		staleAfter: staleSnapshots * rt.cfg.MetricsInterval,
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventstream_projection_batch_seconds",
			Help:    "Time to apply and commit one batch of events, checkpoint included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, l),
		position:   d("position", "Commit position of the last event the projection has applied or passed.", l),
		head:       d("head_position", "Commit position of the last event in the log.", l),
		lagEvents:  d("lag_events", "Events in the log after the projection's position.", l),
		lagSeconds: d("lag_seconds", "Age of the oldest event the projection has not applied yet.", l),
		rate:       d("events_per_second", "Events per second passed by the projection in this process.", l),
		parked:     d("parked_events", "Events of the active generation parked in the dead-letter table.", l),
		running:    d("running", "1 when this process runs the projection.", l),
		held:       d("held", "1 when some process runs the projection.", l),
		stopped:    d("stopped", "1 when the projection stopped on an error and waits for Resume.", l),
		consumed:   d("events_total", "Events passed by the projection in this process (applied or without effect).", l),
		handled:    d("handled_events_total", "Events applied by the projection's handler in this process.", l),
		errors:     d("errors_total", "Failed attempts to apply a batch or an event in this process.", l),
	}
	if err := reg.Register(m.batch); err != nil {
		return nil, fmt.Errorf("projections: register metrics: %w", err)
	}
	if err := reg.Register(m); err != nil {
		reg.Unregister(m.batch)
		return nil, fmt.Errorf("projections: register metrics: %w", err)
	}
	for name, st := range rt.stats {
		st.batchObs = m.batch.WithLabelValues(name)
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.position, m.head, m.lagEvents, m.lagSeconds, m.rate, m.parked, m.running, m.held, m.stopped, m.consumed, m.handled, m.errors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	last := m.last
	if time.Since(m.lastAt) > m.staleAfter {
		last = nil
	}
	m.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, l := range last {
		gauge(m.position, float64(l.Position.Commit), l.Projection)
		gauge(m.head, float64(l.Head.Commit), l.Projection)
		gauge(m.lagEvents, float64(l.LagEvents), l.Projection)
		gauge(m.lagSeconds, l.LagSeconds, l.Projection)
		gauge(m.rate, l.EventsPerSecond, l.Projection)
		gauge(m.parked, float64(l.Parked), l.Projection)
		gauge(m.held, b(l.Held), l.Projection)
		gauge(m.stopped, b(l.Stopped), l.Projection)
	}
	for _, p := range m.rt.list {
		st := m.rt.stats[p.Name]
		st.mu.Lock()
		running := st.running
		st.mu.Unlock()
		gauge(m.running, b(running), p.Name)
		ch <- prometheus.MustNewConstMetric(m.consumed, prometheus.CounterValue, float64(st.consumed.Load()), p.Name)
		ch <- prometheus.MustNewConstMetric(m.handled, prometheus.CounterValue, float64(st.handled.Load()), p.Name)
		ch <- prometheus.MustNewConstMetric(m.errors, prometheus.CounterValue, float64(st.errors.Load()), p.Name)
	}
}

// Monitor keeps the gauges read from the database (position, head, lag,
// events/s, parked, held, stopped) up to date, every MetricsInterval,
// until ctx ends, without running any projection: for a process that
// exports the metrics of projections other processes run (serve
// --no-projections), whose checkpoints and locks are in the database.
// Run does the same itself: call Monitor only on a runtime whose Run is
// not called. Without Config.Registerer it returns nil at once.
//
// Like Run, it first checks that the runtime and every projection are
// migrated and returns ErrNotMigrated at once when not (it used to log a
// warning every interval for ever); while the database cannot answer
// that, it logs a warning and asks again every MetricsInterval. It
// returns nil when ctx ends.
func (r *Runtime) Monitor(ctx context.Context) error {
	if r.m == nil {
		return nil
	}
	for {
		err := r.checkMigrated(ctx, r.list)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNotMigrated) {
			return err
		}
		r.log.Warn("projections: check migrations before measuring lag", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.MetricsInterval):
		}
	}
	r.monitor(ctx)
	return nil
}

// monitor refreshes the lag snapshot the gauges report until ctx ends.
func (r *Runtime) monitor(ctx context.Context) {
	t := time.NewTicker(r.cfg.MetricsInterval)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, r.cfg.MetricsInterval*5)
		lag, err := r.Lag(lctx)
		cancel()
		if err == nil {
			r.m.mu.Lock()
			r.m.last, r.m.lastAt = lag, time.Now()
			r.m.mu.Unlock()
		} else if ctx.Err() == nil {
			r.log.Warn("projections: measure lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
