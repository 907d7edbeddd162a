package aggregates_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// The test aggregate: a counter that refuses to go past its limit.

type Added struct {
	CounterID string `json:"counter_id"`
	N         int    `json:"n"`
}

type Named struct {
	CounterID string `json:"counter_id"`
	Title     string `json:"title"`
	Lang      string `json:"lang"`
}

type Alarm struct {
	CounterID string `json:"counter_id"`
	Reason    string `json:"reason"`
}

type Counter struct {
	Total  int    `json:"total"`
	Adds   int    `json:"adds"`
	Title  string `json:"title"`
	Lang   string `json:"lang"`
	Alarms int    `json:"alarms"`
}

const limit = 100_000

var ErrLimit = aggregates.Rule("counter-limit", "a counter stays at or below its limit")

func applyCounter(s *Counter, e aggregates.Event) error {
	switch d := e.Data.(type) {
	case Added:
		s.Total += d.N
		s.Adds++
	case Named:
		s.Title, s.Lang = d.Title, d.Lang
	case Alarm:
		s.Alarms++
	default:
		return fmt.Errorf("unexpected %T", e.Data)
	}
	return nil
}

func add(id string, n int) aggregates.Decider[Counter] {
	return func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		if a.State.Total+n > limit {
			return nil, aggregates.Refuse(ErrLimit, "%d + %d > %d", a.State.Total, n, limit)
		}
		return []any{Added{CounterID: id, N: n}}, nil
	}
}

func testSchemas(t testing.TB) *schemas.Registry {
	t.Helper()
	s, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// upNamedV1 and upNamedV2 are the test type's upcaster chain.
func upNamedV1(p map[string]any) (map[string]any, error) {
	p["lang"] = "en"
	return p, nil
}

func upNamedV2(p map[string]any) (map[string]any, error) {
	p["title"] = p["name"]
	delete(p, "name")
	return p, nil
}

func testRegistry(t testing.TB, s *schemas.Registry) *aggregates.Registry {
	t.Helper()
	reg := aggregates.NewRegistry(s)
	aggregates.Register[Added](reg, "test.counter.added", 1)
	aggregates.Register[Named](reg, "test.counter.named", 3)
	aggregates.Register[Alarm](reg, "test.counter.alarm", 1)
	reg.RegisterUpcaster("test.counter.named", 1, upNamedV1)
	reg.RegisterUpcaster("test.counter.named", 2, upNamedV2)
	reg.Own("test.")
	if err := reg.Check(); err != nil {
		t.Fatal(err)
	}
	return reg
}

func memStore(t testing.TB, s *schemas.Registry) *memory.Store {
	t.Helper()
	st, err := memory.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func pgStore(t testing.TB, s *schemas.Registry) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	st, err := postgres.New(context.Background(), pool, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, pool
}

func counterRepo(t testing.TB, store eventstore.Store, reg *aggregates.Registry, mod func(*aggregates.Definition[Counter])) *aggregates.Repository[Counter] {
	t.Helper()
	def := aggregates.Definition[Counter]{Name: "counter", Source: "test", Apply: applyCounter}
	if mod != nil {
		mod(&def)
	}
	r, err := aggregates.NewRepository(store, reg, def)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func meta() aggregates.CommandMeta { return aggregates.CommandMeta{TenantID: "t1"} }

// streamLen returns how many events a stream has (0: none).
func streamLen(t testing.TB, store eventstore.Store, stream string) int {
	t.Helper()
	evs, err := store.ReadStream(context.Background(), stream, 1, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// pgSnapshotStore is pgStore with the snapshot table migrated in its schema.
func pgSnapshotStore(t *testing.T, s *schemas.Registry) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	store, pool := pgStore(t, s)
	if err := pgsnapshot.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return store, pool
}
