package aggregates_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/syncbuf"
)

// countingStore counts the events ReadStream returns.
type countingStore struct {
	eventstore.Store
	mu    sync.Mutex
	read  int
	calls int
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadStream(ctx, stream, from, limit)
	c.mu.Lock()
	c.read += len(evs)
	c.calls++
	c.mu.Unlock()
	return evs, err
}

// takeCalls returns the ReadStream calls since the last takeCalls.
func (c *countingStore) takeCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.calls
	c.calls = 0
	return n
}

func (c *countingStore) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.read
	c.read = 0
	return n
}

// snapshotSuite runs the snapshot behaviour against a store of snapshots.
func snapshotSuite(t *testing.T, store eventstore.Store, snaps aggregates.SnapshotStore, plant func(aggregates.Snapshot)) {
	ctx := context.Background()
	reg := testRegistry(t, testSchemas(t))
	counting := &countingStore{Store: store}
	policy := &aggregates.SnapshotPolicy{Store: snaps, Every: 10, SchemaVersion: 1}
	repo := counterRepo(t, counting, reg, func(d *aggregates.Definition[Counter]) { d.Snapshots = policy })

	for i := 0; i < 25; i++ {
		if _, err := repo.Handle(ctx, "s1", meta(), add("s1", 1)); err != nil {
			t.Fatal(err)
		}
	}
	snap, ok, err := snaps.Load(ctx, "counter-s1", 1)
	if err != nil || !ok {
		t.Fatalf("no snapshot after 25 events: %v", err)
	}
	if snap.Version != 20 || snap.Aggregate != "counter" {
		t.Fatalf("snapshot at v%d of %q, want v20 of counter", snap.Version, snap.Aggregate)
	}

	counting.take()
	a, err := repo.Load(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 25 || a.State.Total != 25 || a.State.Adds != 25 {
		t.Fatalf("loaded v%d %+v, want v25 total 25", a.Version, a.State)
	}
	if got := counting.take(); got != 6 {
		t.Fatalf("load read %d events, want 6 (the snapshot's own, which proves the log has reached it, and the 5 after it)", got)
	}

	// A stream at its snapshot's version loads in one read too.
	for range 20 {
		if _, err := repo.Handle(ctx, "at-snapshot", meta(), add("at-snapshot", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if snap, ok, err := snaps.Load(ctx, "counter-at-snapshot", 1); err != nil || !ok || snap.Version != 20 {
		t.Fatalf("snapshot after 20 events: v%d %v %v, want v20", snap.Version, ok, err)
	}
	counting.takeCalls()
	if a, err := repo.Load(ctx, "at-snapshot"); err != nil || a.Version != 20 || a.State.Total != 20 {
		t.Fatalf("load at the snapshot's version: %+v %v, want v20 total 20", a, err)
	}
	if got := counting.takeCalls(); got != 1 {
		t.Fatalf("a load at the snapshot's version read the stream %d times, want once", got)
	}
	counting.take()

	t.Run("other schema version is ignored", func(t *testing.T) {
		other := counterRepo(t, counting, reg, func(d *aggregates.Definition[Counter]) {
			d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1000, SchemaVersion: 2}
		})
		counting.take()
		a, err := other.Load(ctx, "s1")
		if err != nil || a.State.Total != 25 {
			t.Fatalf("load = %+v, %v", a, err)
		}
		if got := counting.take(); got != 25 {
			t.Fatalf("read %d events, want all 25", got)
		}
	})

	t.Run("unreadable snapshot is ignored", func(t *testing.T) {
		plant(aggregates.Snapshot{Stream: "counter-s1", Aggregate: "counter", Version: 24, SchemaVersion: 1, State: json.RawMessage(`{"total":"not a number"}`)})
		counting.take()
		a, err := repo.Load(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != 25 || a.State.Total != 25 {
			t.Fatalf("loaded v%d %+v, want the state rebuilt from events", a.Version, a.State)
		}
		if got := counting.take(); got != 25 {
			t.Fatalf("read %d events, want all 25", got)
		}
	})

	t.Run("snapshot of null is ignored", func(t *testing.T) {
		// JSON null decodes into a struct without an error, leaving the
		// blank state at the snapshot's version; no state encodes so.
		plant(aggregates.Snapshot{Stream: "counter-s1", Aggregate: "counter", Version: 25, SchemaVersion: 1, State: json.RawMessage(`null`)})
		a, err := repo.Load(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != 25 || a.State.Total != 25 || a.State.Adds != 25 {
			t.Fatalf("loaded v%d %+v, want v25 total 25 rebuilt from events", a.Version, a.State)
		}
	})

	t.Run("snapshot ahead of the log is not trusted", func(t *testing.T) {
		plant(aggregates.Snapshot{Stream: "counter-s1", Aggregate: "counter", Version: 40, SchemaVersion: 1, State: json.RawMessage(`{"total":999,"adds":40}`)})
		// The load finds the stream short of v40 and rebuilds from
		// events, so the command needs no second attempt.
		res, err := repo.Handle(ctx, "s1", meta(), add("s1", 1))
		if err != nil {
			t.Fatal(err)
		}
		if res.Aggregate.Version != 26 || res.Aggregate.State.Total != 26 || res.Attempts != 1 {
			t.Fatalf("after command: v%d %+v in %d attempts, want v26 total 26 in 1", res.Aggregate.Version, res.Aggregate.State, res.Attempts)
		}
	})

	t.Run("snapshot of a stream with no events is ignored", func(t *testing.T) {
		plant(aggregates.Snapshot{Stream: "counter-ghost", Aggregate: "counter", Version: 3, SchemaVersion: 1, State: json.RawMessage(`{"total":3}`)})
		a, err := repo.LoadFromEvents(ctx, "ghost")
		if err != nil || a.Exists() {
			t.Fatalf("LoadFromEvents = %+v, %v", a, err)
		}
		res, err := repo.Handle(ctx, "ghost", meta(), add("ghost", 1))
		if err != nil {
			t.Fatal(err)
		}
		if res.Aggregate.Version != 1 || res.Aggregate.State.Total != 1 {
			t.Fatalf("after command: v%d %+v, want v1 total 1", res.Aggregate.Version, res.Aggregate.State)
		}
	})
}

func TestSnapshotsInMemory(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	snaps := &aggregates.MemorySnapshots{}
	snapshotSuite(t, memStore(t, s), snaps, snaps.Put)
}

func TestSnapshotsInPostgres(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store, pool := pgStore(t, s)
	ctx := context.Background()
	if err := pgsnapshot.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := pgsnapshot.Migrate(ctx, pool); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	snaps := pgsnapshot.New(pool)
	plant := func(sn aggregates.Snapshot) {
		if _, err := pool.Exec(ctx, `UPDATE aggregate_snapshots SET version = $3, state = $4 WHERE stream = $1 AND schema_version = $2`,
			sn.Stream, sn.SchemaVersion, sn.Version, string(sn.State)); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, state) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			sn.Stream, sn.SchemaVersion, sn.Aggregate, sn.Version, string(sn.State)); err != nil {
			t.Fatal(err)
		}
	}
	snapshotSuite(t, store, snaps, plant)
}

// TestSnapshotSchemaVersionFromDefinition: a policy without a schema
// version takes the definition's; with neither, the repository refuses.
func TestSnapshotSchemaVersionFromDefinition(t *testing.T) {
	ctx := context.Background()
	s := testSchemas(t)
	reg := testRegistry(t, s)
	store := memStore(t, s)
	snaps := &aggregates.MemorySnapshots{}
	repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
		d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 2}
		d.SnapshotSchemaVersion = 3
	})
	for i := 0; i < 2; i++ {
		if _, err := repo.Handle(ctx, "v", meta(), add("v", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := snaps.Load(ctx, "counter-v", 3); err != nil || !ok {
		t.Fatalf("no snapshot at the definition's schema version 3: %v", err)
	}
	_, err := aggregates.NewRepository(store, reg, aggregates.Definition[Counter]{Name: "counter", Source: "test", Apply: applyCounter,
		Snapshots: &aggregates.SnapshotPolicy{Store: snaps, Every: 2}})
	if err == nil {
		t.Fatal("a snapshot policy with no schema version anywhere was accepted")
	}
}

// TestSnapshotAheadOfTheLogIsNotTrusted: a snapshot at a version the
// stream has not reached (the stream was truncated, or recreated shorter)
// is ignored by Load, which rebuilds from events, and by Handle before it
// decides: a command must not be refused on a state the log never had.
func TestSnapshotAheadOfTheLogIsNotTrusted(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, store eventstore.Store, snaps aggregates.SnapshotStore, plant func(aggregates.Snapshot)) {
		ctx := context.Background()
		reg := testRegistry(t, testSchemas(t))
		repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) {
			d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1000, SchemaVersion: 1}
		})
		for range 3 {
			if _, err := repo.Handle(ctx, "a1", meta(), add("a1", 1)); err != nil {
				t.Fatal(err)
			}
		}
		// At the limit, as the log never was: one more is refused there.
		plant(aggregates.Snapshot{Stream: "counter-a1", Aggregate: "counter", Version: 9, SchemaVersion: 1,
			State: json.RawMessage(fmt.Sprintf(`{"total":%d,"adds":9}`, limit))})

		a, err := repo.Load(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != 3 || a.State.Total != 3 || a.State.Adds != 3 {
			t.Fatalf("loaded v%d %+v, want v3 total 3 from the events", a.Version, a.State)
		}
		res, err := repo.Handle(ctx, "a1", meta(), add("a1", 1))
		if err != nil {
			t.Fatalf("a command on the aggregate: %v, want it decided on the log's state", err)
		}
		if res.Aggregate.Version != 4 || res.Aggregate.State.Total != 4 {
			t.Fatalf("after the command: v%d %+v, want v4 total 4", res.Aggregate.Version, res.Aggregate.State)
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		snaps := &aggregates.MemorySnapshots{}
		run(t, memStore(t, testSchemas(t)), snaps, snaps.Put)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		store, pool := pgSnapshotStore(t, testSchemas(t))
		run(t, store, pgsnapshot.New(pool), func(sn aggregates.Snapshot) {
			if _, err := pool.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, state) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (stream, schema_version) DO UPDATE SET version = excluded.version, state = excluded.state`,
				sn.Stream, sn.SchemaVersion, sn.Aggregate, sn.Version, string(sn.State)); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// TestCancelledLoadDoesNotBlameTheSnapshot: a load whose context is
// cancelled returns the cancellation, and does not log that the snapshot
// is unreadable and the aggregate rebuilt (neither is true), which would
// send an operator to inspect aggregate_snapshots for every client that
// went away.
func TestCancelledLoadDoesNotBlameTheSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testSchemas(t)
	store, pool := pgSnapshotStore(t, s)
	var logs syncbuf.Buffer
	repo := counterRepo(t, store, testRegistry(t, s), func(d *aggregates.Definition[Counter]) {
		d.Snapshots = &aggregates.SnapshotPolicy{Store: pgsnapshot.New(pool), Every: 1, SchemaVersion: 1}
		d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if _, err := repo.Handle(ctx, "k1", meta(), add("k1", 1)); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := repo.Load(cctx, "k1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load = %v, want context.Canceled", err)
	}
	if _, err := repo.Handle(cctx, "k1", meta(), add("k1", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle = %v, want context.Canceled", err)
	}
	if logs.Len() > 0 {
		t.Fatalf("a cancelled load logged:\n%s", logs.String())
	}
}

// snapshotBackends are the snapshot stores under test, each with two event
// stores (two logs that may hold streams of the same name, as a stream
// recreated elsewhere does) and a way to plant a snapshot as it was
// written before snapshots recorded their event's id.
var snapshotBackends = []struct {
	name string
	open func(t *testing.T) (x, y eventstore.Store, snaps aggregates.SnapshotStore, plantLegacy func(aggregates.Snapshot))
}{
	{"memory", func(t *testing.T) (eventstore.Store, eventstore.Store, aggregates.SnapshotStore, func(aggregates.Snapshot)) {
		s := testSchemas(t)
		snaps := &aggregates.MemorySnapshots{}
		return memStore(t, s), memStore(t, s), snaps, func(sn aggregates.Snapshot) {
			sn.EventID = uuid.Nil
			snaps.Put(sn)
		}
	}},
	{"postgres", func(t *testing.T) (eventstore.Store, eventstore.Store, aggregates.SnapshotStore, func(aggregates.Snapshot)) {
		s := testSchemas(t)
		x, pool := pgSnapshotStore(t, s)
		y, _ := pgStore(t, s)
		return x, y, pgsnapshot.New(pool), func(sn aggregates.Snapshot) {
			ctx := context.Background()
			// The columns of migration 001 only: event_id is left NULL.
			if _, err := pool.Exec(ctx, `DELETE FROM aggregate_snapshots WHERE stream = $1 AND schema_version = $2`, sn.Stream, sn.SchemaVersion); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, state) VALUES ($1, $2, $3, $4, $5)`,
				sn.Stream, sn.SchemaVersion, sn.Aggregate, sn.Version, string(sn.State)); err != nil {
				t.Fatal(err)
			}
		}
	}},
}

// handleN handles n commands adding by to the counter id.
func handleN(t *testing.T, repo *aggregates.Repository[Counter], id string, n, by int) {
	t.Helper()
	for range n {
		if _, err := repo.Handle(context.Background(), id, meta(), add(id, by)); err != nil {
			t.Fatal(err)
		}
	}
}

// loadCounting loads id and returns how many events the load read.
func loadCounting(t *testing.T, repo *aggregates.Repository[Counter], counting *countingStore, id string) (*aggregates.Aggregate[Counter], int) {
	t.Helper()
	counting.take()
	a, err := repo.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a, counting.take()
}

// wantReplay fails unless a is what a replay of the whole stream gives.
func wantReplay(t *testing.T, repo *aggregates.Repository[Counter], a *aggregates.Aggregate[Counter]) {
	t.Helper()
	full, err := repo.LoadFromEvents(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != full.Version || a.State != full.State {
		t.Fatalf("loaded v%d %+v, want v%d %+v as a replay of the log gives", a.Version, a.State, full.Version, full.State)
	}
}

// wantSnapshotOf fails unless the stored snapshot of stream is at version
// and taken at the log's event there.
func wantSnapshotOf(t *testing.T, snaps aggregates.SnapshotStore, store eventstore.Store, stream string, version int64) {
	t.Helper()
	ctx := context.Background()
	sn, ok, err := snaps.Load(ctx, stream, 1)
	if err != nil || !ok {
		t.Fatalf("no snapshot of %s: %v", stream, err)
	}
	evs, err := store.ReadStream(ctx, stream, version, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read %s v%d: %v %v", stream, version, evs, err)
	}
	if sn.Version != version || sn.EventID != evs[0].ID {
		t.Fatalf("snapshot of %s at v%d taken at event %s, want v%d at the log's event %s", stream, sn.Version, sn.EventID, version, evs[0].ID)
	}
}

// TestSnapshotAheadOfTheLogIsNotUsedOnceTheStreamPassesIt: a snapshot of
// a stream of the same name in another log (a stream recreated, a state
// from an append that never committed there) is ahead of this stream,
// and ignored; once the stream grows past its version it must still not
// be used, since its state was never this log's. The command after that
// replaces it, and the replacement is used.
func TestSnapshotAheadOfTheLogIsNotUsedOnceTheStreamPassesIt(t *testing.T) {
	t.Parallel()
	for _, b := range snapshotBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			x, y, snaps, _ := b.open(t)
			reg := testRegistry(t, testSchemas(t))
			elsewhere := counterRepo(t, x, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 10, SchemaVersion: 1}
			})
			counting := &countingStore{Store: y}
			var logs syncbuf.Buffer
			repo := counterRepo(t, counting, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1000, SchemaVersion: 1}
				d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})

			handleN(t, elsewhere, "c1", 10, 100) // a snapshot at v10, total 1000
			handleN(t, repo, "c1", 3, 1)
			a, _ := loadCounting(t, repo, counting, "c1")
			wantReplay(t, repo, a)

			// Another process, taking no snapshots, moves the stream past
			// the snapshot's version.
			handleN(t, counterRepo(t, y, reg, nil), "c1", 9, 1) // v12
			a, _ = loadCounting(t, repo, counting, "c1")
			if a.Version != 12 || a.State.Total != 12 {
				t.Fatalf("loaded v%d %+v, want v12 total 12 (not the other log's state)", a.Version, a.State)
			}
			wantReplay(t, repo, a)
			logged := logs.String()
			if !strings.Contains(logged, "another event") || !strings.Contains(logged, "counter-c1") {
				t.Fatalf("the discarded snapshot was not logged:\n%s", logged)
			}

			// The next command takes a snapshot, Every notwithstanding,
			// over the discarded one; loads use it.
			handleN(t, repo, "c1", 1, 1)
			wantSnapshotOf(t, snaps, y, "counter-c1", 13)
			a, read := loadCounting(t, repo, counting, "c1")
			if a.Version != 13 || a.State.Total != 13 || read != 1 {
				t.Fatalf("loaded v%d %+v reading %d events, want v13 total 13 from the new snapshot reading 1", a.Version, a.State, read)
			}
		})
	}
}

// TestSnapshotTakenAtAnotherEventIsDiscarded: a snapshot at the stream's
// own version whose event id is not the log's event there is discarded,
// the state is the log's, and the next snapshot, at the same version,
// replaces it.
func TestSnapshotTakenAtAnotherEventIsDiscarded(t *testing.T) {
	t.Parallel()
	for _, b := range snapshotBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			x, y, snaps, _ := b.open(t)
			reg := testRegistry(t, testSchemas(t))
			elsewhere := counterRepo(t, x, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 10, SchemaVersion: 1}
			})
			counting := &countingStore{Store: y}
			repo := counterRepo(t, counting, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1000, SchemaVersion: 1}
			})
			handleN(t, elsewhere, "e1", 10, 100)
			handleN(t, repo, "e1", 10, 1)

			a, _ := loadCounting(t, repo, counting, "e1")
			if a.Version != 10 || a.State.Total != 10 {
				t.Fatalf("loaded v%d %+v, want v10 total 10 (not the other log's state)", a.Version, a.State)
			}
			wantReplay(t, repo, a)

			if err := repo.TakeSnapshot(context.Background(), "e1"); err != nil {
				t.Fatal(err)
			}
			wantSnapshotOf(t, snaps, y, "counter-e1", 10)
			a, read := loadCounting(t, repo, counting, "e1")
			if a.Version != 10 || a.State.Total != 10 || read != 1 {
				t.Fatalf("loaded v%d %+v reading %d events, want v10 total 10 from the new snapshot reading 1", a.Version, a.State, read)
			}
		})
	}
}

// TestSnapshotWithoutEventIDIsReplaced: a snapshot written before
// snapshots recorded their event's id cannot be checked against the log,
// so it is not used (a damaged one would be, for good), and the next
// command replaces it with one that can, even at a lower version.
func TestSnapshotWithoutEventIDIsReplaced(t *testing.T) {
	t.Parallel()
	for _, b := range snapshotBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			_, y, snaps, plantLegacy := b.open(t)
			reg := testRegistry(t, testSchemas(t))
			counting := &countingStore{Store: y}
			repo := counterRepo(t, counting, reg, func(d *aggregates.Definition[Counter]) {
				d.Snapshots = &aggregates.SnapshotPolicy{Store: snaps, Every: 1000, SchemaVersion: 1}
			})
			handleN(t, repo, "l1", 5, 1)

			plantLegacy(aggregates.Snapshot{Stream: "counter-l1", Aggregate: "counter", Version: 4, SchemaVersion: 1,
				State: json.RawMessage(`{"total":400,"adds":4}`)})
			a, _ := loadCounting(t, repo, counting, "l1")
			wantReplay(t, repo, a)
			handleN(t, repo, "l1", 1, 1)
			wantSnapshotOf(t, snaps, y, "counter-l1", 6)

			// Ahead of the log too: a lower version replaces it.
			plantLegacy(aggregates.Snapshot{Stream: "counter-l1", Aggregate: "counter", Version: 9, SchemaVersion: 1,
				State: json.RawMessage(`{"total":900,"adds":9}`)})
			handleN(t, repo, "l1", 1, 1)
			wantSnapshotOf(t, snaps, y, "counter-l1", 7)
			a, read := loadCounting(t, repo, counting, "l1")
			if a.Version != 7 || a.State.Total != 7 || read != 1 {
				t.Fatalf("loaded v%d %+v reading %d events, want v7 total 7 from the new snapshot reading 1", a.Version, a.State, read)
			}
		})
	}
}

// TestSnapshotStoreSave: both stores keep the newest snapshot that records
// its event, and let a snapshot without one, or one the log disowns at its
// own version, be replaced.
func TestSnapshotStoreSave(t *testing.T) {
	t.Parallel()
	for _, b := range snapshotBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			_, _, snaps, plantLegacy := b.open(t)
			ids := [4]uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()}
			save := func(version int64, id uuid.UUID) {
				t.Helper()
				if err := snaps.Save(ctx, aggregates.Snapshot{Stream: "x", Aggregate: "counter", Version: version, EventID: id, SchemaVersion: 1,
					State: json.RawMessage(fmt.Sprintf(`{"total":%d}`, version))}); err != nil {
					t.Fatal(err)
				}
			}
			want := func(version int64, id uuid.UUID, why string) {
				t.Helper()
				got, ok, err := snaps.Load(ctx, "x", 1)
				var state Counter
				if err == nil && ok {
					err = json.Unmarshal(got.State, &state)
				}
				if err != nil || !ok || got.Version != version || got.EventID != id || got.Aggregate != "counter" || state.Total != int(version) {
					t.Fatalf("Load = v%d at event %s of %q, state %s, %v %v; want v%d at event %s: %s",
						got.Version, got.EventID, got.Aggregate, got.State, ok, err, version, id, why)
				}
			}
			save(5, ids[0])
			save(3, ids[1])
			want(5, ids[0], "the newest kept over an older save")
			save(5, ids[2])
			want(5, ids[2], "a snapshot at the same version taken at another event replaced")
			plantLegacy(aggregates.Snapshot{Stream: "x", Aggregate: "counter", Version: 9, SchemaVersion: 1, State: json.RawMessage(`{"total":9}`)})
			save(4, ids[3])
			want(4, ids[3], "a snapshot without an event id replaced by an older one")
			if _, ok, _ := snaps.Load(ctx, "x", 2); ok {
				t.Fatal("Load found a snapshot at another schema version")
			}
		})
	}
}
