package aggregates_test

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
)

// TestCommandRetriedAfterItLandedCountsOnce: a command whose first Handle
// timed out after its append committed (so no snapshot was taken then) is
// handled again with the same command id after other commands moved the
// aggregate on. The store answers the repeated append with the original
// events; they are already in the loaded state and must not be applied a
// second time, neither in the result nor in a snapshot.
func TestCommandRetriedAfterItLandedCountsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testSchemas(t)
	store, pool := pgStore(t, s)
	if err := pgsnapshot.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t, s)
	snaps := pgsnapshot.New(pool)
	repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
		d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 2, SchemaVersion: 1}
	})
	// Another process of the same service, whose Handle of the command
	// committed and then timed out before it could take a snapshot.
	other := counterRepo(t, store, reg, nil)

	cmd := meta()
	cmd.ID = eventstore.NewID()
	handle := func(r *aggregates.Repository[Counter], m aggregates.CommandMeta) aggregates.Result[Counter] {
		t.Helper()
		res, err := r.Handle(ctx, "r1", m, add("r1", 1))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	handle(repo, meta())  // v1
	handle(repo, meta())  // v2, snapshot at v2
	handle(other, meta()) // v3
	first := handle(other, cmd)
	handle(other, meta()) // v5
	if first.Events[0].Version != 4 {
		t.Fatalf("the command landed at v%d, want v4", first.Events[0].Version)
	}

	again := handle(repo, cmd)
	if len(again.Events) != 1 || again.Events[0].ID != first.Events[0].ID || again.Events[0].Version != 4 {
		t.Fatalf("the retry returned %+v, want the original event at v4", again.Events)
	}
	if got := again.Aggregate; got.Version != 5 || got.State.Total != 5 {
		t.Fatalf("the retry's aggregate is v%d total %d, want v5 total 5", got.Version, got.State.Total)
	}
	if n := streamLen(t, store, "counter-r1"); n != 5 {
		t.Fatalf("the stream has %d events, want 5", n)
	}
	a, err := repo.Load(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 5 || a.State.Total != 5 || a.State.Adds != 5 {
		t.Fatalf("loaded (from the snapshot) v%d %+v, want v5 total 5", a.Version, a.State)
	}
	if snap, ok, err := snaps.Load(ctx, "counter-r1", 1); err != nil || !ok || snap.Version != 2 {
		t.Fatalf("snapshot = v%d %v %v, want the one taken at v2 left alone", snap.Version, ok, err)
	}
}
