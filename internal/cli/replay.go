package cli

import (
	"errors"
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

func (a *app) replayCommand() *cobra.Command {
	var (
		restart, keepOld, cancel bool
		maxRate                  float64
		batch                    int
	)
	cmd := &cobra.Command{
		Use:   "replay NAME",
		Short: "Rebuild a projection blue/green from the start of the log",
		Long: `Rebuild a projection from the start of the log into a new generation of its
tables while readers keep querying the current one; once the new
generation has reached the head, the readers' views are swapped to it in
one transaction. No reader ever sees a half-built model.

Progress is shown with rate and ETA. Ctrl-C stops at the last committed
batch (exit 130); running the same command again resumes the rebuild
(--restart drops it and starts over, --cancel drops it and exits).
--max-rate N applies at most N events per second, to spare the live
database, within a batch too: at a rate limit a batch is applied in slices
of 0.1 s worth of events (at least one), each its own transaction.

--json prints one object: {"projection", "generation", "previous_generation",
"position", "events", "parked", "resumed"}; with --cancel,
{"projection", "cancelled", "generation"}: cancelled is false (and
generation absent) when there was no unfinished rebuild to drop.`,
		Args: argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := a.checkProjectionNames(args); err != nil {
				return err
			}
			if cancel {
				// --cancel only drops the unfinished rebuild: a flag of
				// the rebuild given with it would do nothing.
				for _, f := range []string{"restart", "keep-old", "max-rate", "batch"} {
					if cmd.Flags().Changed(f) {
						return usagef("--%s does nothing with --cancel, which only drops an unfinished rebuild", f)
					}
				}
			}
			if maxRate < 0 || math.IsNaN(maxRate) {
				return usagef("--max-rate %v: want 0 (unlimited) or more", maxRate)
			}
			ctx := cmd.Context()
			if batch < 0 {
				return usagef("--batch %d: want 1 or more", batch)
			}
			env, err := a.openProjections(ctx, "eventstream-replay", runtimeOptions{batchSize: batch})
			if err != nil {
				return err
			}
			defer env.Close()
			if err := env.rt.Migrate(ctx); err != nil {
				return lostDuringMigrate(ctx, err)
			}
			if cancel {
				gen, err := env.rt.CancelRebuild(ctx, name)
				if err != nil {
					return projectionError(err, name)
				}
				if a.asJSON {
					return a.printJSON(replayCancelOutput{Projection: name, Cancelled: gen > 0, Generation: gen})
				}
				if gen == 0 {
					a.stdoutf("%s has no unfinished rebuild: nothing to drop\n", name)
					return nil
				}
				a.stdoutf("dropped the unfinished rebuild of %s (generation %d)\n", name, gen)
				return nil
			}
			var p *progress
			var last projections.RebuildProgress
			res, err := env.rt.Rebuild(ctx, name, projections.RebuildOptions{
				Restart: restart, KeepOld: keepOld, MaxEventsPerSecond: maxRate,
				Progress: func(rp projections.RebuildProgress) {
					if p == nil {
						// The progress is of this run: what a resumed
						// rebuild's earlier runs read is neither to do
						// nor done now (counted done at the first report,
						// it showed a rate far above the real one and an
						// ETA far too short).
						total := int64(0)
						if env.b.Store.Features().GaplessPositions {
							total = max(int64(rp.Head.Commit)-(int64(rp.Position.Commit)-rp.Events), 0)
						}
						p = a.newProgress("replay "+name, "events", total)
					}
					p.Add(int(rp.Events - last.Events))
					last = rp
				},
			})
			if p != nil {
				if err != nil {
					p.Finish("replay stopped")
				} else {
					p.Finish("replay done")
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return withCode(ExitInterrupted, fmt.Errorf("replay of %s interrupted at position %s (generation %d, nothing swapped: readers still see the old one); run the same command again to resume", name, last.Position, last.Generation))
				}
				if errors.Is(err, eventstore.ErrUnavailable) {
					// An outage (exit 75): the rebuild's progress is
					// committed batch by batch.
					return fmt.Errorf("replay of %s stopped: %w; run the same command again to resume", name, err)
				}
				if errors.Is(err, projections.ErrBusy) {
					return fmt.Errorf("another process is rebuilding %s: %w", name, err)
				}
				return projectionError(err, name)
			}
			if a.asJSON {
				return a.printJSON(replayOutputOf(res))
			}
			how := "rebuilt"
			if res.Resumed {
				how = "resumed and finished the rebuild of"
			}
			a.stdoutf("%s %s: readers now see generation %d (was %d), at position %s; %d events read, %d parked\n",
				how, name, res.Generation, res.Previous, res.Position, res.Events, res.Parked)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&restart, "restart", false, "drop an unfinished rebuild and start over")
	f.BoolVar(&cancel, "cancel", false, "drop an unfinished rebuild and exit")
	f.BoolVar(&keepOld, "keep-old", false, "keep the old generation's tables after the swap (dropped by the next migrate)")
	f.Float64Var(&maxRate, "max-rate", 0, "at most N events per second, within a batch too (0: unlimited)")
	f.IntVar(&batch, "batch", 0, "events per transaction (default 1000); smaller batches commit progress more often")
	return cmd
}

// replayOutput is what replay --json prints: the rebuild's result in the
// snake_case keys of the CLI's other JSON (projections.RebuildResult has
// no JSON tags, and printed as it was its keys were Go's field names).
type replayOutput struct {
	Projection string              `json:"projection"`
	Generation int                 `json:"generation"`
	Previous   int                 `json:"previous_generation"`
	Position   eventstore.Position `json:"position"`
	Events     int64               `json:"events"`
	Parked     int64               `json:"parked"`
	Resumed    bool                `json:"resumed"`
}

func replayOutputOf(r projections.RebuildResult) replayOutput {
	return replayOutput{Projection: r.Projection, Generation: r.Generation, Previous: r.Previous,
		Position: r.Position, Events: r.Events, Parked: r.Parked, Resumed: r.Resumed}
}

// replayCancelOutput is what replay --cancel --json prints. Cancelled
// says whether there was an unfinished rebuild to drop, Generation which
// one it was; either way none is left.
type replayCancelOutput struct {
	Projection string `json:"projection"`
	Cancelled  bool   `json:"cancelled"`
	Generation int    `json:"generation,omitempty"`
}
