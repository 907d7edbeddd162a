package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

func (a *app) backfillCommand() *cobra.Command {
	var (
		from    string
		maxRate float64
		follow  bool
	)
	cmd := &cobra.Command{
		Use:   "backfill NAME [--from POSITION] [--follow]",
		Short: "Bring a new or lagging projection up to the head, or reprocess it from a position",
		Long: `Catch a projection up with the log from its checkpoint: a new projection
fills from history, a lagging one catches up, without disturbing the
others. With --from, the projection first forgets the effects of events at
and after POSITION (its live tables are rewound and its checkpoint moved
back, in one transaction) and then applies them again. A projection that
cannot be rewound says so: replay it instead. On EventStoreDB, whose
positions are not consecutive, --from is exclusive: give the position of
the last event to keep.

Backfill reads the head of the log when it starts and ends once the
projection's checkpoint is at or past that head, however much the log grows
meanwhile: the live runner (serve, projections run) carries on from there.
It prints where the projection stopped, the head at that moment and the
head it started with. With --follow it does not end there: it keeps
catching up with the log as it grows, reporting progress, until Ctrl-C
(exit 0, printing where it stopped).

If another process (serve, projections run) runs the projection, backfill
waits for that process's checkpoint to reach the head read at the start
(with --follow, follows it until Ctrl-C); should that process let go of
the projection, backfill takes it over. Ctrl-C stops at the last
committed batch (exit 130); running the command again continues (after
--from POS, run it without --from: with it, it rewinds and starts over).

--max-rate N applies at most N events per second, within a batch too: at
a rate limit a batch is applied in slices of 0.1 s worth of events (at
least one), each its own transaction.`,
		Args: argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := a.checkProjectionNames(args); err != nil {
				return err
			}
			if maxRate < 0 || math.IsNaN(maxRate) {
				return usagef("--max-rate %v: want 0 (unlimited) or more", maxRate)
			}
			var fromPos eventstore.Position
			var err error
			if from != "" {
				if fromPos, err = eventstore.ParsePosition(from); err != nil {
					return usagef("--from: %v", err)
				}
			}
			ctx := cmd.Context()
			env, err := a.openProjections(ctx, "eventstream-backfill", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			if err := env.rt.Migrate(ctx); err != nil {
				return lostDuringMigrate(ctx, err)
			}
			if from != "" {
				after := fromPos
				if env.b.Store.Features().GaplessPositions && fromPos.Commit > 0 {
					after = eventstore.Pos(fromPos.Commit - 1)
				}
				if err := env.rt.Reprocess(ctx, name, after); err != nil {
					if errors.Is(err, projections.ErrNotRewindable) {
						return fmt.Errorf("%s cannot be reprocessed in place: run `eventstream replay %s` to rebuild it", name, name)
					}
					return projectionError(err, name)
				}
				a.log.Info("rewound; applying again", "projection", name, "after", after.String())
			}
			res, err := a.backfill(ctx, env, name, maxRate, follow)
			if err != nil {
				if ctx.Err() != nil {
					// ctx is cancelled: read where the last committed
					// batch left the checkpoint without it.
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					l, lerr := projectionLag(rctx, env.rt, name)
					cancel()
					if follow && lerr == nil {
						// Ctrl-C is how --follow ends.
						res.Lag = l
						a.log.Info("backfill --follow stopped", "projection", name, "position", l.Position.String(), "head", l.Head.String(), "lag_events", l.LagEvents)
						return a.printBackfill(res)
					}
					return withCode(ExitInterrupted, interrupted(name, from, res, l, lerr, follow, env.b.Store.Features().GaplessPositions))
				}
				if errors.Is(err, eventstore.ErrUnavailable) {
					// An outage (exit 75): the checkpoint holds what
					// committed.
					return fmt.Errorf("backfill of %s stopped: %w; %s", name, err, runAgain(from))
				}
				return projectionError(err, name)
			}
			a.log.Info("backfill reached the head it read at the start; the live runner carries on from there",
				"projection", name, "position", res.Position.String(), "start_head", res.StartHead.String(), "head", res.Head.String(), "lag_events", res.LagEvents)
			return a.printBackfill(res)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "reprocess from this global position (default: continue from the checkpoint)")
	cmd.Flags().Float64Var(&maxRate, "max-rate", 0, "at most N events per second, within a batch too (0: unlimited)")
	cmd.Flags().BoolVar(&follow, "follow", false, "do not stop at the head read at the start: keep catching up until Ctrl-C")
	return cmd
}

// backfillResult is what backfill prints: the projection's lag where it
// stopped (its position, and the head at that moment) and the head it
// read when it started.
type backfillResult struct {
	projections.Lag
	StartHead eventstore.Position `json:"start_head"`
}

func (a *app) printBackfill(r backfillResult) error {
	if a.asJSON {
		return a.printJSON(r)
	}
	a.stdoutf("%s is at position %s (head %s; %s when the backfill started), %d parked\n", r.Projection, r.Position, r.Head, r.StartHead, r.Parked)
	return nil
}

// runAgain says how to continue a backfill that stopped: the same
// command, unless it was given --from, which would rewind to that
// position again and reapply what the stopped run did: without --from,
// it continues from the checkpoint.
func runAgain(from string) string {
	if from != "" {
		return "run it again without --from to continue (with --from " + from + " it would rewind and start over)"
	}
	return "run the same command again to continue"
}

// interrupted says where a backfill stopped on Ctrl-C (l, read after it;
// lerr if that failed), where it was going (the head it started with, or
// following, the head) and how many events it had left, so that an
// operator knows how far it was. res is what backfill returned: its start
// head and the last lag it read; from is its --from ("" without).
func interrupted(name, from string, res backfillResult, l projections.Lag, lerr error, follow, gapless bool) error {
	at := "its last committed batch"
	if lerr == nil {
		at = "position " + l.Position.String()
	}
	again := "run the same command again to continue"
	if from != "" {
		again = "run it again without --from to continue"
	}
	msg := fmt.Sprintf("backfill of %s interrupted at %s; %s", name, at, again)
	switch {
	case follow:
		// Ctrl-C ends --follow with exit 0 when the lag can be read, so
		// here only the lag read last is known.
		if last := res.Lag; !last.Head.IsZero() {
			msg += fmt.Sprintf(" (the head was at position %s when last read, %d events after the projection's checkpoint then)", last.Head, last.LagEvents)
		}
	case res.StartHead.IsZero():
		// Interrupted before it read the head.
	case lerr != nil:
		msg += fmt.Sprintf(" to position %s, the head when it started", res.StartHead)
	case gapless:
		left := uint64(0)
		if res.StartHead.Commit > l.Position.Commit {
			left = res.StartHead.Commit - l.Position.Commit
		}
		msg += fmt.Sprintf(" to position %s, the head when it started: %d events remain", res.StartHead, left)
	default:
		// Positions do not count events here: count those to the head.
		msg += fmt.Sprintf(" to position %s, the head when it started (%d events behind the head now)", res.StartHead, l.LagEvents)
	}
	if from != "" {
		msg += " (with --from " + from + " it would rewind and start over)"
	}
	return errors.New(msg)
}

// backfill catches the projection up and reports where it ended: at or
// past the head it read when it started, or where an error or ctx stopped
// it (then with the last lag it read). With follow it goes on catching up
// with the log until ctx ends.
func (a *app) backfill(ctx context.Context, env *projectionEnv, name string, maxRate float64, follow bool) (backfillResult, error) {
	start, err := projectionLag(ctx, env.rt, name)
	if err != nil {
		return backfillResult{Lag: start}, err
	}
	res := backfillResult{Lag: start, StartHead: start.Head}
	// The bar counts positions, which only a gapless log can: up to the
	// start head, or (following) up to the head as it grows. It counts
	// from where the projection was when this run started, which its
	// description names: what earlier runs applied would count in the
	// rate and ETA as done in no time (the bar has no starting value
	// that is not progress).
	gapless := env.b.Store.Features().GaplessPositions
	counted := func(l projections.Lag) uint64 {
		if follow {
			return l.Position.Commit
		}
		return min(l.Position.Commit, start.Head.Commit)
	}
	base := counted(start)
	seen := base
	what := "backfill " + name
	var total int64
	if gapless {
		total = int64(start.Head.Commit) - int64(base)
		if base > 0 {
			what += fmt.Sprintf(" after position %d", base)
		}
	}
	p := a.newProgress(what, "events", total)
	last := start // the last lag read, while CatchUp runs
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		// CatchUp reports nothing while it runs: follow its checkpoint.
		defer close(watched)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			l, err := projectionLag(ctx, env.rt, name)
			if err != nil {
				continue
			}
			last = l
			if !gapless {
				continue
			}
			if follow && int64(l.Head.Commit)-int64(base) > total {
				total = int64(l.Head.Commit) - int64(base)
				p.SetTotal(total)
			}
			if at := counted(l); at > seen {
				p.Add(int(at - seen))
				seen = at
			}
		}
	}()
	opts := catchUpOptions{maxRate: maxRate, stop: stopAtTarget, target: start.Head}
	if follow {
		opts.stop = stopNever
		opts.onBusy = func() {
			a.log.Info("another process runs this projection; following its checkpoint until Ctrl-C", "projection", name)
		}
	} else {
		opts.onBusy = func() {
			a.log.Info("another process runs this projection; waiting for its checkpoint to reach the head read at the start",
				"projection", name, "start_head", start.Head.String())
		}
	}
	l, err := catchUpToHead(ctx, env.rt, name, opts)
	close(done)
	<-watched
	if err != nil {
		p.Finish("backfill stopped")
		res.Lag = last
		return res, err
	}
	if at := counted(l); gapless && at > seen {
		p.Add(int(at - seen)) // what the last tick did not see
	}
	p.Finish("backfill done")
	res.Lag = l
	return res, nil
}

// projectionLag is the lag of one projection.
func projectionLag(ctx context.Context, rt *projections.Runtime, name string) (projections.Lag, error) {
	lags, err := rt.Lag(ctx)
	if err != nil {
		return projections.Lag{}, err
	}
	for _, l := range lags {
		if l.Projection == name {
			return l, nil
		}
	}
	return projections.Lag{}, fmt.Errorf("%w: %q", projections.ErrUnknownProjection, name)
}

// catchUpStop says when catchUpToHead is done.
type catchUpStop int

const (
	// stopAtHead: once the position is at the head as read after a pass,
	// so again as long as the log grew meanwhile (the demo waits so for
	// the reactions' own appends).
	stopAtHead catchUpStop = iota
	// stopAtTarget: once the position is at or past catchUpOptions.target,
	// however far the log has grown since (backfill: the head it read when
	// it started).
	stopAtTarget
	// stopNever: keep catching up with the log as it grows until ctx ends
	// (backfill --follow).
	stopNever
)

// catchUpOptions tune catchUpToHead.
type catchUpOptions struct {
	maxRate float64 // events per second (0: unlimited)
	// stop says when to return (zero: stopAtHead).
	stop catchUpStop
	// target is the position to reach with stopAtTarget.
	target eventstore.Position
	// onBusy, if set, is called once, the first time another process is
	// found running the projection.
	onBusy func()
	// busyWait bounds how long to wait for another process that runs the
	// projection to reach the goal (0: as long as ctx lasts).
	busyWait time.Duration
}

// reached tells whether l is where catchUpToHead stops.
func (o catchUpOptions) reached(l projections.Lag) bool {
	switch o.stop {
	case stopAtTarget:
		return l.Position.Compare(o.target) >= 0
	case stopNever:
		return false
	default:
		return l.Position.Compare(l.Head) >= 0
	}
}

// goal names where catchUpToHead is going, for messages.
func (o catchUpOptions) goal() string {
	if o.stop == stopAtTarget {
		return "position " + o.target.String()
	}
	return "the head"
}

const (
	// busyPoll is how often catchUpToHead reads the checkpoint of a
	// projection that another process runs (Lag: queries on the pool).
	busyPoll = 100 * time.Millisecond
	// busyRetry is how often catchUpToHead tries CatchUp while the
	// projection's run lock shows as held. A try opens a connection of
	// its own and takes an advisory lock, and cannot succeed while the
	// lock is held, so it is tried again as soon as Lag shows the lock
	// gone; this slower retry only guards against a Lag that misreads it.
	busyRetry = 10 * time.Second
	// targetPoll is how often a pass with a target reads the checkpoint.
	targetPoll = 250 * time.Millisecond
	// followPoll is how often catchUpToHead, following the log from its
	// head, looks for new events.
	followPoll = 500 * time.Millisecond
)

// catchUpToHead brings one projection to the head of the log, or to the
// position opts says, and returns its lag there. It catches up in this
// process; with stopAtHead again as long as the log grew meanwhile (as it
// does under the reactions' own appends), with stopAtTarget until the
// checkpoint is at or past opts.target however far the log grows (a live
// runner carries on from there), with stopNever until ctx ends. When
// another process runs the projection (serve, projections run), it waits
// for that process to get there instead, reading its checkpoint every
// busyPoll. ErrBusy is also what a just-closed session's lock gives until
// PostgreSQL has ended that backend, so CatchUp is tried again while
// waiting: once the lock shows as free (and every busyRetry regardless),
// not at every poll, since each try costs a new connection. Only ctx (and
// opts.busyWait) limits how long it takes.
func catchUpToHead(ctx context.Context, rt *projections.Runtime, name string, opts catchUpOptions) (projections.Lag, error) {
	var busySince, tried time.Time
	var last projections.Lag
	busy, held := false, false
	for pass := 0; ; pass++ {
		if !busy || !held || time.Since(tried) >= busyRetry {
			tried = time.Now()
			err := catchUpPass(ctx, rt, name, opts)
			busy = errors.Is(err, projections.ErrBusy)
			if err != nil && !busy {
				return projections.Lag{}, err
			}
		}
		l, err := projectionLag(ctx, rt, name)
		if err != nil {
			return l, err
		}
		if opts.reached(l) {
			return l, nil
		}
		held = l.Held
		atHead := l.Position.Compare(l.Head) >= 0
		moved := pass == 0 || l.Position != last.Position
		last = l
		if !busy {
			if !atHead && moved {
				continue // the log grew while it caught up: again
			}
			if atHead && opts.stop == stopNever {
				// Following, at the head: wait for new events.
				if err := waitPast(ctx, rt, name, l.Head); err != nil {
					return l, err
				}
				continue
			}
			// Caught up, yet not at the head, and no further than
			// before: do not spin.
		} else {
			if l.Stopped {
				return l, fmt.Errorf("%w: %q: %s", projections.ErrStopped, name, l.LastError)
			}
			if busySince.IsZero() {
				busySince = time.Now()
				if opts.onBusy != nil {
					opts.onBusy()
				}
			}
			if opts.busyWait > 0 && time.Since(busySince) > opts.busyWait {
				return l, fmt.Errorf("projection %s is run by another process and did not reach %s within %s: at position %s, head %s", name, opts.goal(), opts.busyWait, l.Position, l.Head)
			}
		}
		wait := busyPoll
		if opts.stop == stopNever {
			wait = followPoll // following another process: no hurry
		}
		select {
		case <-ctx.Done():
			return l, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// catchUpPass runs CatchUp once. With stopAtTarget it also watches the
// checkpoint and ends the pass once that is at or past the target: CatchUp
// alone returns only when it reaches the head, which a log growing faster
// than the projection applies it (or than --max-rate lets it) never lets
// it do. The batch in flight then is rolled back, as on Ctrl-C; the
// committed checkpoint is already past the target.
func catchUpPass(ctx context.Context, rt *projections.Runtime, name string, opts catchUpOptions) error {
	if opts.stop != stopAtTarget {
		_, err := rt.CatchUp(ctx, name, opts.maxRate)
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reached atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(targetPoll)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			if l, err := projectionLag(pctx, rt, name); err == nil && opts.reached(l) {
				reached.Store(true)
				cancel()
				return
			}
		}
	}()
	_, err := rt.CatchUp(pctx, name, opts.maxRate)
	cancel()
	<-watched
	if err != nil && reached.Load() && ctx.Err() == nil {
		return nil
	}
	return err
}

// waitPast waits until the head of the log is past pos.
func waitPast(ctx context.Context, rt *projections.Runtime, name string, pos eventstore.Position) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followPoll):
		}
		l, err := projectionLag(ctx, rt, name)
		if err != nil || l.Head.Compare(pos) > 0 {
			return err
		}
	}
}
