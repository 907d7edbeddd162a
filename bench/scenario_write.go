package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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
	// Not (events + perAppend - 1) / perAppend, which overflows near the
	// largest int and made the count unbounded.
	return int64(events/perAppend) + b2i(events%perAppend != 0)
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
		a.claim(w, b.stream, res)
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
			a.claim(w, b.stream, res)
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

// reportConflicts puts, with exact expected versions, the conflicts of
// our phase in the report: how many, and their share of every append
// attempt (a conflicting attempt is retried, so the attempts are the
// appends plus the conflicts). Every scenario that takes ExactVersions
// calls it, so that a report never shows a run with exact versions as
// one without conflicts.
func (a *appender) reportConflicts(rep *Report) {
	if !a.exact {
		return
	}
	rep.Conflicts = a.conflicts.Load()
	if n := a.attempts.Load(); n > 0 {
		rep.ConflictRate = round(float64(rep.Conflicts)/float64(n), 4)
	}
	rep.note("%d appends needed at least one retry after a conflict", a.retried.Load())
}

// reportLanded, with exact expected versions, says that every retried
// append landed: called once the log check passed, which proves each
// claimed event (retried ones included) is in the log once, at the
// version the store answered.
func (a *appender) reportLanded(rep *Report) {
	if !a.exact {
		return
	}
	landed := true
	rep.RetriedLanded = &landed
	rep.note("raw: the same rows with no expected-version check (a bare table has none), so no conflicts")
}

// claim records the ids the store says it stored, in the stream the
// bench appended them to, at the versions the store answered.
func (a *appender) claim(w int, stream string, res eventstore.AppendResult) {
	a.claims.add(w, stream, res.Events)
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

// writeScenario runs single, batch and hot. Ours and raw alternate in
// Config.Rounds rounds, so that on a shared machine both sides meet the
// same background load; each side's rounds are added up.
func (r *run) writeScenario(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	rep.Op = "append"
	wl := newWorkload(cfg, cfg.Scenario, r.payloads)
	ops := opsFor(cfg.Events, cfg.EventsPerAppend)
	rounds := cfg.durationRounds()

	store, pool, err := r.store(ctx)
	if err != nil {
		return err
	}
	cl := newClaims(cfg.Writers)
	a := newAppender(store, cfg, cl)
	oursOp := func(ctx context.Context, w int, seq int64) (int, error) {
		b := wl.batch(seq)
		res, err := a.append(ctx, w, &b)
		return len(res.Events), err
	}
	var rawPool *pgxpool.Pool
	var rw *rawWriter
	if !cfg.SkipRaw {
		if rawPool, err = r.pool(ctx, cfg.Writers+1); err != nil {
			return err
		}
		if rw, err = newRawWriter(ctx, rawPool, cfg.Streams); err != nil {
			return err
		}
	}
	rawCl := newClaims(cfg.Writers)
	rawOp := func(ctx context.Context, w int, seq int64) (int, error) {
		b := wl.batch(seq)
		rows := rw.rows(&b, b.streamIdx)
		n, err := rw.writeRows(ctx, rows)
		if err == nil {
			rawCl.addRows(w, rows)
		}
		return n, err
	}

	// Each side's connections open before its first round: the store's
	// pool in full, the raw side's one per writer.
	if err := warm(ctx, pool, int(pool.Config().MaxConns)); err != nil {
		return err
	}
	if rawPool != nil {
		if err := warm(ctx, rawPool, cfg.Writers); err != nil {
			return err
		}
	}
	var ours, raw timed
	var oursErr, rawErr error
	for k := range rounds {
		spec := phaseSpec{writers: cfg.Writers, duration: cfg.Duration / time.Duration(rounds)}
		if ops > 0 {
			spec.ops = ops/rounds + b2i(k < ops%rounds)
		}
		side := func(name string) string {
			if rounds == 1 {
				return name
			}
			return fmt.Sprintf("%s-r%d", name, k+1)
		}
		cfg.Logger.Info("bench: our phase", "scenario", cfg.Scenario, "round", k+1, "of", rounds)
		s := spec
		s.base, s.op = ours.next, oursOp
		t, err := r.measured(ctx, pool, side("ours"), func() (timed, error) { return runPhase(ctx, s) })
		ours = ours.then(t)
		if oursErr = err; err != nil {
			break
		}
		if cfg.SkipRaw {
			continue
		}
		cfg.Logger.Info("bench: raw phase", "scenario", cfg.Scenario, "round", k+1, "of", rounds)
		s = spec
		s.base, s.op = raw.next, rawOp
		t, err = r.measured(ctx, rawPool, side("raw"), func() (timed, error) { return runPhase(ctx, s) })
		raw = raw.then(t)
		if rawErr = err; err != nil {
			break
		}
	}
	rep.Ours = phase(ours)
	rep.Ours.Rounds = int(rounds)
	rep.GroupCommit = groupCommit(store.Stats())
	a.reportConflicts(rep)
	if oursErr != nil {
		return fmt.Errorf("bench: %s, our phase: %w", cfg.Scenario, oursErr)
	}
	if !cfg.SkipRaw {
		p := phase(raw)
		p.Rounds = int(rounds)
		rep.Raw = &p
	}
	if rawErr != nil {
		return fmt.Errorf("bench: %s, raw phase: %w", cfg.Scenario, rawErr)
	}
	if err := r.verifyLog(ctx, rep, pool, cl); err != nil {
		return err
	}
	a.reportLanded(rep)
	if rounds > 1 {
		rep.note("ours and raw alternated in %d rounds; each side's figures add its rounds up", rounds)
	}
	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
		return nil
	}
	if err := verifyRaw(ctx, rawPool, "raw_events", "id", rawCl, true); err != nil {
		rep.Verified = false
		return err
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// verifyLog runs the test hook, then Verify on the log.
func (r *run) verifyLog(ctx context.Context, rep *Report, pool *pgxpool.Pool, cl *claims) error {
	if r.cfg.beforeVerify != nil {
		if err := r.cfg.beforeVerify(ctx, pool); err != nil {
			return fmt.Errorf("bench: test hook: %w", err)
		}
	}
	n, err := verifyClaims(ctx, pool, "events", "id", cl, true)
	if err != nil {
		return err
	}
	rep.Verified, rep.VerifiedEvents = true, n
	return nil
}
