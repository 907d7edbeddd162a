package aggregates_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/eventstore"
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

	// Save keeps the newest.
	if err := snaps.Save(ctx, aggregates.Snapshot{Stream: "x", Aggregate: "counter", Version: 5, SchemaVersion: 1, State: json.RawMessage(`{"total":5}`)}); err != nil {
		t.Fatal(err)
	}
	if err := snaps.Save(ctx, aggregates.Snapshot{Stream: "x", Aggregate: "counter", Version: 3, SchemaVersion: 1, State: json.RawMessage(`{"total":3}`)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := snaps.Load(ctx, "x", 1)
	if err != nil || !ok || got.Version != 5 {
		t.Fatalf("Load = v%d %v %v, want v5 kept over an older save", got.Version, ok, err)
	}
	if _, ok, _ := snaps.Load(ctx, "x", 2); ok {
		t.Fatal("Load found a snapshot at another schema version")
	}
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
	var logs bytes.Buffer
	var mu sync.Mutex
	repo := counterRepo(t, store, testRegistry(t, s), func(d *aggregates.Definition[Counter]) {
		d.Snapshots = &aggregates.SnapshotPolicy{Store: pgsnapshot.New(pool), Every: 1, SchemaVersion: 1}
		d.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
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
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() > 0 {
		t.Fatalf("a cancelled load logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
