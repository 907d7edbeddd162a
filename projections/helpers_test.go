package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
	"github.com/brainhq/eventstream/schemas"
)

func registry(tb testing.TB) *schemas.Registry {
	tb.Helper()
	reg, err := schemas.Default()
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// database is a fresh schema with a pool on it; the projection runtime's
// generation schemas are dropped when the test ends.
// memoryStore is a memory store with the test registry, closed at the
// test's end.
func memoryStore(tb testing.TB) *memory.Store {
	tb.Helper()
	mem, err := memory.New(registry(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { mem.Close() })
	return mem
}

// runtimeMigration returns the runtime's migrations and the SQL of the
// one named name.
func runtimeMigration(tb testing.TB, name string) ([]migrate.Migration, string) {
	tb.Helper()
	ms, err := projections.Migrations()
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name {
			return ms, m.SQL
		}
	}
	tb.Fatalf("no runtime migration named %s", name)
	return nil, ""
}

func database(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return databaseNamed(tb, "")
}

// databaseNamed is database with the connections' application_name set.
func databaseNamed(tb testing.TB, app string) *pgxpool.Pool {
	tb.Helper()
	return databaseWith(tb, func(cfg *pgxpool.Config) {
		if app != "" {
			cfg.ConnConfig.RuntimeParams["application_name"] = app
		}
	})
}

// databaseWith is database with its pool's configuration changed by
// configure before the pool is made.
func databaseWith(tb testing.TB, configure func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	u, _ := pgtest.Schema(tb)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = 8
	configure(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := projections.Uninstall(ctx, pool); err != nil {
			tb.Errorf("uninstall: %v", err)
		}
		pool.Close()
	})
	return pool
}

// logStore is a PostgreSQL event store in its own fresh schema.
func logStore(tb testing.TB) *postgres.Store {
	tb.Helper()
	return logStoreNamed(tb, "")
}

func logStoreNamed(tb testing.TB, app string) *postgres.Store {
	tb.Helper()
	pool := databaseNamed(tb, app)
	s, err := postgres.New(context.Background(), pool, registry(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fastConfig keeps the tests' waits short.
func fastConfig() projections.Config {
	return projections.Config{
		BatchSize:          100,
		LockPollInterval:   100 * time.Millisecond,
		HeartbeatInterval:  200 * time.Millisecond,
		CheckpointInterval: 50 * time.Millisecond,
		MetricsInterval:    100 * time.Millisecond,
		Retry:              projections.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
		Logger:             quietLogger(),
	}
}

// newRuntime builds and migrates a runtime on pool.
func newRuntime(tb testing.TB, pool *pgxpool.Pool, store eventstore.Store, cfg projections.Config, ps ...projections.Projection) *projections.Runtime {
	tb.Helper()
	rt, err := projections.New(pool, store, registry(tb), cfg, ps...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := rt.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return rt
}

// run runs rt in the background until the returned stop is called.
func run(tb testing.TB, rt *projections.Runtime, names ...string) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx, names...) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	}
	tb.Cleanup(stop)
	return stop
}

// runUntilCaughtUp runs rt until every named projection (all when none)
// has reached the head of the log, then stops it; the stop fails the test
// if Run returned an error.
func runUntilCaughtUp(tb testing.TB, rt *projections.Runtime, names ...string) {
	tb.Helper()
	stop := run(tb, rt, names...)
	waitCaughtUp(tb, rt, names...)
	stop()
}

// waitCaughtUp waits until every named projection (all when none) has
// reached the head of the log.
func waitCaughtUp(tb testing.TB, rt *projections.Runtime, names ...string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lag, err := rt.Lag(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		done := true
		for _, l := range lag {
			if len(names) > 0 && !contains(names, l.Projection) {
				continue
			}
			if l.Position.Compare(l.Head) < 0 {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("projections did not catch up: %+v", lag)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStopped waits until the runtime's first projection is stopped.
// runStrict runs, over a log of 200 events, the StopOnError projection
// "strict", whose handler fails with msg on one event (the poison) while
// failing is set.
func runStrict(tb testing.TB, failing *atomic.Bool, msg string) (eventstore.Store, eventstore.Event, *pgxpool.Pool, *projections.Runtime) {
	tb.Helper()
	store := logStore(tb)
	fill(tb, store, 200, 20)
	poison := eventsOf(tb, store, "distribution.viewed")[50]
	p := seenProjection("strict", func(e eventstore.Event) error {
		if failing.Load() && e.ID == poison.ID {
			return errors.New(msg)
		}
		return nil
	})
	p.StopOnError = true
	pool := database(tb)
	rt := newRuntime(tb, pool, store, fastConfig(), p)
	run(tb, rt)
	return store, poison, pool, rt
}

// resumeCaughtUp resumes a stopped projection and waits until it has
// caught up, with every handled event in the seen read model.
func resumeCaughtUp(tb testing.TB, rt *projections.Runtime, name string, pool *pgxpool.Pool, store eventstore.Store) {
	tb.Helper()
	if resumed, err := rt.Resume(context.Background(), name); err != nil || !resumed {
		tb.Fatalf("Resume(%s) = %v, %v; want the stopped projection resumed", name, resumed, err)
	}
	if resumed, err := rt.Resume(context.Background(), name); err != nil || resumed {
		tb.Fatalf("Resume(%s) again = %v, %v; want false: it was no longer stopped", name, resumed, err)
	}
	waitCaughtUp(tb, rt)
	if got, want := seenCount(tb, pool), countHandled(tb, store); got != want {
		tb.Fatalf("seen %d after resume, want %d", got, want)
	}
}

func waitStopped(tb testing.TB, rt *projections.Runtime) projections.Lag {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lag, err := rt.Lag(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		if lag[0].Stopped {
			return lag[0]
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the projection did not stop: %+v", lag[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fill appends n events of a mix of course, distribution and governance
// types, spread over tenants and streams, in appends of up to per events.
// The outcome events are in the stream of the aggregate their payload
// names, as the modules write them (analytics counts outcomes only
// there): the course events in the course's stream, the DAG checks in
// the IR's. The views go with the course events (the catalog skips
// them there; nothing that uses fill counts them as catalog views). A
// run of consecutive events of one stream is one append.
// It stops the test on failure, so call it from the test's goroutine only;
// other goroutines call appendSamples.
func fill(tb testing.TB, store eventstore.Store, n, per int) {
	tb.Helper()
	if err := appendSamples(context.Background(), store, n, per); err != nil {
		tb.Fatal(err)
	}
}

// appendSamples is fill returning its error.
func appendSamples(ctx context.Context, store eventstore.Store, n, per int) error {
	for done := 0; done < n; {
		k := min(per, n-done)
		course := uuid.New()
		tenant := fmt.Sprintf("tenant-%d", done/per%3)
		var evs []eventstore.Event
		stream := ""
		flush := func() error {
			if len(evs) == 0 {
				return nil
			}
			if _, err := store.Append(ctx, stream, eventstore.Any, evs...); err != nil {
				return fmt.Errorf("append to %s: %w", stream, err)
			}
			evs = evs[:0]
			return nil
		}
		for i := range k {
			e := sample(done+i, course, tenant)
			s := "course-" + course.String()
			if e.Type == "ir.dag_diff_failed" {
				s = "ir-" + sampleIR
			}
			if s != stream {
				if err := flush(); err != nil {
					return err
				}
				stream = s
			}
			evs = append(evs, e)
		}
		if err := flush(); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// eventsOf returns the events of type typ in the log, in its order.
func eventsOf(tb testing.TB, store eventstore.Store, typ string) []eventstore.Event {
	tb.Helper()
	page, err := store.ReadAll(context.Background(), eventstore.ReadAllOptions{Types: []string{typ}, Limit: 10_000})
	if err != nil {
		tb.Fatal(err)
	}
	if !page.End {
		tb.Fatalf("more than one page of %s events", typ)
	}
	return page.Events
}

// poisoned fills the log and returns one handled event in its middle.
func poisoned(tb testing.TB, store eventstore.Store) eventstore.Event {
	tb.Helper()
	fill(tb, store, 140, 14)
	return eventsOf(tb, store, "distribution.viewed")[30]
}

// sampleIR is the IR of sample's DAG checks (in stream "ir-"+sampleIR).
const sampleIR = "ir-1"

func sample(i int, course uuid.UUID, tenant string) eventstore.Event {
	var typ string
	var payload map[string]any
	switch i % 7 {
	case 0:
		typ, payload = "course.generation.requested", map[string]any{"course_id": course, "topic": "Go", "attempt": 1}
	case 1:
		typ, payload = "course.generation.completed", map[string]any{"course_id": course, "title": "Go", "lesson_count": 3, "attempt": 1}
	case 2:
		typ, payload = "course.generation.failed", map[string]any{"course_id": course, "stage": "generating", "reason": "model timeout", "attempt": 1}
	case 3:
		typ, payload = "ir.dag_diff_failed", map[string]any{"ir_id": sampleIR, "ir_sha256": strings.Repeat("ab", 32),
			"severity": "critical", "missing_steps": []string{"s1"}, "unexpected_nodes": []string{}, "changed_nodes": []string{}}
	default:
		typ, payload = "distribution.viewed", map[string]any{"distribution_id": uuid.New(), "course_id": course, "visitor_id": fmt.Sprintf("v%d", i)}
	}
	b, _ := json.Marshal(payload)
	return eventstore.Event{
		ID: uuid.New(), Type: typ, Source: "test", Payload: b,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: tenant, CorrelationID: fmt.Sprintf("corr-%d", i/10), Producer: "projections-test"},
	}
}

// readModels are the queries whose rows the equality proofs compare.
var readModels = []string{
	`SELECT t::text FROM audit_events t ORDER BY position`,
	`SELECT t::text FROM analytics_event_counts t ORDER BY tenant_id, day, event_type`,
	`SELECT t::text FROM analytics_outcomes t ORDER BY tenant_id, day, subject`,
	`SELECT t::text FROM analytics_generation_daily t ORDER BY tenant_id, day`,
}

// dump returns the rows of every read model, as text.
func dump(tb testing.TB, pool *pgxpool.Pool) [][]string {
	tb.Helper()
	out := make([][]string, len(readModels))
	for i, q := range readModels {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
		out[i], err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	return out
}

// reference builds audit and analytics from the log once, in a fresh
// schema, with nothing in the way: what every proof must equal.
func reference(tb testing.TB, store eventstore.Store) [][]string {
	tb.Helper()
	pool := database(tb)
	rt := newRuntime(tb, pool, store, fastConfig(), audit.Projection(), analytics.Projection())
	for _, n := range rt.Names() {
		if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
			tb.Fatal(err)
		}
	}
	return dump(tb, pool)
}

func sameRows(tb testing.TB, got, want [][]string) {
	tb.Helper()
	for i := range want {
		if len(got[i]) != len(want[i]) {
			tb.Fatalf("%s: %d rows, want %d", readModels[i], len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				tb.Fatalf("%s: row %d is\n%s\nwant\n%s", readModels[i], j, got[i][j], want[i][j])
			}
		}
	}
	if len(want[0]) == 0 {
		tb.Fatal("the reference read model is empty: the proof proves nothing")
	}
}

func headOf(tb testing.TB, store eventstore.Store) eventstore.Position {
	tb.Helper()
	h, err := store.Head(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// seenTypes are what seenProjection handles.
var seenTypes = []string{"distribution.viewed", "course.generation.requested"}

// seenProjection records each event it applies in a table without a
// unique key, so that an event applied twice shows; fail decides whether
// an event fails.
func seenProjection(name string, fail func(eventstore.Event) error) projections.Projection {
	return projections.Projection{
		Name:    name,
		Handles: projections.Types(1, seenTypes...),
		Migrations: fstest.MapFS{"001_seen.up.sql": {Data: []byte(
			`CREATE TABLE seen (n bigserial PRIMARY KEY, event_id uuid NOT NULL, tenant_id text NOT NULL)`)}},
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			if err := fail(e); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO seen (event_id, tenant_id) VALUES ($1, $2)`, e.ID, e.Meta.TenantID)
			return err
		}),
	}
}

func countHandled(tb testing.TB, store eventstore.Store) int {
	tb.Helper()
	page, err := store.ReadAll(context.Background(), eventstore.ReadAllOptions{Types: seenTypes, Limit: 100_000})
	if err != nil {
		tb.Fatal(err)
	}
	return len(page.Events)
}

func seenCount(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM seen`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func seenTimes(tb testing.TB, pool *pgxpool.Pool, id string) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM seen WHERE event_id = $1`, id).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// catalogBefore is the catalog projection with only its migrations
// numbered below n: a read model as a binary of before migration n left
// it.
func catalogBefore(tb testing.TB, n int) projections.Projection {
	tb.Helper()
	old := catalog.Projection()
	names, err := fs.Glob(old.Migrations, "*.up.sql")
	if err != nil {
		tb.Fatal(err)
	}
	before := fstest.MapFS{}
	for _, name := range names {
		if name >= fmt.Sprintf("%03d_", n) {
			continue
		}
		b, err := fs.ReadFile(old.Migrations, name)
		if err != nil {
			tb.Fatal(err)
		}
		before[name] = &fstest.MapFile{Data: b}
	}
	if len(before) != n-1 || len(names) <= len(before) {
		tb.Fatalf("%d catalog migrations before %d, among %d", len(before), n, len(names))
	}
	old.Migrations = before
	return old
}
