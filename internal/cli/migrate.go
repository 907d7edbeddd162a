package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/migrate"
)

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the store's and every projection's embedded migrations (idempotent)",
		Long: `Apply the embedded, numbered SQL migrations of the event log and of every
projection's read model to the database, in order, under an advisory lock.
Running it again, or from two processes at once, is safe: what already ran
is skipped. A database migrated by a newer eventstream is left alone and
reported.

The analysts component (eventstream_analysts) is not installed here: its
table turns on row-level security for every read model published after it
exists, which hides their rows from any role not granted through
"eventstream tenants grant-analyst", so that command installs it on first
use. Once installed, migrate upgrades it; until then it reports it as not
installed.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-migrate"})
			if err != nil {
				return err
			}
			defer db.Close()
			kind, err := a.storeKindChecked()
			if err != nil {
				return err
			}
			results, err := a.migrateAll(cmd.Context(), db, kind == storePostgres)
			if err != nil {
				return lostDuringMigrate(cmd.Context(), err)
			}
			an, err := migrateAnalystsIfInstalled(cmd.Context(), db)
			if err != nil {
				return lostDuringMigrate(cmd.Context(), err)
			}
			return a.printMigrations(append(results, an))
		},
	}
	return cmd
}

// lostDuringMigrate gives err, which stopped a migration once connected
// (migrate's, or the one a command runs when it starts), exit 75 when it
// says the database went away (a restart, a failover, a network
// failure): an outage to retry after, as when no server answers at the
// start, rather than a failure that retrying will not mend. The run is
// safe to repeat: what had not committed was rolled back. Not when ctx
// ended (Ctrl-C): pgx may report that as a closed connection. An error
// already unavailable is left as it is.
func lostDuringMigrate(ctx context.Context, err error) error {
	if ctx.Err() != nil || exitCode(err) == ExitUnavailable || !noServerAnswered(err) {
		return err
	}
	return withCode(ExitUnavailable, fmt.Errorf("%w; the database was lost while migrating: run the command again once it is back", err))
}

// migrationResult is what migrate reports per component.
type migrationResult struct {
	Component string   `json:"component"`
	Version   int      `json:"version"`
	Applied   []string `json:"applied"`
	// Rebuilding is, for a read model that an unfinished replay is
	// rebuilding, what this run applied in the generation being built
	// (Applied is the generation readers query).
	Rebuilding *rebuildingResult `json:"rebuilding,omitempty"`
	// NotInstalled says why migrate left the component out (its version
	// is then 0).
	NotInstalled string `json:"not_installed,omitempty"`
}

// rebuildingResult is what migrate applied in the generation of a read
// model being rebuilt.
type rebuildingResult struct {
	Generation int      `json:"generation"`
	Applied    []string `json:"applied"`
}

// analystsNotInstalled is migrate's report of an analysts component that
// no grant-analyst has installed yet.
const analystsNotInstalled = "not installed: eventstream tenants grant-analyst installs it on first use"

// migrateAnalystsIfInstalled upgrades the analysts component if a
// grant-analyst installed it, and otherwise reports it as not installed:
// its table is what turns on row-level security for every read model
// published after it exists (analysts.OnPublish), hiding their rows from
// every role not granted through grant-analyst, which migrate must not
// impose on a deployment that has no analysts.
func migrateAnalystsIfInstalled(ctx context.Context, db *database) (migrationResult, error) {
	v, err := migrate.Status(ctx, db.Pool, analysts.Component)
	if err != nil {
		return migrationResult{}, err
	}
	if v == 0 {
		return migrationResult{Component: analysts.Component, Applied: []string{}, NotInstalled: analystsNotInstalled}, nil
	}
	ms, err := analysts.Migrations()
	if err != nil {
		return migrationResult{}, err
	}
	ran, err := migrate.Apply(ctx, db.Pool, analysts.Component, ms)
	if err != nil {
		return migrationResult{}, err
	}
	return result(analysts.Component, len(ms), ran), nil
}

// migrateAll applies every component's migrations: the log's (when it
// lives in PostgreSQL) and the projections'.
func (a *app) migrateAll(ctx context.Context, db *database, logInPostgres bool) ([]migrationResult, error) {
	var out []migrationResult
	if logInPostgres {
		ms, err := postgres.Migrations()
		if err != nil {
			return nil, err
		}
		ran, err := migrate.Apply(ctx, db.Pool, postgres.Component, ms)
		if err != nil {
			return nil, err
		}
		out = append(out, result(postgres.Component, len(ms), ran))
	}
	api, err := migrateAPI(ctx, db)
	if err != nil {
		return nil, err
	}
	out = append(out, api)
	more, err := a.migrateProjections(ctx, db)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

func result(component string, version int, ran []migrate.Migration) migrationResult {
	r := migrationResult{Component: component, Version: version, Applied: []string{}}
	for _, m := range ran {
		r.Applied = append(r.Applied, fmt.Sprintf("%03d_%s", m.Version, m.Name))
	}
	return r
}

func (a *app) printMigrations(rs []migrationResult) error {
	if a.asJSON {
		return a.printJSON(rs)
	}
	t := a.newTable("COMPONENT", "VERSION", "APPLIED NOW")
	for _, r := range rs {
		names := r.Applied
		if r.Rebuilding != nil {
			names = slices.Clone(names)
			for _, n := range r.Rebuilding.Applied {
				names = append(names, fmt.Sprintf("%s (generation %d, being rebuilt)", n, r.Rebuilding.Generation))
			}
		}
		applied := "up to date"
		switch {
		case r.NotInstalled != "":
			applied = r.NotInstalled
		case len(names) > 0:
			applied = fmt.Sprint(names)
		}
		t.row(r.Component, r.Version, applied)
	}
	return t.flush()
}
