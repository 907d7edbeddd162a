package aggregates_test

import (
	"context"
	"errors"
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
	store, pool := pgSnapshotStore(t, s)
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

// fill adds what the counter lacks to reach to, and refuses a counter that
// is there already: retried after it landed, it decides otherwise.
func fill(id string, to int) aggregates.Decider[Counter] {
	return func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		if a.State.Total >= to {
			return nil, aggregates.Refuse(ErrLimit, "%d is at least %d", a.State.Total, to)
		}
		return []any{Added{CounterID: id, N: to - a.State.Total}}, nil
	}
}

// TestCommandRetriedAfterItLandedGetsItsResult: a command retried after it
// landed, which the state with its own event now refuses, returns the
// original result, also when the aggregate is loaded from a snapshot taken
// after the command (so that its event is not among those loaded). Another
// command is refused as before, and the command's id given to another
// command is ErrCommandReused.
func TestCommandRetriedAfterItLandedGetsItsResult(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, store eventstore.Store, snaps aggregates.SnapshotStore) {
		ctx := context.Background()
		reg := testRegistry(t, testSchemas(t))
		repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
			d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 2, SchemaVersion: 1}
		})
		cmd := meta()
		cmd.ID = eventstore.NewID()
		must := func(m aggregates.CommandMeta, d aggregates.Decider[Counter]) aggregates.Result[Counter] {
			t.Helper()
			res, err := repo.Handle(ctx, "f1", m, d)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		must(meta(), add("f1", 1)) // v1
		first := must(cmd, fill("f1", 5))
		must(meta(), add("f1", 1)) // v3
		must(meta(), add("f1", 1)) // v4, snapshot at v4
		if snap, ok, err := snaps.Load(ctx, "counter-f1", 1); err != nil || !ok || snap.Version != 4 {
			t.Fatalf("snapshot = v%d %v %v, want v4", snap.Version, ok, err)
		}

		again, err := repo.Handle(ctx, "f1", cmd, fill("f1", 5))
		if err != nil {
			t.Fatalf("the retry failed: %v", err)
		}
		if len(again.Events) != 1 || again.Events[0].ID != first.Events[0].ID || again.Events[0].Version != 2 ||
			again.Events[0].Position != first.Events[0].Position || !eventstore.JSONEqual(again.Events[0].Payload, first.Events[0].Payload) {
			t.Fatalf("the retry returned %+v, want %+v", again.Events, first.Events)
		}
		if a := again.Aggregate; a.Version != 4 || a.State.Total != 7 {
			t.Fatalf("the retry's aggregate is v%d total %d, want v4 total 7", a.Version, a.State.Total)
		}
		if n := streamLen(t, store, "counter-f1"); n != 4 {
			t.Fatalf("the stream has %d events, want 4", n)
		}

		// Another command, deciding the same, is refused as before.
		if _, err := repo.Handle(ctx, "f1", meta(), fill("f1", 5)); !errors.Is(err, ErrLimit) {
			t.Fatalf("another fill: %v, want %v", err, ErrLimit)
		}
		// The command's id on other commands: one that decides other
		// events, one that is refused.
		for _, d := range []aggregates.Decider[Counter]{fill("f1", 6), add("f1", limit+1)} {
			_, err := repo.Handle(ctx, "f1", cmd, d)
			var re *aggregates.CommandReusedError
			if !errors.As(err, &re) || re.Version != 2 || re.CommandID != cmd.ID || !errors.Is(err, aggregates.ErrCommandReused) {
				t.Fatalf("another command with the same id: %v, want a *CommandReusedError at v2", err)
			}
		}
		if n := streamLen(t, store, "counter-f1"); n != 4 {
			t.Fatalf("the stream has %d events, want 4", n)
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		run(t, memStore(t, testSchemas(t)), &aggregates.MemorySnapshots{})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		store, pool := pgStore(t, testSchemas(t))
		if err := pgsnapshot.Migrate(context.Background(), pool); err != nil {
			t.Fatal(err)
		}
		run(t, store, pgsnapshot.New(pool))
	})
}

// TestSameCommandHandledTwiceAtOnceFromAStaleState: a command delivered
// twice (a client's retry, a redelivered reaction) is handled by two
// processes at once. The one that loaded an older state appends after the
// other has landed the same events further on, and the store answers it
// with those events. Its result, and the snapshot it takes, must be the
// state after those events, not its own stale state with them applied on
// top (which would lose the events in between, in the snapshot for good).
func TestSameCommandHandledTwiceAtOnceFromAStaleState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testSchemas(t)
	store, pool := pgSnapshotStore(t, s)
	reg := testRegistry(t, s)
	snaps := pgsnapshot.New(pool)
	late := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
		d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1, SchemaVersion: 1}
	})
	other := counterRepo(t, store, reg, nil) // another process, taking no snapshots
	_, got := raceSameCommand(t, late, other, "d1", func(id string) aggregates.Decider[Counter] { return add(id, 1) })
	if got.err != nil {
		t.Fatalf("the late process: %v", got.err)
	}
	if len(got.res.Events) != 1 || got.res.Events[0].Version != 4 {
		t.Fatalf("the late process returned %+v, want the command's event at v4", got.res.Events)
	}
	if a := got.res.Aggregate; a.Version != 4 || a.State.Total != 13 || a.State.Adds != 4 {
		t.Fatalf("the late process's aggregate is v%d %+v, want v4 total 13 adds 4", a.Version, a.State)
	}
	if n := streamLen(t, store, "counter-d1"); n != 4 {
		t.Fatalf("the stream has %d events, want 4", n)
	}
	a, err := late.Load(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 4 || a.State.Total != 13 || a.State.Adds != 4 {
		t.Fatalf("loaded v%d %+v, want v4 total 13 adds 4", a.Version, a.State)
	}
}

// TestSameCommandDecidedOtherwiseElsewhereAtOnceGetsItsResult: a command
// handled twice at once, whose decision depends on the state (fill), lands
// from the newer state in one process; the other, which loaded an older
// state, decided other content under the same event ids, and its append
// collides with them. The command landed: that caller must get its
// result, not ErrDuplicateEvent as if the id had been given to another
// command.
func TestSameCommandDecidedOtherwiseElsewhereAtOnceGetsItsResult(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, store eventstore.Store) {
		reg := testRegistry(t, testSchemas(t))
		late := counterRepo(t, store, reg, nil)
		other := counterRepo(t, store, reg, nil) // another process
		landed, got := raceSameCommand(t, late, other, "e1", func(id string) aggregates.Decider[Counter] { return fill(id, 20) })
		if got.err != nil {
			t.Fatalf("the late process: %v, want the command's result", got.err)
		}
		if len(got.res.Events) != 1 || got.res.Events[0].ID != landed.Events[0].ID || got.res.Events[0].Version != 4 {
			t.Fatalf("the late process returned %+v, want %+v", got.res.Events, landed.Events)
		}
		if a := got.res.Aggregate; a == nil || a.Version != 4 || a.State.Total != 20 {
			t.Fatalf("the late process's aggregate is %+v, want v4 total 20", a)
		}
		if n := streamLen(t, store, "counter-e1"); n != 4 {
			t.Fatalf("the stream has %d events, want 4", n)
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		run(t, memStore(t, testSchemas(t)))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		store, _ := pgStore(t, testSchemas(t))
		run(t, store)
	})
}

// handled is what a Handle returned.
type handled struct {
	res aggregates.Result[Counter]
	err error
}

// raceSameCommand handles one command in two processes at once: late loads
// stream id at v2 (two adds by other) and waits inside its decision while
// other appends v3 (add 10) and then handles the same command, which lands
// at v4; then late goes on. It returns other's result for the command and
// late's.
func raceSameCommand(t *testing.T, late, other *aggregates.Repository[Counter], id string, decide func(string) aggregates.Decider[Counter]) (aggregates.Result[Counter], handled) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if _, err := other.Handle(ctx, id, meta(), add(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := meta()
	cmd.ID = eventstore.NewID()
	loaded, gate := make(chan int64, 1), make(chan struct{})
	done := make(chan handled, 1)
	go func() {
		first := true
		res, err := late.Handle(ctx, id, cmd, func(a *aggregates.Aggregate[Counter]) ([]any, error) {
			if first {
				first = false
				loaded <- a.Version
				<-gate
			}
			return decide(id)(a)
		})
		done <- handled{res, err}
	}()
	if v := <-loaded; v != 2 {
		close(gate)
		t.Fatalf("the late process loaded v%d, want v2", v)
	}
	if _, err := other.Handle(ctx, id, meta(), add(id, 10)); err != nil { // v3
		close(gate)
		t.Fatal(err)
	}
	landed, err := other.Handle(ctx, id, cmd, decide(id)) // v4
	if err != nil || len(landed.Events) != 1 || landed.Events[0].Version != 4 {
		close(gate)
		t.Fatalf("the command in the other process: %+v, %v; want it at v4", landed.Events, err)
	}
	close(gate)
	return landed, <-done
}
