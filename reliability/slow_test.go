package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgcluster"
	"github.com/brainhq/eventstream/projections"
)

// heapInuse returns the heap in use after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSlowConsumerNeverBlocksAppends appends far more data than the
// memory bound while a live subscription does not read at all and a
// projection is slower than the append rate (its handler sleeps on every
// batch). Appends must all complete regardless (they do not wait for
// consumers), the process's heap must not grow by more than the bound (no
// one buffers the backlog: the consumers read from the database when they
// are ready), and once the load stops both consumers catch up and hold
// every event exactly once.
func TestSlowConsumerNeverBlocksAppends(t *testing.T) {
	const (
		writers      = 8
		batches      = 44 // per writer
		batchEvents  = 10
		noteBytes    = 16 << 10
		heapBoundMiB = 24
	)
	cluster := pgcluster.Start(t)
	reg := registry(t)
	pool := openPool(t, cluster.URL(""), 12)
	store := openStore(t, pool, reg, postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A subscription that takes one batch, then stops reading until the load
	// is over.
	stalled, err := store.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	// A projection slower than the writers while slow is set.
	var slow atomic.Bool
	slow.Store(true)
	slowProjection := projections.Projection{
		Name:    "slow_reader",
		Handles: projections.Types(1, probeType),
		Migrations: fstest.MapFS{"001_seen.up.sql": {Data: []byte(
			`CREATE TABLE slow_seen (event_id uuid PRIMARY KEY, position bigint NOT NULL UNIQUE)`)}},
		Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
			if slow.Load() {
				time.Sleep(100 * time.Millisecond)
			}
			rows := make([][]any, len(evs))
			for i, e := range evs {
				rows[i] = []any{e.ID, int64(e.Position.Commit)}
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"slow_seen"}, []string{"event_id", "position"}, pgx.CopyFromRows(rows))
			return err
		}),
	}
	rt, err := projections.New(pool, store, reg, projections.Config{
		BatchSize: 20, LockPollInterval: 100 * time.Millisecond, HeartbeatInterval: 300 * time.Millisecond,
		Logger: quietLogger(),
	}, slowProjection)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- rt.Run(rctx) }()
	defer func() { rcancel(); <-runDone }()

	// Prime: the stalled subscription has read something and is live.
	if _, err := store.Append(ctx, "prime", eventstore.NoStream, probe(99, 0, 0)); err != nil {
		t.Fatal(err)
	}
	first, err := stalled.Next(ctx)
	if err != nil || len(first) != 1 {
		t.Fatalf("first Next = %d events, %v", len(first), err)
	}

	before := heapInuse()
	note := strings.Repeat("x", noteBytes)
	var appended atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				evs := make([]eventstore.Event, batchEvents)
				for i := range evs {
					evs[i] = probe(w, b, i)
					evs[i].Payload = json.RawMessage(fmt.Sprintf(`{"writer":%d,"seq":%d,"i":%d,"note":%q}`, w, b, i, note))
				}
				if _, err := store.Append(ctx, fmt.Sprintf("slow-%d", w), eventstore.Any, evs...); err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
				appended.Add(int64(len(evs)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("an append failed while consumers lagged: %v", err)
	}
	after := heapInuse()
	total := appended.Load() + 1
	dataMiB := float64(appended.Load()*noteBytes) / (1 << 20)

	var applied int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM slow_seen`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	growth := int64(after) - int64(before)
	t.Logf("appended %d events (%.0f MiB of payload) while the subscription read 1 and the projection applied %d; heap in use %d MiB → %d MiB",
		total, dataMiB, applied, before>>20, after>>20)
	if applied >= total {
		t.Fatalf("the projection kept up (%d of %d applied): it was not slower than the appends, so the test proved nothing", applied, total)
	}
	if dataMiB < 2*heapBoundMiB {
		t.Fatalf("only %.0f MiB appended: not enough to tell buffering from the bound of %d MiB", dataMiB, heapBoundMiB)
	}
	if growth > heapBoundMiB<<20 {
		t.Errorf("heap in use grew by %d MiB while consumers lagged behind %.0f MiB of events; want at most %d MiB (something buffers the backlog)",
			growth>>20, dataMiB, heapBoundMiB)
	}

	// The load is over: both consumers catch up, each event exactly once.
	slow.Store(false)
	seen := map[uint64]bool{1: true}
	last := first[0].Position.Commit
	for last < uint64(total) {
		evs, err := stalled.Next(ctx)
		if err != nil {
			t.Fatalf("the stalled subscription, resumed at %d of %d: %v", last, total, err)
		}
		// Resumed, it still reads a batch at a time, not the backlog.
		if len(evs) > 100 {
			t.Fatalf("the resumed subscription returned %d events at once, past its BatchSize of 100: it holds the backlog in memory", len(evs))
		}
		for _, e := range evs {
			if e.Position.Commit != last+1 || seen[e.Position.Commit] {
				t.Fatalf("the resumed subscription gave position %d after %d", e.Position.Commit, last)
			}
			seen[e.Position.Commit] = true
			last = e.Position.Commit
		}
	}
	waitFor(t, 60*time.Second, func() bool {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM slow_seen`).Scan(&applied)
		return applied >= total
	}, func() string {
		return fmt.Sprintf("the slow projection applied %d of %d after the load stopped", applied, total)
	})
	var distinct, maxPos int64
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT position), coalesce(max(position), 0) FROM slow_seen`).Scan(&distinct, &maxPos); err != nil {
		t.Fatal(err)
	}
	if applied != total || distinct != total || maxPos != total {
		t.Errorf("slow projection: %d rows, %d distinct positions, last %d; want %d of each", applied, distinct, maxPos, total)
	}
}
