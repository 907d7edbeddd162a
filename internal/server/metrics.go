package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// Metrics are the server's and the log's Prometheus metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	appends       *prometheus.CounterVec
	events        *prometheus.CounterVec
	appendLatency prometheus.Histogram
	refusals      *prometheus.CounterVec
	conflicts     prometheus.Counter
	subscriptions prometheus.Gauge
	reg           *schemas.Registry

	// unreported are the instrumented stores that count the writes no
	// append call reported (see unreportingStore), summed by
	// eventstream_events_unreported_total.
	unreportedMu sync.Mutex
	unreported   []unreportingStore
}

// unreportingStore is a store that counts the events it wrote for appends
// whose caller had stopped waiting (its context ended) before they
// committed: the call returned the context's error, so the metrics counted
// it as an error, and an idempotent retry of it counts as a retry. The
// PostgreSQL store is one.
type unreportingStore interface {
	UnreportedEvents() uint64
}

// NewMetrics registers the metrics on r. reg bounds the "type" label to
// known event types (others are counted as "unknown").
func NewMetrics(r prometheus.Registerer, reg *schemas.Registry) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventstream_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventstream_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventstream_appends_total", Help: "Append calls to the log by outcome (ok: written, retry: an idempotent retry that wrote nothing, invalid, conflict, duplicate, error).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventstream_events_total", Help: "Events in append calls by event type and outcome (ok: written, retry: already stored, not written again).",
		}, []string{"type", "outcome"}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventstream_append_duration_seconds", Help: "Latency of append calls to the log, validation included.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventstream_validation_refusals_total", Help: "Appends refused by validation, by event type and broken rule.",
		}, []string{"type", "rule"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventstream_concurrency_conflicts_total", Help: "Appends refused because the stream was not at the expected version.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventstream_subscriptions", Help: "Live subscriptions to the log open in this process (projections included).",
		}),
	}
	unreported := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "eventstream_events_unreported_total",
		Help: "Events written by appends whose caller had stopped waiting (its context ended) before they committed: no append call reported them written (they count as error, and a retry of them as retry, in eventstream_events_total). Written events are those of outcome ok plus these.",
	}, m.unreportedEvents)
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.appends, m.events, m.appendLatency, m.refusals, m.conflicts, m.subscriptions, unreported} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// refusedBeforeAppend counts in eventstream_validation_refusals_total an
// append request the API refused itself, before any append call (a batch
// over --max-batch, malformed JSON, an unknown or reserved key, a bad
// expected version or stream id): refused by validation like the store's
// refusals, with a rule, answered as one, but never seen by the
// instrumented store. events are the request's decoded events, if any,
// for the type of the event the refusal names. Other errors (a body too
// large, a client gone) are no validation refusal and are not counted.
func (m *Metrics) refusedBeforeAppend(err error, events []eventIn) {
	if m == nil {
		return
	}
	var ve *eventstore.ValidationError
	var je *eventstore.JSONError
	var typ, rule string
	switch {
	case errors.As(err, &ve):
		typ, rule = ve.Type, ve.Rule
		if typ == "" && ve.Index >= 0 && ve.Index < len(events) {
			typ = events[ve.Index].Type
		}
	case errors.As(err, &je):
		rule = je.Rule
	default:
		return
	}
	if rule == "" {
		rule = "other"
	}
	m.refusals.WithLabelValues(m.typeLabel(typ), rule).Inc()
}

func (m *Metrics) typeLabel(t string) string {
	if m.reg != nil && m.reg.Latest(t) > 0 {
		return t
	}
	return "unknown"
}

// InstrumentStore returns s with its appends and subscriptions counted.
// Use the result for everything that writes (the API, the reactions), so
// the metrics see every append of the process.
func (m *Metrics) InstrumentStore(s eventstore.Store) eventstore.Store {
	if u, ok := s.(unreportingStore); ok {
		m.unreportedMu.Lock()
		m.unreported = append(m.unreported, u)
		m.unreportedMu.Unlock()
	}
	return &instrumented{Store: s, m: m}
}

func (m *Metrics) unreportedEvents() float64 {
	m.unreportedMu.Lock()
	defer m.unreportedMu.Unlock()
	var n uint64
	for _, u := range m.unreported {
		n += u.UnreportedEvents()
	}
	return float64(n)
}

type instrumented struct {
	eventstore.Store
	m *Metrics
}

func (s *instrumented) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	start := time.Now()
	var res eventstore.AppendResult
	var err error
	wrote := true // a store that cannot tell has its successes counted as writes
	if wr, ok := s.Store.(eventstore.WriteReporter); ok {
		res, wrote, err = wr.AppendReporting(ctx, stream, expected, events...)
	} else {
		res, err = s.Store.Append(ctx, stream, expected, events...)
	}
	s.m.appendLatency.Observe(time.Since(start).Seconds())
	outcome := "ok"
	var ve *eventstore.ValidationError
	switch {
	case err == nil && !wrote:
		// An idempotent retry: the original result, nothing written.
		outcome = "retry"
	case err == nil:
	case errors.As(err, &ve):
		outcome = "invalid"
		typ := ve.Type
		if typ == "" && ve.Index >= 0 && ve.Index < len(events) {
			typ = events[ve.Index].Type
		}
		rule := ve.Rule
		if rule == "" {
			rule = "other"
		}
		s.m.refusals.WithLabelValues(s.m.typeLabel(typ), rule).Inc()
	case errors.Is(err, eventstore.ErrConcurrency):
		outcome = "conflict"
		s.m.conflicts.Inc()
	case errors.Is(err, eventstore.ErrDuplicateEvent):
		outcome = "duplicate"
	default:
		outcome = "error"
	}
	s.m.appends.WithLabelValues(outcome).Inc()
	for _, e := range events {
		s.m.events.WithLabelValues(s.m.typeLabel(e.Type), outcome).Inc()
	}
	return res, err
}

func (s *instrumented) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	sub, err := s.Store.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.m.subscriptions.Inc()
	return &countedSub{Subscription: sub, g: s.m.subscriptions}, nil
}

type countedSub struct {
	eventstore.Subscription
	g    prometheus.Gauge
	once sync.Once
}

func (c *countedSub) Close() error {
	c.once.Do(c.g.Dec)
	return c.Subscription.Close()
}
