// Package domaintest sets up the four domain modules over a store for
// tests, and checks what was written.
package domaintest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// Clock is a settable clock for governance.
type Clock struct{ T time.Time }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return c.T }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.T = c.T.Add(d) }

// Env is the modules over one store.
type Env struct {
	*domain.Services
	Store eventstore.Store
	Clock *Clock
	// Pool is the PostgreSQL pool (nil for the memory store).
	Pool *pgxpool.Pool
}

// Memory returns the modules over a fresh in-memory store.
func Memory(t testing.TB, opts domain.Options) *Env {
	t.Helper()
	s := schemas.MustDefault()
	st, err := memory.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return build(t, st, opts)
}

// Backends are the names OnBackend takes.
var Backends = []string{"memory", "postgres"}

// OnBackend returns the modules over a fresh store of the backend named
// ("memory" or "postgres", without snapshots), for a test run on each.
func OnBackend(t testing.TB, backend string, opts domain.Options) *Env {
	t.Helper()
	if backend == "memory" {
		return Memory(t, opts)
	}
	return Postgres(t, opts, false)
}

// Postgres returns the modules over a PostgreSQL store in a fresh schema,
// with the snapshot table migrated; when snapshots is true, the course,
// distribution and mission aggregates keep their snapshots there.
func Postgres(t testing.TB, opts domain.Options, snapshots bool) *Env {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	st, err := postgres.New(ctx, pool, schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := pgsnapshot.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if snapshots {
		opts.Snapshots = pgsnapshot.New(pool)
	}
	env := build(t, st, opts)
	env.Pool = pool
	return env
}

func build(t testing.TB, st eventstore.Store, opts domain.Options) *Env {
	reg, err := domain.NewRegistry(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	clock := &Clock{T: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	svc, err := domain.New(st, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Services: svc, Store: st, Clock: clock}
}

// Meta is a command for tenant t1.
func Meta() aggregates.CommandMeta { return aggregates.CommandMeta{TenantID: "t1"} }

// Types returns the types of a stream's events in order (nil: no stream).
func Types(t testing.TB, st eventstore.Store, stream string) []string {
	t.Helper()
	evs, err := st.ReadStream(context.Background(), stream, 1, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// Head returns the log's head position.
func Head(t testing.TB, st eventstore.Store) eventstore.Position {
	t.Helper()
	p, err := st.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Refused checks that err is the refusal want (a *aggregates.RuleError
// sentinel, aggregates.ErrNotFound or eventstore.ErrValidation) and that
// the log did not move from before.
func Refused(t testing.TB, st eventstore.Store, before eventstore.Position, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("command accepted, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var re *aggregates.RuleError
	if errors.As(err, &re) && (re.Rule == "" || re.Aggregate == "" || re.ID == "") {
		t.Fatalf("rule error %+v does not say which rule and aggregate", re)
	}
	if after := Head(t, st); after != before {
		t.Fatalf("log moved from %s to %s on a refused command", before, after)
	}
}
