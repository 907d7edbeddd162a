package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/aggregates/reactions"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
	"github.com/brainhq/eventstream/schemas"
)

// reactionsName is the projection that runs the module-to-module
// reactions (aggregates/reactions) on the projection runtime, so they get
// its checkpoints, locks, retries, dead letters and lag like a read model.
const reactionsName = "reactions"

// defaultStagingBaseURL is where the reactions say staged courses live.
const defaultStagingBaseURL = "https://staging.courses.example"

// domainParts are the aggregates and reactions the binary composes.
type domainParts struct {
	Registry  *aggregates.Registry
	Services  *domain.Services
	Reactions *reactions.Reactions
}

// newDomain builds the four modules' services and their reactions over
// store.
func (a *app) newDomain(store eventstore.Store, reg *schemas.Registry) (*domainParts, error) {
	areg, err := domain.NewRegistry(reg)
	if err != nil {
		return nil, fmt.Errorf("event types and schemas disagree: %w", err)
	}
	svc, err := domain.New(store, areg, domain.Options{Logger: a.log})
	if err != nil {
		return nil, err
	}
	rx, err := reactions.New(svc, reactions.Config{StagingBaseURL: defaultStagingBaseURL, Logger: a.log})
	if err != nil {
		return nil, err
	}
	return &domainParts{Registry: areg, Services: svc, Reactions: rx}, nil
}

// reactionsProjection runs every reaction whose type the event has. Each
// reaction is recorded once per event (projections.Once, in the batch's
// transaction) so that a replay does not issue its commands again; the
// reactions are idempotent anyway, so a crash between the command and
// the commit is harmless.
func reactionsProjection(rx *reactions.Reactions, reg *schemas.Registry) projections.Projection {
	byType := map[string][]reactions.Reaction{}
	for _, x := range rx.List() {
		for _, t := range x.Types {
			byType[t] = append(byType[t], x)
		}
	}
	var handles []projections.EventType
	types := rx.Types()
	sort.Strings(types)
	for _, t := range types {
		handles = append(handles, projections.EventType{Type: t, Versions: []int{reg.Latest(t)}})
	}
	return projections.Projection{
		Name:    reactionsName,
		Handles: handles,
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			for _, x := range byType[e.Type] {
				first, err := projections.OnceEvent(ctx, tx, "reaction:"+x.Name, e)
				if err != nil {
					return err
				}
				if !first {
					continue
				}
				if err := x.Handle(ctx, e); err != nil {
					err = fmt.Errorf("reaction %s: %w", x.Name, err)
					if reactions.Refusal(err) {
						// An invariant refused the command, its aggregate
						// does not exist, or the store refused its events:
						// retrying cannot help, so the event is parked at once.
						err = projections.Permanent(err)
					}
					return err
				}
			}
			return nil
		}),
	}
}

// runtimeOptions tune newRuntime.
type runtimeOptions struct {
	registerer prometheus.Registerer
	batchSize  int
}

// newRuntime builds the projection runtime over the backend: the four
// read models and the reactions.
func (a *app) newRuntime(b *backend, dom *domainParts, opts runtimeOptions) (*projections.Runtime, error) {
	if b.DB == nil {
		return nil, fmt.Errorf("projections need PostgreSQL for their read models: pass --database-url")
	}
	ps := []projections.Projection{audit.Projection(), analytics.Projection(), alerts.Projection(), catalog.Projection()}
	cfg := projections.Config{Logger: a.log, Registerer: opts.registerer, BatchSize: opts.batchSize, ApplicationName: "eventstream-projection",
		// Analyst roles (eventstream tenants grant-analyst) keep their
		// row-level security and grants on every new generation.
		OnPublish: analysts.OnPublish}
	if dom != nil {
		cfg.Upcast = dom.Registry.Upcast
		ps = append(ps, reactionsProjection(dom.Reactions, b.Registry))
	}
	rt, err := projections.New(b.DB.Pool, b.Store, b.Registry, cfg, ps...)
	if err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	return rt, nil
}

// migrateProjections applies the snapshot store's, the projection
// runtime's and every read model's migrations.
func (a *app) migrateProjections(ctx context.Context, db *database) ([]migrationResult, error) {
	var out []migrationResult
	ms, err := pgsnapshot.Migrations()
	if err != nil {
		return nil, err
	}
	ran, err := migrate.Apply(ctx, db.Pool, pgsnapshot.Component, ms)
	if err != nil {
		return nil, err
	}
	out = append(out, result(pgsnapshot.Component, len(ms), ran))

	reg, err := schemas.Default()
	if err != nil {
		return nil, err
	}
	// Migrating read models never touches the log; the runtime only needs
	// a store to be built.
	placeholder, err := memory.New(reg)
	if err != nil {
		return nil, err
	}
	defer placeholder.Close()
	b := &backend{Store: placeholder, Registry: reg, DB: db}
	dom, err := a.newDomain(placeholder, reg)
	if err != nil {
		return nil, err
	}
	rt, err := a.newRuntime(b, dom, runtimeOptions{})
	if err != nil {
		return nil, err
	}
	// What the runtime ran, not what the versions went from and to: a
	// run that waited for another's locks finds that one's migrations
	// applied, and reports them as such.
	applied, err := rt.MigrateReport(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range append([]string{projections.Component}, projectionComponents(rt)...) {
		v, err := migrationStatus(ctx, db, c)
		if err != nil {
			return nil, err
		}
		r := migrationResult{Component: c, Version: v, Applied: []string{}}
		for _, m := range applied {
			if m.Component != c {
				continue
			}
			name := fmt.Sprintf("%03d_%s", m.Version, m.Name)
			if !m.Building {
				r.Applied = append(r.Applied, name)
				continue
			}
			// Kept apart, so that every entry of either list is a
			// migration's name; the version is the active generation's.
			if r.Rebuilding == nil {
				r.Rebuilding = &rebuildingResult{Generation: m.Generation, Applied: []string{}}
			}
			r.Rebuilding.Applied = append(r.Rebuilding.Applied, name)
		}
		out = append(out, r)
	}
	return out, nil
}

// projectionComponents are the migration components of the read models
// (recorded in each generation's schema; reported here by name).
func projectionComponents(rt *projections.Runtime) []string {
	var out []string
	for _, n := range rt.Names() {
		if n != reactionsName {
			out = append(out, "projection:"+n)
		}
	}
	return out
}

// migrationStatus reads the highest applied version of a component: the
// runtime's in the current schema, a read model's in the schema of its
// active generation.
func migrationStatus(ctx context.Context, db *database, component string) (int, error) {
	table := "eventstream_migrations"
	if name, ok := strings.CutPrefix(component, "projection:"); ok {
		var schema string
		err := db.Pool.QueryRow(ctx, `SELECT g.schema_name FROM projection_state s
			JOIN projection_generations g ON g.projection = s.projection AND g.generation = s.active_generation
			WHERE s.projection = $1`, name).Scan(&schema)
		if err != nil {
			return 0, nil // not installed yet
		}
		table = pgx.Identifier{schema, "eventstream_migrations"}.Sanitize()
	}
	var v int
	err := db.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+table+` WHERE component = $1`, component).Scan(&v)
	if err != nil {
		return 0, nil
	}
	return v, nil
}
