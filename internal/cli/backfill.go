package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

func (a *app) backfillCommand() *cobra.Command {
	var (
		from    string
		maxRate float64
	)
	cmd := &cobra.Command{
		Use:   "backfill NAME [--from POSITION]",
		Short: "Bring a new or lagging projection up to the head, or reprocess it from a position",
		Long: `Catch a projection up with the log from its checkpoint: a new projection
fills from history, a lagging one catches up, without disturbing the
others. With --from, the projection first forgets the effects of events at
and after POSITION (its live tables are rewound and its checkpoint moved
back, in one transaction) and then applies them again. A projection that
cannot be rewound says so: replay it instead. On EventStoreDB, whose
positions are not consecutive, --from is exclusive: give the position of
the last event to keep.

If another process (serve, projections run) runs the projection, backfill
waits for that process to reach the head. Ctrl-C stops at the last
committed batch (exit 130); running the command again continues.`,
		Args: argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := a.checkProjectionNames(args); err != nil {
				return err
			}
			if maxRate < 0 {
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
				return err
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
			lag, err := a.backfill(ctx, env, name, maxRate)
			if err != nil {
				if ctx.Err() != nil {
					// ctx is cancelled: read where the last committed
					// batch left the checkpoint without it.
					at := "its last committed batch"
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					if l, err := projectionLag(rctx, env.rt, name); err == nil {
						at = "position " + l.Position.String()
					}
					cancel()
					return withCode(ExitInterrupted, fmt.Errorf("backfill of %s interrupted at %s; run the same command again to continue", name, at))
				}
				return projectionError(err, name)
			}
			if a.asJSON {
				return a.printJSON(lag)
			}
			a.stdoutf("%s is at position %s (head %s), %d parked\n", name, lag.Position, lag.Head, lag.Parked)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "reprocess from this global position (default: continue from the checkpoint)")
	cmd.Flags().Float64Var(&maxRate, "max-rate", 0, "at most N events per second (0: unlimited)")
	return cmd
}

// backfill catches the projection up and reports where it ended: at the
// head of the log, or where an error or ctx stopped it.
func (a *app) backfill(ctx context.Context, env *projectionEnv, name string, maxRate float64) (projections.Lag, error) {
	start, err := projectionLag(ctx, env.rt, name)
	if err != nil {
		return start, err
	}
	var total int64
	if env.b.Store.Features().GaplessPositions {
		total = int64(start.Head.Commit)
	}
	p := a.newProgress("backfill "+name, "events", total)
	if total > 0 {
		p.Add(int(start.Position.Commit))
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		// CatchUp reports nothing while it runs: follow its checkpoint.
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		seen := start.Position.Commit
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if l, err := projectionLag(ctx, env.rt, name); err == nil && total > 0 && l.Position.Commit > seen {
					p.Add(int(l.Position.Commit - seen))
					seen = l.Position.Commit
				}
			}
		}
	}()
	l, err := catchUpToHead(ctx, env.rt, name, catchUpOptions{
		maxRate: maxRate,
		onBusy: func() {
			a.log.Info("another process runs this projection; waiting for it to reach the head", "projection", name)
		},
	})
	if err != nil {
		p.Finish("backfill stopped")
		return l, err
	}
	p.Finish("backfill done")
	return l, nil
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

// catchUpOptions tune catchUpToHead.
type catchUpOptions struct {
	maxRate float64 // events per second (0: unlimited)
	// onBusy, if set, is called once, the first time another process is
	// found running the projection.
	onBusy func()
	// busyWait bounds how long to wait for another process that runs the
	// projection to reach the head (0: as long as ctx lasts).
	busyWait time.Duration
}

// busyPoll is how often catchUpToHead looks again at a projection that
// another process runs.
const busyPoll = 100 * time.Millisecond

// catchUpToHead brings one projection to the head of the log and returns
// its lag there (position at or past the head). It catches up in this
// process, again as long as the log grew meanwhile (as it does under the
// reactions' own appends); or, when another process runs the projection
// (serve, projections run), it waits for that process to get there.
// ErrBusy is also what a just-closed session's lock gives until PostgreSQL
// has ended that backend, so CatchUp is tried again while waiting. Only
// ctx (and opts.busyWait) limits how long it takes.
func catchUpToHead(ctx context.Context, rt *projections.Runtime, name string, opts catchUpOptions) (projections.Lag, error) {
	var busySince time.Time
	var last projections.Lag
	for pass := 0; ; pass++ {
		_, err := rt.CatchUp(ctx, name, opts.maxRate)
		busy := errors.Is(err, projections.ErrBusy)
		if err != nil && !busy {
			return projections.Lag{}, err
		}
		l, err := projectionLag(ctx, rt, name)
		if err != nil {
			return l, err
		}
		if l.Position.Compare(l.Head) >= 0 {
			return l, nil
		}
		moved := pass == 0 || l.Position != last.Position
		last = l
		if !busy {
			if moved {
				continue // the log grew while it caught up: again
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
				return l, fmt.Errorf("projection %s is run by another process and did not reach the head within %s: at position %s, head %s", name, opts.busyWait, l.Position, l.Head)
			}
		}
		select {
		case <-ctx.Done():
			return l, ctx.Err()
		case <-time.After(busyPoll):
		}
	}
}
