package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// lagPoll is how often the bench looks at how far the read model has
// come; a measured lag over-states the true one by up to this much.
const lagPoll = 5 * time.Millisecond

// maxRawConns caps the raw side's connections in project.
const maxRawConns = 64

// catchUpTimeout bounds the wait for a projection to reach the last event
// after the appends stop.
const catchUpTimeout = 2 * time.Minute

// visibility samples, over a run, the highest position visible in a read
// model table, so that each event's lag (append returned → row visible to
// readers) can be computed afterwards.
type visibility struct {
	pool  *pgxpool.Pool
	query string

	mu      sync.Mutex
	samples []visSample
	err     error
}

type visSample struct {
	at  time.Time
	pos int64
}

func newVisibility(pool *pgxpool.Pool, table string) *visibility {
	return &visibility{pool: pool, query: `SELECT coalesce(max(position), 0) FROM ` + pgx.Identifier{table}.Sanitize()}
}

// watch samples until ctx ends.
func (v *visibility) watch(ctx context.Context) {
	t := time.NewTicker(lagPoll)
	defer t.Stop()
	last := int64(-1)
	for {
		var pos int64
		err := v.pool.QueryRow(ctx, v.query).Scan(&pos)
		at := time.Now()
		v.mu.Lock()
		if err != nil && ctx.Err() == nil {
			v.err = err
		}
		if err == nil && pos != last {
			v.samples = append(v.samples, visSample{at: at, pos: pos})
			last = pos
		}
		v.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *visibility) latest() (int64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.samples) == 0 {
		return 0, v.err
	}
	return v.samples[len(v.samples)-1].pos, v.err
}

// waitFor waits until position pos is visible.
func (v *visibility) waitFor(ctx context.Context, pos int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := v.latest()
		if err != nil {
			return fmt.Errorf("bench: watch the read model: %w", err)
		}
		if got >= pos {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the read model reached position %d of %d within %s", got, pos, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lagPoll):
		}
	}
}

// lagProbe opens the visibility sampler of a read model table on a
// connection of its own, open before the clock starts. On the phase's pool
// each sample waited for a connection behind the writers (on the raw side
// 256 of them for 67 connections) once they held them all, and the lag
// counted that wait. Its backend is the run's (application_name), so the
// server CPU meter counts it on both sides, as before.
func (r *run) lagProbe(ctx context.Context, table string) (*visibility, error) {
	pc := r.poolCfg.Copy()
	pc.MinConns, pc.MaxConns = 0, 1
	pc.ConnConfig.RuntimeParams["application_name"] = r.app + ":lag-probe"
	p, err := r.addPool(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := warm(ctx, p, 1); err != nil {
		return nil, err
	}
	return newVisibility(p, table), nil
}

// appended is one append's last position and when it returned.
type appended struct {
	pos  int64
	n    int
	done time.Time
}

// lag computes, for each appended event, the time from its append
// returning to the first sample that shows it visible.
func (v *visibility) lag(apps []appended) *Lag {
	v.mu.Lock()
	samples := slices.Clone(v.samples)
	v.mu.Unlock()
	slices.SortFunc(apps, func(a, b appended) int { return int(a.pos - b.pos) })
	h := newHistogram()
	var maxUs, overRange int64
	i := 0
	for _, a := range apps {
		for i < len(samples) && samples[i].pos < a.pos {
			i++
		}
		if i == len(samples) {
			break // never seen: waitFor has failed the run already
		}
		d := max(samples[i].at.Sub(a.done), 0)
		maxUs = max(maxUs, d.Microseconds())
		us, over := micros(d)
		if over {
			overRange += int64(a.n)
		}
		_ = h.RecordValues(us, int64(a.n))
	}
	return lagOf(h, maxUs, overRange)
}

// readModelCommit is the synchronous_commit our projection runtime commits
// its read model with (projections.Config's default, set here so that the
// raw consumer can match it).
const readModelCommit = "off"

// consumerPool opens the connection of the raw consumer, which commits
// its pages as our runner commits its batches (readModelCommit), as the
// runner's own connections do, by a run-time parameter, with no statement
// more per page. Its application_name keeps it under the server CPU meter.
func (r *run) consumerPool(ctx context.Context) (*pgxpool.Pool, error) {
	pc := r.poolCfg.Copy()
	pc.MaxConns = 1
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = readModelCommit
	pc.ConnConfig.RuntimeParams["application_name"] = r.app + ":raw-consumer"
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bench: open the raw consumer's pool: %w", err)
	}
	r.mu.Lock()
	r.pools = append(r.pools, p)
	r.mu.Unlock()
	return p, nil
}

func (r *run) auditRuntime(pool *pgxpool.Pool, store *postgres.Store) (*projections.Runtime, error) {
	rt, err := projections.New(pool, store, r.reg, projections.Config{Logger: slog.New(slog.DiscardHandler),
		ApplicationName: r.app, SynchronousCommit: readModelCommit}, audit.Projection())
	if err != nil {
		return nil, fmt.Errorf("bench: audit projection: %w", err)
	}
	return rt, nil
}

// projectScenario appends at a fixed rate while the audit projection runs
// live, and measures how long each event takes to reach the read model.
func (r *run) projectScenario(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	rep.Op = "append"
	wl := newWorkload(cfg, cfg.Scenario, r.payloads)
	ops := opsFor(cfg.Events, cfg.EventsPerAppend)
	pace := time.Duration(float64(time.Second) * float64(cfg.EventsPerAppend) / float64(cfg.Rate))

	store, pool, err := r.store(ctx)
	if err != nil {
		return err
	}
	rt, err := r.auditRuntime(pool, store)
	if err != nil {
		return err
	}
	if err := rt.Migrate(ctx); err != nil {
		return fmt.Errorf("bench: migrate the audit projection: %w", err)
	}
	stopRT := background(ctx, func(ctx context.Context) { _ = rt.Run(ctx, audit.Name) })
	defer stopRT()
	vis, err := r.lagProbe(ctx, "audit_events")
	if err != nil {
		return err
	}
	stopVis := background(ctx, vis.watch)
	defer stopVis()

	if err := warm(ctx, pool, int(pool.Config().MaxConns)); err != nil {
		return err
	}
	cl := newClaims(cfg.Writers)
	a := newAppender(store, cfg, cl)
	apps := make([][]appended, cfg.Writers)
	cfg.Logger.Info("bench: our phase", "scenario", cfg.Scenario, "rate", cfg.Rate)
	t, err := r.measured(ctx, pool, "ours", func() (timed, error) {
		return runPhase(ctx, phaseSpec{writers: cfg.Writers, duration: cfg.Duration, ops: ops, pace: pace,
			op: func(ctx context.Context, w int, seq int64) (int, error) {
				b := wl.batch(seq)
				res, err := a.append(ctx, w, &b)
				if err == nil {
					apps[w] = append(apps[w], appended{pos: int64(res.Position().Commit), n: len(res.Events), done: time.Now()})
				}
				return len(res.Events), err
			}})
	})
	rep.Ours = phase(t)
	rep.GroupCommit = groupCommit(store.Stats())
	a.reportConflicts(rep)
	if err != nil {
		return fmt.Errorf("bench: project, our phase: %w", err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("bench: read the head: %w", err)
	}
	if err := vis.waitFor(ctx, int64(head.Commit), catchUpTimeout); err != nil {
		return fmt.Errorf("bench: the audit projection did not catch up: %w", err)
	}
	rep.Lag = vis.lag(slices.Concat(apps...))
	stopVis()
	rep.note("lag: from an append returning to its row being visible in audit_events (sampled every %s)", lagPoll)
	if achieved := rep.Ours.EventsPerSec; achieved < 0.95*float64(cfg.Rate) {
		rep.note("our appends fell behind the asked rate: %.0f of %d events/s", achieved, cfg.Rate)
	}
	if err := r.verifyLog(ctx, rep, pool, cl); err != nil {
		return err
	}
	a.reportLanded(rep)
	if _, err := verifyClaims(ctx, pool, "audit_events", "event_id", cl, false); err != nil {
		return fmt.Errorf("bench: the audit read model does not hold every event once: %w", err)
	}
	stopRT()
	r.release(store, pool)

	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
		return nil
	}
	return r.rawProject(ctx, rep, wl, ops, pace)
}

// rawProject writes the same rows at the same pace into a bare table
// while a bare consumer copies them, page by page, into a table shaped
// like the audit read model, and measures the same lag.
func (r *run) rawProject(ctx context.Context, rep *Report, wl *workload, ops int64, pace time.Duration) error {
	cfg := r.cfg
	// Writers wait for one of at most maxRawConns connections: the server
	// has a connection limit, and the raw side of project is there for the
	// consumer's lag more than for the writes.
	pool, err := r.pool(ctx, min(cfg.Writers, maxRawConns)+3)
	if err != nil {
		return err
	}
	rw, err := newRawWriter(ctx, pool, cfg.Streams)
	if err != nil {
		return err
	}
	if err := r.rawReadModel(ctx, pool, true); err != nil {
		return err
	}
	vis, err := r.lagProbe(ctx, "raw_audit")
	if err != nil {
		return err
	}
	stopVis := background(ctx, vis.watch)
	defer stopVis()
	consumer, err := r.consumerPool(ctx)
	if err != nil {
		return err
	}
	consumerErr := make(chan error, 1)
	stopConsumer := background(ctx, func(ctx context.Context) { consumerErr <- rawConsume(ctx, consumer, 1000, nil) })
	defer stopConsumer()
	stop := func() { stopVis(); stopConsumer() }

	if err := warm(ctx, pool, int(pool.Config().MaxConns)); err != nil {
		return err
	}
	apps := make([][]appended, cfg.Writers)
	rawCl := newClaims(cfg.Writers)
	cfg.Logger.Info("bench: raw phase", "scenario", cfg.Scenario)
	t, err := r.measured(ctx, pool, "raw", func() (timed, error) {
		return runPhase(ctx, phaseSpec{writers: cfg.Writers, duration: cfg.Duration, ops: ops, pace: pace,
			op: func(ctx context.Context, w int, seq int64) (int, error) {
				b := wl.batch(seq)
				rows := rw.rows(&b, b.streamIdx)
				n, err := rw.writeRows(ctx, rows)
				if err == nil {
					apps[w] = append(apps[w], appended{pos: rows[len(rows)-1][0].(int64), n: n, done: time.Now()})
					rawCl.addRows(w, rows)
				}
				return n, err
			}})
	})
	raw := phase(t)
	rep.Raw = &raw
	if err != nil {
		return fmt.Errorf("bench: project, raw phase: %w", err)
	}
	werr := vis.waitFor(ctx, rw.pos.Load(), catchUpTimeout)
	stop()
	if cerr := <-consumerErr; cerr != nil && !errors.Is(cerr, context.Canceled) {
		return fmt.Errorf("bench: raw consumer: %w", cerr)
	}
	if werr != nil {
		return fmt.Errorf("bench: the raw consumer did not catch up: %w", werr)
	}
	rep.RawLag = vis.lag(slices.Concat(apps...))
	if raw.EventsPerSec < 0.95*float64(cfg.Rate) {
		rep.note("raw writes fell behind the asked rate: %.0f of %d events/s", raw.EventsPerSec, cfg.Rate)
	}
	var copied int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM raw_audit`).Scan(&copied); err == nil && copied != raw.Events {
		rep.note("raw consumer copied %d of %d rows: reading a bare table by position skips rows that commit out of order, which our log prevents", copied, raw.Events)
	}
	return verifyRaw(ctx, pool, "raw_events", "id", rawCl, true)
}

// rawReadModel creates raw_audit with the columns and indexes of the audit
// read model (its indexes are the read model's own cost, on both sides),
// and, with indexEvents, indexes raw_events by position, as the consumer
// reads it that way.
func (r *run) rawReadModel(ctx context.Context, pool *pgxpool.Pool, indexEvents bool) error {
	var gen string
	err := pool.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'audit_events' AND c.relkind = 'r' AND starts_with(n.nspname, $1) ORDER BY n.nspname DESC LIMIT 1`,
		r.schema+"__").Scan(&gen)
	if err != nil {
		return fmt.Errorf("bench: find the audit table: %w", err)
	}
	stmts := []string{`CREATE TABLE raw_audit (LIKE ` + pgx.Identifier{gen, "audit_events"}.Sanitize() + ` INCLUDING DEFAULTS INCLUDING INDEXES)`}
	if indexEvents {
		stmts = append(stmts, `CREATE INDEX ON raw_events (position)`)
	}
	for _, sql := range stmts {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("bench: raw read model: %w", err)
		}
	}
	return nil
}

const rawAuditCopy = `SELECT position, position, id, type, stream, version, source, target, tenant_id, correlation_id,
	causation_id, producer, schema_version, "timestamp", payload, meta FROM raw_events WHERE position > $1 ORDER BY position LIMIT $2`

var rawAuditColumns = []string{"position", "prepare_position", "event_id", "type", "stream", "version", "source", "target",
	"tenant_id", "correlation_id", "causation_id", "producer", "schema_version", "occurred_at", "payload", "meta"}

// rawConsume copies raw_events into raw_audit in pages, each page in one
// transaction, until ctx ends (live) or, with until set, until it has
// copied up to *until (replay). onPage, if set, is called after each page.
func rawConsume(ctx context.Context, pool *pgxpool.Pool, page int, until *int64, onPage ...func(n int, d time.Duration)) error {
	var cp int64
	for ctx.Err() == nil {
		if until != nil && cp >= *until {
			return nil
		}
		began := time.Now()
		var n int
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, rawAuditCopy, cp, page)
			if err != nil {
				return err
			}
			vals, err := pgx.CollectRows(rows, scanRawAudit)
			if err != nil {
				return err
			}
			n = len(vals)
			if n == 0 {
				return nil
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"raw_audit"}, rawAuditColumns, pgx.CopyFromRows(vals)); err != nil {
				return err
			}
			cp = vals[n-1][0].(int64)
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if n > 0 {
			for _, f := range onPage {
				f(n, time.Since(began))
			}
			continue
		}
		if until != nil {
			return fmt.Errorf("bench: raw consumer found nothing after position %d, short of %d", cp, *until)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	return ctx.Err()
}

// scanRawAudit reads a row of rawAuditCopy into typed values, as our store
// reads an event, and returns it ready for COPY.
func scanRawAudit(row pgx.CollectableRow) ([]any, error) {
	var (
		pos, prep, version                       int64
		id                                       uuid.UUID
		typ, stream, source, tenant              string
		target, correlation, causation, producer *string
		schemaVersion                            int32
		ts                                       time.Time
		payload, meta                            []byte
	)
	err := row.Scan(&pos, &prep, &id, &typ, &stream, &version, &source, &target, &tenant, &correlation, &causation,
		&producer, &schemaVersion, &ts, &payload, &meta)
	return []any{pos, prep, id, typ, stream, version, source, target, tenant, correlation, causation, producer,
		schemaVersion, ts, payload, meta}, err
}

// background runs fn in a goroutine until the returned stop is called
// (or ctx ends); stop waits for fn to return and may be called again.
func background(ctx context.Context, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	return sync.OnceFunc(func() { cancel(); <-done })
}
