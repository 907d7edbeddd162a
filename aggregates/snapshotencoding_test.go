package aggregates_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
)

// totalOnly is an earlier shape of Counter: it counted the total only.
type totalOnly struct {
	Total int `json:"total"`
}

func applyTotalOnly(s *totalOnly, e aggregates.Event) error {
	if d, ok := e.Data.(Added); ok {
		s.Total += d.N
	}
	return nil
}

// TestSnapshotOfAnotherStateShapeIsNotTrusted: a snapshot whose JSON is
// not what its state encodes to (the state type gained or lost a field
// and SchemaVersion was not bumped) decodes without an error into a state
// the log never had: the new field at its zero value. The load rebuilds
// from events instead.
func TestSnapshotOfAnotherStateShapeIsNotTrusted(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) (eventstore.Store, aggregates.SnapshotStore)
	}{
		{"memory", func(t *testing.T) (eventstore.Store, aggregates.SnapshotStore) {
			return memStore(t, s), &aggregates.MemorySnapshots{}
		}},
		{"postgres", func(t *testing.T) (eventstore.Store, aggregates.SnapshotStore) {
			store, pool := pgSnapshotStore(t, s)
			return store, pgsnapshot.New(pool)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			reg := testRegistry(t, s)
			store, snaps := tc.store(t)
			policy := &aggregates.SnapshotPolicy{Store: snaps, Every: 1, SchemaVersion: 1}
			old, err := aggregates.NewRepository(store, reg, aggregates.Definition[totalOnly]{Name: "counter", Source: "test", Apply: applyTotalOnly, Snapshots: policy})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := old.Handle(ctx, "shape", meta(), func(a *aggregates.Aggregate[totalOnly]) ([]any, error) {
					return []any{Added{CounterID: "shape", N: 2}}, nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			if sn, ok, err := snaps.Load(ctx, "counter-shape", 1); err != nil || !ok || sn.Version != 3 {
				t.Fatalf("snapshot of the old shape: v%d %v %v, want v3", sn.Version, ok, err)
			}

			// Every: 100, so that the snapshot after the command is the
			// one that replaces the discarded row.
			repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 100, SchemaVersion: 1}
			})
			a, err := repo.Load(ctx, "shape")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := a.State, (Counter{Total: 6, Adds: 3}); got != want || a.Version != 3 {
				t.Fatalf("Load = %+v at v%d, want %+v at v3 (rebuilt from events)", got, a.Version, want)
			}
			res, err := repo.Handle(ctx, "shape", meta(), add("shape", 1))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Aggregate.State, (Counter{Total: 7, Adds: 4}); got != want {
				t.Fatalf("Handle = %+v, want %+v", got, want)
			}
			if a, err := repo.Load(ctx, "shape"); err != nil || a.State != (Counter{Total: 7, Adds: 4}) {
				t.Fatalf("Load after the command = %+v, %v; want total 7 adds 4", a, err)
			}
			sn, ok, err := snaps.Load(ctx, "counter-shape", 1)
			var got Counter
			if err != nil || !ok || sn.Version != 4 || json.Unmarshal(sn.State, &got) != nil || got != (Counter{Total: 7, Adds: 4}) {
				t.Fatalf("snapshot after the command: v%d %s %v %v, want v4 of total 7 adds 4 replacing the old shape", sn.Version, sn.State, ok, err)
			}
		})
	}
}
