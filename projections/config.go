package projections

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
)

// Config tunes a Runtime. The zero value is sensible.
type Config struct {
	// BatchSize bounds how many events one transaction applies (default
	// 1,000). Larger batches raise catch-up throughput and the work lost
	// when a batch fails.
	BatchSize int

	// Retry says how often a failing event is tried again before it is
	// parked (or the projection stopped).
	Retry RetryPolicy

	// LockPollInterval is how often a runtime that does not hold a
	// projection tries to take it over (default 1s). A holder that dies
	// is replaced within about this interval once PostgreSQL has noticed
	// its session is gone.
	LockPollInterval time.Duration

	// HeartbeatInterval is how often an idle holder checks its connection
	// and the projection's state, and writes a checkpoint that only moved
	// past events it does not handle (default 2s).
	HeartbeatInterval time.Duration

	// CheckpointInterval bounds how often a batch with no handled event
	// writes the checkpoint (default 1s). Such events have no effect, so
	// seeing them again after a crash is harmless.
	CheckpointInterval time.Duration

	// SynchronousCommit is the synchronous_commit setting of the
	// runners' transactions (default "off"). Off is safe here: a batch's
	// read-model writes and its checkpoint commit together, so a crash
	// that loses the last commits loses both, and the runner applies those
	// events again from the log, whose own durability is untouched. It
	// saves a WAL flush per batch. Set "on" to have a read model survive
	// a crash exactly as acknowledged.
	SynchronousCommit string

	// MetricsInterval is how often Run (or Monitor) refreshes the lag
	// gauges (default 1s).
	MetricsInterval time.Duration

	// Upcast, if set, brings an event to the schema version a projection
	// declares before the handler sees it; (*aggregates.Registry).Upcast
	// fits. An event of a handled type whose schema version the projection
	// does not declare, after upcasting, is treated as a failing event.
	Upcast func(eventstore.Event) (eventstore.Event, error)

	// OnPublish, if set, runs inside the transaction that exposes a
	// generation's tables to readers (its first install, every Migrate,
	// and the swap after a rebuild), after the views point at them: the
	// place to grant roles USAGE on the new schema and SELECT on its
	// tables, or to enable row-level security on them, so that readers
	// keep their access across a rebuild. An error aborts the swap.
	OnPublish func(ctx context.Context, tx pgx.Tx, p Publication) error

	// Registerer receives the runtime's Prometheus metrics. Nil: no
	// metrics are registered.
	Registerer prometheus.Registerer

	// Logger receives the runtime's logs (default slog.Default()).
	Logger *slog.Logger

	// ApplicationName prefixes the application_name of the runtime's
	// connections, followed by ":" and the projection (default
	// "eventstream-projection").
	ApplicationName string
}

// RetryPolicy bounds how a failing event is retried: the first try, then
// up to MaxAttempts-1 more, waiting InitialBackoff, then that times
// Multiplier each time, never more than MaxBackoff, with up to Jitter of
// random spread. Connection failures are not counted: they restart the
// projection's session from its checkpoint instead, up to MaxSessionBreaks
// times in a row at one event.
type RetryPolicy struct {
	// MaxAttempts is how many times an event is tried before it is parked
	// (default 5; 1 parks on the first failure).
	MaxAttempts int
	// MaxSessionBreaks is how many times in a row the projection's
	// session may break (its connection lost or closed by the server, a
	// commit of unknown outcome) while one event is being applied before
	// that event is parked, or the projection stopped, like an event that
	// failed all its attempts (default 10). Such breaks are not attempts,
	// so that a database restart or a flaky network parks nothing; the
	// bound is for an event whose handling makes the server drop the
	// connection (a backend crash, a statement or idle timeout that
	// terminates the session), which would otherwise be met again after
	// every restart, for ever. A handler's own failure is an attempt even
	// when it leaves the connection closed. Breaks while idle or while
	// reading the log are not counted, and an event applied after a break
	// starts the count again. With a network that breaks a fraction p of
	// the runner's transactions, an innocent event is given up with
	// probability about p^MaxSessionBreaks per break; 1 gives an event up
	// on the first break, which a database restart can also cause.
	MaxSessionBreaks int
	// InitialBackoff is the first wait (default 100ms).
	InitialBackoff time.Duration
	// MaxBackoff caps one wait (default 5s).
	MaxBackoff time.Duration
	// Multiplier grows the wait (default 2).
	Multiplier float64
	// Jitter is the fraction of random spread added to each wait, from 0
	// (none, the default) to 1.
	Jitter float64
}

func (c Config) withDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.LockPollInterval <= 0 {
		c.LockPollInterval = time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.MetricsInterval <= 0 {
		c.MetricsInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SynchronousCommit == "" {
		c.SynchronousCommit = "off"
	}
	if c.ApplicationName == "" {
		c.ApplicationName = "eventstream-projection"
	}
	c.Retry = c.Retry.withDefaults()
	return c
}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 5
	}
	if r.MaxSessionBreaks <= 0 {
		r.MaxSessionBreaks = 10
	}
	if r.InitialBackoff <= 0 {
		r.InitialBackoff = 100 * time.Millisecond
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 5 * time.Second
	}
	if r.MaxBackoff < r.InitialBackoff {
		r.MaxBackoff = r.InitialBackoff
	}
	if r.Multiplier < 1 {
		r.Multiplier = 2
	}
	r.Jitter = min(max(r.Jitter, 0), 1)
	return r
}

// Backoff returns the wait after the given failed attempt (1 = the first).
func (r RetryPolicy) Backoff(attempt int) time.Duration {
	r = r.withDefaults()
	d := float64(r.InitialBackoff)
	for i := 1; i < attempt && d < float64(r.MaxBackoff); i++ {
		d *= r.Multiplier
	}
	d = min(d, float64(r.MaxBackoff))
	if r.Jitter > 0 {
		d += d * r.Jitter * rand.Float64()
	}
	return time.Duration(d)
}

// Publication is what OnPublish is told: the generation whose tables the
// views in Home now show.
type Publication struct {
	Projection string
	Generation int
	Schema     string   // the generation's schema
	Home       string   // the runtime's schema, where the views are
	Tables     []string // the generation's tables, each a view of the same name in Home
}
