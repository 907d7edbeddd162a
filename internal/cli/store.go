package cli

import (
	"context"
	"fmt"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/schemas"
)

// Store kinds accepted by --store.
const (
	storePostgres = "postgres"
	storeESDB     = "esdb"
	storeMemory   = "memory"
)

// backend is an open event log and the PostgreSQL database that holds the
// read models (and the log itself with --store postgres).
type backend struct {
	Store    eventstore.Store
	Registry *schemas.Registry
	// DB is nil for a log-only command whose log is not in PostgreSQL.
	DB *database
	// PG is the PostgreSQL store when the log lives in PostgreSQL.
	PG *postgres.Store
	// Kind is the --store value.
	Kind string

	standIn *esdbtest.Server
}

// Close closes the store, then the database.
func (b *backend) Close() {
	if b == nil {
		return
	}
	if b.Store != nil {
		_ = b.Store.Close()
	}
	if b.standIn != nil {
		b.standIn.Stop()
	}
	b.DB.Close()
}

// storeOptions say what a command needs besides the log.
type storeOptions struct {
	connectOptions
	// logOnly: the command touches only the log, so with --store esdb or
	// memory no PostgreSQL connection is made.
	logOnly bool
	// devStandIn lets demo and serve --dev start the in-process
	// EventStoreDB protocol stand-in when --store esdb has no URL.
	devStandIn bool
	// migrations, when not nil, receives what migrateAll applied; the
	// read models' migrations then run too.
	migrations *[]migrationResult
}

// openStore connects to the database and opens the log chosen with
// --store. The log's migrations are applied if they have not run.
func (a *app) openStore(ctx context.Context, opts storeOptions) (*backend, error) {
	kind, err := a.storeKindChecked()
	if err != nil {
		return nil, err
	}
	reg, err := schemas.Default()
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	b := &backend{Registry: reg, Kind: kind}
	if kind == storePostgres || !opts.logOnly {
		if b.DB, err = a.openDB(ctx, opts.connectOptions); err != nil {
			return nil, err
		}
		if opts.migrations != nil {
			if *opts.migrations, err = a.migrateAll(ctx, b.DB, kind == storePostgres); err != nil {
				b.Close()
				return nil, lostDuringMigrate(ctx, err)
			}
		}
	}
	switch kind {
	case storeMemory:
		s, err := memory.New(reg)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.Store = s
	case storeESDB:
		u := a.eventstoreURLOrEnv()
		if u == "" && opts.devStandIn {
			srv, err := esdbtest.Start(context.WithoutCancel(ctx))
			if err != nil {
				b.Close()
				return nil, err
			}
			b.standIn = srv
			u = srv.URL()
			a.stderrf("no --eventstore-url given; started the in-process EventStoreDB protocol stand-in (memory only, not EventStoreDB) at %s\n", u)
		}
		if u == "" {
			b.Close()
			return nil, usagef("--store esdb needs --eventstore-url (or EVENTSTORE_URL), e.g. esdb://127.0.0.1:2113?tls=false")
		}
		s, err := esdb.New(ctx, u, reg, esdb.WithLogger(a.log))
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("%w; %s", err, "check --eventstore-url (or EVENTSTORE_URL)")
		}
		b.Store = s
	default:
		s, err := postgres.New(ctx, b.DB.Pool, reg, postgres.Options{Logger: a.log})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("open the PostgreSQL event store: %w", err)
		}
		b.Store, b.PG = s, s
	}
	return b, nil
}

func (a *app) storeKindChecked() (string, error) {
	k := a.storeKind
	if k == "" {
		k = a.getenv("EVENTSTREAM_STORE")
	}
	switch k {
	case "", storePostgres:
		return storePostgres, nil
	case storeESDB, storeMemory:
		return k, nil
	}
	return "", usagef("--store %q: want postgres, esdb or memory", k)
}

func (a *app) eventstoreURLOrEnv() string {
	if a.eventstoreURL != "" {
		return a.eventstoreURL
	}
	return a.getenv("EVENTSTORE_URL")
}
