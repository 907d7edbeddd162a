package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// longStream is the stream read fills with StreamEvents events.
const longStream = "read-long"

// loadPlan says how the log is filled before replay and read measure:
// appends of EventsPerAppend events, the first longOps of them to one long
// stream, the others each to a new stream.
type loadPlan struct {
	wl      *workload
	ops     int64
	longOps int64
}

func (r *run) loadPlan(longEvents int) loadPlan {
	cfg := r.cfg
	cfg.Streams = 0
	return loadPlan{wl: newWorkload(cfg, cfg.Scenario, r.payloads), ops: opsFor(cfg.LogEvents, cfg.EventsPerAppend),
		longOps: opsFor(longEvents, cfg.EventsPerAppend)}
}

func (p loadPlan) batch(seq int64) batch {
	b := p.wl.batch(seq)
	if seq < p.longOps {
		b.stream = longStream
	}
	return b
}

// loadLog fills our log through the store (validated, group-committed) and
// verifies it.
func (r *run) loadLog(ctx context.Context, rep *Report, store *postgres.Store, pool *pgxpool.Pool, plan loadPlan) (*claims, error) {
	cfg := r.cfg
	cl := newClaims(cfg.Writers)
	cfg.Logger.Info("bench: loading the log", "scenario", cfg.Scenario, "events", cfg.LogEvents)
	t, err := runPhase(ctx, phaseSpec{writers: cfg.Writers, ops: plan.ops,
		op: func(ctx context.Context, w int, seq int64) (int, error) {
			b := plan.batch(seq)
			expected := eventstore.NoStream
			if seq < plan.longOps {
				expected = eventstore.Any
			}
			res, err := store.Append(ctx, b.stream, expected, b.events...)
			if err != nil {
				return 0, fmt.Errorf("bench: load: append to %s: %w", b.stream, err)
			}
			cl.add(w, b.stream, res.Events)
			return len(res.Events), nil
		}})
	if err != nil {
		return nil, err
	}
	rep.LoadedEvents = t.rec.events
	rep.LoadEventsPerSec = round(float64(t.rec.events)/t.elapsed.Seconds(), 1)
	if err := r.verifyLog(ctx, rep, pool, cl); err != nil {
		return nil, err
	}
	// Freshly written rows cost their first reader the hint-bit writes;
	// both logs (ours here, raw_events in loadRaw) are vacuumed before
	// they are read, so that neither side pays it.
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		return nil, fmt.Errorf("bench: vacuum events: %w", err)
	}
	return cl, nil
}

// loadRaw fills raw_events with the same rows, by COPY, indexed as our log
// is for reading (by position, and by stream and version).
func (r *run) loadRaw(ctx context.Context, pool *pgxpool.Pool, plan loadPlan) (int64, error) {
	if _, err := pool.Exec(ctx, rawEventsDDL); err != nil {
		return 0, fmt.Errorf("bench: create raw_events: %w", err)
	}
	var pos, longVersion int64
	now := time.Now().UTC()
	for seq := range plan.ops {
		b := plan.batch(seq)
		rows := make([][]any, len(b.events))
		for i := range b.events {
			pos++
			version := int64(i + 1)
			if seq < plan.longOps {
				longVersion++
				version = longVersion
			}
			rows[i] = rawRow(pos, b.stream, version, &b.events[i], b.metas[i], now)
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"raw_events"}, rawColumns, pgx.CopyFromRows(rows)); err != nil {
			return pos, fmt.Errorf("bench: load raw_events: %w", err)
		}
	}
	for _, sql := range []string{
		`ALTER TABLE raw_events ADD PRIMARY KEY (position)`,
		`CREATE INDEX ON raw_events (stream, version)`,
		`VACUUM ANALYZE raw_events`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return pos, fmt.Errorf("bench: index raw_events: %w", err)
		}
	}
	return pos, nil
}

// replayScenario fills the log, then rebuilds the audit projection over
// it (a new generation from the first event, then the swap) and measures
// events/s; the raw side pages through a bare table and COPYs each page
// into a table shaped like the audit read model.
func (r *run) replayScenario(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	rep.Op = "batch applied"
	plan := r.loadPlan(0)
	store, pool, err := r.store(ctx)
	if err != nil {
		return err
	}
	cl, err := r.loadLog(ctx, rep, store, pool, plan)
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
	cfg.Logger.Info("bench: our phase: rebuild", "events", cfg.LogEvents)
	var res projections.RebuildResult
	t, err := r.measured(ctx, pool, "ours", func() (timed, error) {
		return timedRun(func(rec *recorder) (err error) {
			last := rec.start
			res, err = rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{Restart: true, Progress: func(p projections.RebuildProgress) {
				// The rebuild ends on an empty page (the end of the log):
				// not a batch, as the raw consumer, which stops at its last
				// row, counts none.
				if p.Events == rec.events {
					return
				}
				now := time.Now()
				rec.record(int(p.Events-rec.events), now.Sub(last), now)
				last = now
			}})
			return err
		})
	})
	rep.Ours = phase(t)
	if err != nil {
		return fmt.Errorf("bench: rebuild the audit projection: %w", err)
	}
	if res.Events != int64(len(cl.all())) {
		return &VerifyError{Table: "audit rebuild", Claimed: int64(len(cl.all())), Stored: res.Events,
			Missing: max(int64(len(cl.all()))-res.Events, 0), Unexpected: max(res.Events-int64(len(cl.all())), 0)}
	}
	if _, err := verifyClaims(ctx, pool, "audit_events", "event_id", cl, false); err != nil {
		return fmt.Errorf("bench: the rebuilt audit read model does not hold every event once: %w", err)
	}
	rep.note("our side: projections.Runtime.Rebuild of the audit projection (read the log, COPY into a new generation loaded without its secondary indexes, make them, swap); latency is per batch of up to 1,000 events")
	r.release(store, pool)

	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
		return nil
	}
	rawPool, err := r.pool(ctx, 4)
	if err != nil {
		return err
	}
	n, err := r.loadRaw(ctx, rawPool, plan)
	if err != nil {
		return err
	}
	if err := r.rawReadModel(ctx, rawPool, false); err != nil {
		return err
	}
	consumer, err := r.consumerPool(ctx)
	if err != nil {
		return err
	}
	cfg.Logger.Info("bench: raw phase: copy", "events", n)
	rt2, err := r.measured(ctx, rawPool, "raw", func() (timed, error) {
		return timedRun(func(rec *recorder) error {
			return rawConsume(ctx, consumer, 1000, &n, func(k int, d time.Duration) { rec.record(k, d, time.Now()) })
		})
	})
	raw := phase(rt2)
	rep.Raw = &raw
	if err != nil {
		return fmt.Errorf("bench: replay, raw phase: %w", err)
	}
	if raw.Events != n {
		return &VerifyError{Table: "raw_audit", Claimed: n, Stored: raw.Events, Missing: max(n-raw.Events, 0), Unexpected: max(raw.Events-n, 0)}
	}
	// The raw table holds the rows of our load, with the same ids.
	return verifyRaw(ctx, rawPool, "raw_audit", "event_id", cl, false)
}

// timedRun times fn as one phase (wall time, CPU, peak memory); fn records
// its operations into the recorder it is given.
func timedRun(fn func(rec *recorder) error) (timed, error) {
	ownPeak := resetPeakRSS()
	before := currentUsage()
	start := time.Now()
	rec := newRecorder(start)
	err := fn(rec)
	elapsed := time.Since(start)
	after := currentUsage()
	return timed{rec: rec, elapsed: elapsed, timeline: rec.timeline(elapsed), cpu: usage{after.user - before.user, after.sys - before.sys},
		peak: peakRSS(), ownPeak: ownPeak}, err
}
