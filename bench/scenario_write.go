package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// maxAttempts bounds the retries of one conflicting append in hot: far
// more than contention on a few streams needs, few enough that a store
// that never lets an append through fails the run instead of hanging it.
const maxAttempts = 10_000

// opsFor is the number of appends that make cfg.Events (0: unbounded).
func opsFor(events, perAppend int) int64 {
	if events <= 0 {
		return 0
	}
	return int64((events + perAppend - 1) / perAppend)
}

// appender appends the workload's batches to our store, retrying
// conflicts when appends carry exact expected versions.
type appender struct {
	store    *postgres.Store
	exact    bool
	newEach  bool
	versions []atomic.Int64 // the bench's view of each shared stream's version
	claims   *claims

	attempts, conflicts, retried atomic.Int64
}

func newAppender(s *postgres.Store, cfg Config, claims *claims) *appender {
	a := &appender{store: s, exact: cfg.ExactVersions, newEach: cfg.Streams == 0, claims: claims}
	if cfg.Streams > 0 {
		a.versions = make([]atomic.Int64, cfg.Streams)
	}
	return a
}

func (a *appender) append(ctx context.Context, w int, b *batch) (eventstore.AppendResult, error) {
	if !a.exact {
		expected := eventstore.Any
		if a.newEach {
			expected = eventstore.NoStream
		}
		a.attempts.Add(1)
		res, err := a.store.Append(ctx, b.stream, expected, b.events...)
		if err != nil {
			return res, fmt.Errorf("bench: append %d events to %s: %w", len(b.events), b.stream, err)
		}
		a.claim(w, res)
		return res, nil
	}
	v := &a.versions[b.streamIdx]
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		a.attempts.Add(1)
		res, err := a.store.Append(ctx, b.stream, eventstore.Exact(v.Load()), b.events...)
		if err == nil {
			raise(v, res.Version())
			if attempt > 1 {
				a.retried.Add(1)
			}
			a.claim(w, res)
			return res, nil
		}
		var ce *eventstore.ConcurrencyError
		if !errors.As(err, &ce) {
			return res, fmt.Errorf("bench: append %d events to %s: %w", len(b.events), b.stream, err)
		}
		a.conflicts.Add(1)
		raise(v, ce.Actual)
	}
	return eventstore.AppendResult{}, fmt.Errorf("bench: append to %s still conflicting after %d attempts", b.stream, maxAttempts)
}

// claim records the ids the store says it stored.
func (a *appender) claim(w int, res eventstore.AppendResult) {
	for _, e := range res.Events {
		a.claims.add(w, e.ID)
	}
}

// raise moves v up to n (never down).
func raise(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

func groupCommit(s postgres.Stats) *GroupCommit {
	g := &GroupCommit{Groups: s.Groups, Appends: s.Appends, Events: s.Events}
	if s.Groups > 0 {
		g.EventsPerGroup = round(float64(s.Events)/float64(s.Groups), 1)
		g.AppendsPerGroup = round(float64(s.Appends)/float64(s.Groups), 1)
		g.MicrosPerGroup = round(float64(s.GroupTime.Microseconds())/float64(s.Groups), 1)
	}
	return g
}

// writeScenario runs single, batch and hot.
func (r *run) writeScenario(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	rep.Op = "append"
	wl := newWorkload(cfg, cfg.Scenario, r.payloads)
	ops := opsFor(cfg.Events, cfg.EventsPerAppend)

	store, pool, err := r.store(ctx)
	if err != nil {
		return err
	}
	cl := newClaims(cfg.Writers)
	a := newAppender(store, cfg, cl)
	cfg.Logger.Info("bench: our phase", "scenario", cfg.Scenario, "writers", cfg.Writers, "events_per_append", cfg.EventsPerAppend)
	t, err := r.measured(ctx, pool, "ours", func() (timed, error) {
		return runPhase(ctx, phaseSpec{writers: cfg.Writers, duration: cfg.Duration, ops: ops,
			op: func(ctx context.Context, w int, seq int64) (int, error) {
				b := wl.batch(seq)
				res, err := a.append(ctx, w, &b)
				return len(res.Events), err
			}})
	})
	rep.Ours = phase(t)
	rep.GroupCommit = groupCommit(store.Stats())
	if cfg.ExactVersions {
		rep.Conflicts = a.conflicts.Load()
		if n := a.attempts.Load(); n > 0 {
			rep.ConflictRate = round(float64(rep.Conflicts)/float64(n), 4)
		}
		rep.note("%d appends needed at least one retry after a conflict", a.retried.Load())
	}
	if err != nil {
		return fmt.Errorf("bench: %s, our phase: %w", cfg.Scenario, err)
	}
	if err := r.verifyLog(ctx, rep, pool, cl); err != nil {
		return err
	}
	if cfg.ExactVersions {
		landed := true
		rep.RetriedLanded = &landed
	}
	r.release(store, pool)

	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
		return nil
	}
	rawPool, err := r.pool(ctx, cfg.Writers+1)
	if err != nil {
		return err
	}
	rw, err := newRawWriter(ctx, rawPool, cfg.Streams)
	if err != nil {
		return err
	}
	cfg.Logger.Info("bench: raw phase", "scenario", cfg.Scenario)
	rt, err := r.measured(ctx, rawPool, "raw", func() (timed, error) {
		return runPhase(ctx, phaseSpec{writers: cfg.Writers, duration: cfg.Duration, ops: ops,
			op: func(ctx context.Context, w int, seq int64) (int, error) {
				b := wl.batch(seq)
				return rw.write(ctx, &b, b.streamIdx)
			}})
	})
	raw := phase(rt)
	rep.Raw = &raw
	if err != nil {
		return fmt.Errorf("bench: %s, raw phase: %w", cfg.Scenario, err)
	}
	if cfg.ExactVersions {
		rep.note("raw: the same rows with no expected-version check (a bare table has none), so no conflicts")
	}
	return verifyCount(ctx, rawPool, "raw_events", raw.Events)
}

// verifyLog runs the test hook, then Verify on the log.
func (r *run) verifyLog(ctx context.Context, rep *Report, pool *pgxpool.Pool, cl *claims) error {
	if r.cfg.beforeVerify != nil {
		if err := r.cfg.beforeVerify(ctx, pool); err != nil {
			return fmt.Errorf("bench: test hook: %w", err)
		}
	}
	n, err := Verify(ctx, pool, "events", "id", cl.all(), true)
	if err != nil {
		return err
	}
	rep.Verified, rep.VerifiedEvents = true, n
	return nil
}
