package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// eventPrefix is how the runtime starts an event's error; the table shows
// the event in its own columns.
var eventPrefix = regexp.MustCompile(`^event \S+ \([^)]*\): `)

func (a *app) dlqCommand() *cobra.Command {
	cmd := asGroup(&cobra.Command{
		Use:   "dlq",
		Short: "List, show, retry and skip the events projections parked (dead letters)",
		Long: `An event a projection could not apply after its retries is parked in the
dead-letter table with the projection, event id, position, error, attempt
count and times, and the projection moves on. Fix the cause, then retry
it (a retry that succeeds removes the entry and applies the event once), or
skip it to give its effect up for good.`,
	})
	parseID := func(s string) (int64, error) {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return 0, usagef("ID %q: want the number dlq list shows", s)
		}
		return id, nil
	}
	// notParked words an error of a command on one parked event; a
	// database lost meanwhile is unavailable (exit 75).
	notParked := func(ctx context.Context, err error, id int64) error {
		if errors.Is(err, projections.ErrNotParked) {
			// An id that names nothing, as tenants revoke-analyst and
			// tokens revoke say of a role or a token: exit 2.
			return usagef("no parked event has id %d (dlq list shows them)", id)
		}
		return projectionError(lostDB(ctx, err), "")
	}

	var projection string
	list := &cobra.Command{
		Use:   "list [--projection NAME]",
		Short: "List parked events, oldest first per projection",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if projection != "" {
				if err := a.checkProjectionNames([]string{projection}); err != nil {
					return err
				}
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-dlq", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			ps, err := env.rt.ListParked(cmd.Context(), projection)
			if err != nil {
				return projectionError(lostDB(cmd.Context(), err), projection)
			}
			if a.asJSON {
				for _, p := range ps {
					if err := a.printJSON(p); err != nil {
						return err
					}
				}
				return nil
			}
			if len(ps) == 0 {
				a.stdoutf("no parked events\n")
				return nil
			}
			t := a.newTable("ID", "PROJECTION", "POSITION", "TYPE", "STREAM", "ATTEMPTS", "LAST FAILED", "ERROR")
			for _, p := range ps {
				t.row(p.ID, p.Projection, p.Position, p.Type, clip(p.Stream, 40), p.Attempts, p.LastFailedAt.UTC().Format("2006-01-02T15:04:05Z"), clip(eventPrefix.ReplaceAllString(p.Error, ""), 160))
			}
			return t.flush()
		},
	}
	list.Flags().StringVar(&projection, "projection", "", "only this projection's parked events")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a parked event: why it failed, and the event itself",
		Args:  argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-dlq", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			p, err := env.rt.GetParked(cmd.Context(), id)
			if err != nil {
				return notParked(cmd.Context(), err, id)
			}
			// A failed read of the event still shows the entry (the
			// failure is worth seeing while the log is down), and then
			// ends the command with the read's error: "event": null with
			// exit 0 said the event was not in the log.
			var ev *eventstore.Event
			page, readErr := env.b.Store.ReadAll(cmd.Context(), eventstore.ReadAllOptions{From: p.Position, Limit: 1})
			if readErr != nil {
				readErr = fmt.Errorf("reading the parked event %s at position %s from the log: %w", p.EventID, p.Position, readErr)
			} else if len(page.Events) == 1 && page.Events[0].ID == p.EventID {
				ev = &page.Events[0]
			}
			if a.asJSON {
				if err := a.printJSON(struct {
					Parked projections.Parked `json:"parked"`
					Event  *eventstore.Event  `json:"event"`
				}{p, ev}); err != nil {
					return err
				}
				return readErr
			}
			t := a.newTable()
			for _, kv := range [][2]any{
				{"id", p.ID}, {"projection", fmt.Sprintf("%s (generation %d)", p.Projection, p.Generation)},
				{"event", p.EventID}, {"type", p.Type}, {"stream", p.Stream}, {"tenant", p.TenantID},
				{"position", p.Position}, {"attempts", p.Attempts},
				{"first failed", p.FirstFailedAt.UTC().Format("2006-01-02T15:04:05Z")}, {"last failed", p.LastFailedAt.UTC().Format("2006-01-02T15:04:05Z")},
			} {
				t.row(kv[0], kv[1])
			}
			if err := t.flush(); err != nil {
				return err
			}
			a.stdoutf("error:\n  %s\n", p.Error)
			if ev != nil {
				a.stdoutf("payload:\n  %s\n", ev.Payload)
			}
			return readErr
		},
	}

	var all bool
	var retryProjection string
	retry := &cobra.Command{
		Use:   "retry ID | --all [--projection NAME]",
		Short: "Apply parked events again; those that succeed leave the table",
		Args:  argsMax(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return usagef("give one ID or --all")
			}
			if retryProjection != "" && !all {
				return usagef("--projection goes with --all")
			}
			if retryProjection != "" {
				if err := a.checkProjectionNames([]string{retryProjection}); err != nil {
					return err
				}
			}
			var id int64
			var err error
			if !all {
				if id, err = parseID(args[0]); err != nil {
					return err
				}
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-dlq", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			if all {
				res, err := env.rt.RetryAllParked(cmd.Context(), retryProjection)
				if err != nil {
					// What was applied before the error has left the table;
					// say so, or a rerun's smaller list would puzzle.
					if res.Applied+res.Failed+res.Gone > 0 {
						a.stderrf("before the error: %d applied, %d failed again (still parked), %d already gone\n", res.Applied, res.Failed, res.Gone)
					}
					return projectionError(lostDB(cmd.Context(), err), retryProjection)
				}
				if a.asJSON {
					if err := a.printJSON(map[string]int{"applied": res.Applied, "failed": res.Failed, "gone": res.Gone}); err != nil {
						return err
					}
				} else {
					a.stdoutf("%d applied, %d failed again (still parked), %d already gone (retried or skipped by another process)\n", res.Applied, res.Failed, res.Gone)
				}
				if res.Failed > 0 {
					return &silentError{code: ExitFailure}
				}
				return nil
			}
			if err := env.rt.RetryParked(cmd.Context(), id); err != nil {
				var re *projections.RetryError
				if errors.As(err, &re) {
					return fmt.Errorf("parked event %d failed again and stays parked: %v", id, re.Err)
				}
				return notParked(cmd.Context(), err, id)
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"id": id, "applied": true})
			}
			a.stdoutf("applied parked event %d; it left the table\n", id)
			return nil
		},
	}
	retry.Flags().BoolVar(&all, "all", false, "retry every parked event (of --projection, or of all projections)")
	retry.Flags().StringVar(&retryProjection, "projection", "", "with --all: only this projection's")

	skip := &cobra.Command{
		Use:   "skip ID",
		Short: "Remove a parked event without applying it (its effect is given up)",
		Args:  argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-dlq", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			if err := env.rt.SkipParked(cmd.Context(), id); err != nil {
				return notParked(cmd.Context(), err, id)
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"id": id, "skipped": true})
			}
			a.stdoutf("skipped parked event %d\n", id)
			return nil
		},
	}
	cmd.AddCommand(list, show, retry, skip)
	return cmd
}
