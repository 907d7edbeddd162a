package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
)

// projectionInfo describes the projections the binary runs.
var projectionInfo = map[string]struct{ what, tables string }{
	audit.Name:     {"every event of every type, by type, stream, tenant, correlation id and time", "audit_events"},
	analytics.Name: {"counts per type, tenant and day; created/completed/failed; generation success rate", "analytics_event_counts, analytics_outcomes, analytics_generation_daily"},
	alerts.Name:    {"refused approvals and DAG tampering as alert rows with a severity", "security_alerts"},
	catalog.Name:   {"one row per course: workflow, lessons, distribution, publication, views, clicks; events skipped outside their module's stream", "course_catalog, course_distributions, catalog_skipped_events"},
	reactionsName:  {"module-to-module reactions (course → distribution → staging, mission ↔ governance)", "(none: appends commands; processed_events)"},
}

// projectionEnv is what a projection command works with.
type projectionEnv struct {
	b   *backend
	dom *domainParts
	rt  *projections.Runtime
}

func (e *projectionEnv) Close() { e.b.Close() }

// openProjections opens the store, the database and the runtime.
func (a *app) openProjections(ctx context.Context, appName string, opts runtimeOptions) (*projectionEnv, error) {
	b, err := a.openStore(ctx, storeOptions{connectOptions: connectOptions{appName: appName}})
	if err != nil {
		return nil, err
	}
	dom, err := a.newDomain(b.Store, b.Registry)
	if err != nil {
		b.Close()
		return nil, err
	}
	rt, err := a.newRuntime(b, dom, opts)
	if err != nil {
		b.Close()
		return nil, err
	}
	return &projectionEnv{b: b, dom: dom, rt: rt}, nil
}

// projectionError words the runtime's errors for an operator.
func projectionError(err error, name string) error {
	switch {
	case errors.Is(err, projections.ErrUnknownProjection):
		return usagef("unknown projection %q: want one of %s", name, strings.Join(knownProjections(), ", "))
	case errors.Is(err, projections.ErrNotMigrated), isUndefinedTable(err):
		return fmt.Errorf("the projections' tables do not exist: run `eventstream migrate` first (%w)", err)
	}
	return err
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

func knownProjections() []string {
	return []string{audit.Name, analytics.Name, alerts.Name, catalog.Name, reactionsName}
}

func (a *app) checkProjectionNames(names []string) error {
	for _, n := range names {
		if _, ok := projectionInfo[n]; !ok {
			return usagef("unknown projection %q: want one of %s", n, strings.Join(knownProjections(), ", "))
		}
	}
	return nil
}

func (a *app) projectionsCommand() *cobra.Command {
	cmd := asGroup(&cobra.Command{
		Use:   "projections",
		Short: "List, inspect and run the projections (read models and reactions)",
	})
	list := &cobra.Command{
		Use:   "list",
		Short: "List the projections, what they keep and their tables",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			type row struct {
				Name   string `json:"name"`
				What   string `json:"description"`
				Tables string `json:"tables"`
			}
			var rows []row
			for _, n := range knownProjections() {
				i := projectionInfo[n]
				rows = append(rows, row{n, i.what, i.tables})
			}
			if a.asJSON {
				return a.printJSON(rows)
			}
			t := a.newTable("NAME", "TABLES", "KEEPS")
			for _, r := range rows {
				t.row(r.Name, r.Tables, r.What)
			}
			return t.flush()
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each projection's position, head, lag (events, seconds), state and parked count",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := a.openProjections(cmd.Context(), "eventstream-status", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			lags, err := env.rt.Lag(cmd.Context())
			if err != nil {
				return projectionError(err, "")
			}
			if a.asJSON {
				return a.printJSON(lags)
			}
			return a.printLagTable(lags, "")
		},
	}
	run := &cobra.Command{
		Use:   "run [NAME...]",
		Short: "Run projections (all by default) until interrupted",
		Long: `Migrate, then run the named projections (all of them by default): catch
up from each checkpoint, then follow the log live, until Ctrl-C or
SIGTERM. Several processes may run projections against one database: each
projection is run by exactly one of them, and another takes over within
seconds when it stops.

run has no result to print: stdout stays empty, --json or not; its log
(with each projection's lag, periodically) goes to stderr, and
"projections status --json" reports where the projections stand.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkProjectionNames(args); err != nil {
				return err
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-projections", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			if err := env.rt.Migrate(cmd.Context()); err != nil {
				return lostDuringMigrate(cmd.Context(), err)
			}
			names := args
			if len(names) == 0 {
				names = env.rt.Names()
			}
			a.log.Info("running projections; Ctrl-C stops them at their checkpoints", "projections", strings.Join(names, ","))
			done := make(chan error, 1)
			go func() { done <- env.rt.Run(cmd.Context(), args...) }()
			tick := time.NewTicker(a.progressEvery() * 6)
			defer tick.Stop()
			for {
				select {
				case err := <-done:
					if err != nil {
						return projectionError(err, "")
					}
					a.log.Info("projections stopped at their checkpoints")
					return nil
				case <-tick.C:
					lags, err := env.rt.Lag(cmd.Context())
					if err == nil {
						for _, l := range lags {
							a.log.Info("projection", "name", l.Projection, "position", l.Position.String(), "lag_events", l.LagEvents, "parked", l.Parked, "state", lagState(l))
						}
					}
				}
			}
		},
	}
	resume := &cobra.Command{
		Use:   "resume NAME",
		Short: "Start again a projection stopped on an error",
		Args:  argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkProjectionNames(args); err != nil {
				return err
			}
			env, err := a.openProjections(cmd.Context(), "eventstream-resume", runtimeOptions{})
			if err != nil {
				return err
			}
			defer env.Close()
			resumed, err := env.rt.Resume(cmd.Context(), args[0])
			if err != nil {
				return projectionError(err, args[0])
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"projection": args[0], "resumed": resumed})
			}
			if !resumed {
				a.stdoutf("%s was not stopped: nothing to resume\n", args[0])
				return nil
			}
			a.stdoutf("resumed %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, status, run, resume)
	return cmd
}

func lagState(l projections.Lag) string {
	switch {
	case l.Stopped:
		return "stopped: " + clip(l.LastError, 60)
	case l.Rebuilding > 0:
		return fmt.Sprintf("rebuilding g%d at %s", l.Rebuilding, l.RebuildPosition)
	case l.Running:
		return "running"
	case l.Held:
		return "running elsewhere"
	}
	return "idle"
}

func (a *app) printLagTable(lags []projections.Lag, indent string) error {
	t := a.newTable(indent+"PROJECTION", "GEN", "POSITION", "HEAD", "LAG", "LAG(s)", "EV/s", "PARKED", "STATE")
	for _, l := range lags {
		t.row(indent+l.Projection, l.Generation, l.Position, l.Head, l.LagEvents, fmt.Sprintf("%.1f", l.LagSeconds), fmt.Sprintf("%.0f", l.EventsPerSecond), l.Parked, lagState(l))
	}
	return t.flush()
}
