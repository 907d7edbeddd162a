package cli

import (
	"context"
	"fmt"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/schemas"
)

// backend is an open event log and the PostgreSQL database that holds the
// read models (and the log itself with --store postgres).
type backend struct {
	Store    eventstore.Store
	Registry *schemas.Registry
	DB       *database
	// PG is the PostgreSQL store when the log lives in PostgreSQL.
	PG *postgres.Store
}

// Close closes the store, then the database.
func (b *backend) Close() {
	if b == nil {
		return
	}
	if b.Store != nil {
		_ = b.Store.Close()
	}
	b.DB.Close()
}

// openBackend connects to the database and opens the log chosen with
// --store. The log's migrations are applied if they have not run (or all
// migrations, reported, when report is not nil).
func (a *app) openBackend(ctx context.Context, opts connectOptions) (*backend, error) {
	return a.openBackendMigrated(ctx, opts, nil)
}

func (a *app) openBackendMigrated(ctx context.Context, opts connectOptions, report *[]migrationResult) (*backend, error) {
	reg, err := schemas.Default()
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	db, err := a.openDB(ctx, opts)
	if err != nil {
		return nil, err
	}
	b := &backend{Registry: reg, DB: db}
	if report != nil {
		if *report, err = a.migrateAll(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	switch a.storeKindOrDefault() {
	case "memory":
		s, err := memory.New(reg)
		if err != nil {
			db.Close()
			return nil, err
		}
		b.Store = s
	default:
		s, err := postgres.New(ctx, db.Pool, reg)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open the PostgreSQL event store: %w", err)
		}
		b.Store, b.PG = s, s
	}
	return b, nil
}

func (a *app) storeKindOrDefault() string {
	if a.storeKind == "" {
		return "postgres"
	}
	return a.storeKind
}
