package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

func testRegistry(t testing.TB) *schemas.Registry {
	t.Helper()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newStore(t testing.TB, maxConns int32) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	return newStoreWith(t, maxConns, postgres.Options{})
}

// newStoreWith is newStore with options.
func newStoreWith(t testing.TB, maxConns int32, opts postgres.Options) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	u, _ := pgtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := postgres.New(context.Background(), pool, testRegistry(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, pool
}

func thing(n int) eventstore.Event {
	return eventstore.Event{
		Type:    "test.thing.happened",
		Source:  "tests",
		Payload: json.RawMessage(fmt.Sprintf(`{"n": %d, "title": "thing %d"}`, n, n)),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme", Producer: "postgres_test"},
	}
}

// TestNoReaderSkipsAnEvent is the ordering proof: many writers append
// concurrently (single events and batches, from several Store values, as
// several processes would) while a subscriber runs the whole time. At the
// end the subscriber has seen every acknowledged event exactly once, in
// strictly increasing, gapless position order.
func TestNoReaderSkipsAnEvent(t *testing.T) {
	t.Parallel()
	s1, pool := newStore(t, 16)
	reg := testRegistry(t)
	// A second Store on the same schema stands for a second process.
	s2, err := postgres.New(context.Background(), pool, reg, postgres.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := s1.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: 37})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	const writers, perWriter = 24, 40
	var (
		mu    sync.Mutex
		acked = map[uuid.UUID]bool{}
		wg    sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			store := s1
			if w%2 == 1 {
				store = s2
			}
			for i := 0; i < perWriter; i++ {
				n := 1 + (i % 3) // batches of 1, 2 and 3 events
				evs := make([]eventstore.Event, n)
				for j := range evs {
					evs[j] = thing(i)
					evs[j].ID = uuid.New()
				}
				res, err := store.Append(ctx, fmt.Sprintf("writer-%d", w), eventstore.Any, evs...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				for _, e := range res.Events {
					acked[e.ID] = true
				}
				mu.Unlock()
			}
		}(w)
	}
	// Every append must succeed (a failure is reported above), so the
	// subscriber must see exactly this many events.
	want := 0
	for i := 0; i < perWriter; i++ {
		want += writers * (1 + i%3)
	}
	seen := map[uuid.UUID]bool{}
	var last uint64
	for len(seen) < want {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("subscription: %v (saw %d of %d)", err, len(seen), want)
		}
		for _, e := range evs {
			if e.Position.Commit != last+1 {
				t.Fatalf("position %d after %d: a gap or a reorder", e.Position.Commit, last)
			}
			last = e.Position.Commit
			if seen[e.ID] {
				t.Fatalf("event %s delivered twice", e.ID)
			}
			seen[e.ID] = true
		}
	}
	wg.Wait()
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged event %s never delivered", id)
		}
	}
	if len(acked) != want {
		t.Fatalf("%d events acknowledged, want %d", len(acked), want)
	}
}

// TestGroupCommitIsolatesConflicts: appends coalesced into one transaction
// keep their own expected-version checks; the loser of each race gets
// ErrConcurrency with the actual version and the winners all land.
func TestGroupCommitIsolatesConflicts(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8)
	ctx := context.Background()
	const streams, racers = 20, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[string]int{}
	conflicts := 0
	for i := 0; i < streams; i++ {
		for r := 0; r < racers; r++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				stream := fmt.Sprintf("race-%d", i)
				_, err := s.Append(ctx, stream, eventstore.NoStream, thing(i))
				mu.Lock()
				defer mu.Unlock()
				var ce *eventstore.ConcurrencyError
				switch {
				case err == nil:
					wins[stream]++
				case errors.As(err, &ce) && errors.Is(err, eventstore.ErrConcurrency):
					if ce.Actual != 1 {
						t.Errorf("conflict on %s reports actual %d, want 1", stream, ce.Actual)
					}
					conflicts++
				default:
					t.Errorf("append: %v", err)
				}
			}(i)
		}
	}
	wg.Wait()
	for i := 0; i < streams; i++ {
		if got := wins[fmt.Sprintf("race-%d", i)]; got != 1 {
			t.Fatalf("stream race-%d: %d winners, want exactly 1", i, got)
		}
	}
	if conflicts != streams*(racers-1) {
		t.Fatalf("%d conflicts, want %d", conflicts, streams*(racers-1))
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != eventstore.Pos(streams) {
		t.Fatalf("head %v, want %d (one event per stream, gapless)", head, streams)
	}
}

// TestRefusedAppendWritesNothing: an invalid event in the middle of a batch
// refuses the batch, with a typed error naming its index, pointer and rule.
func TestRefusedAppendWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 4)
	ctx := context.Background()
	bad := thing(2)
	bad.Payload = json.RawMessage(`{"n": -1, "title": "negative"}`)
	_, err := s.Append(ctx, "s", eventstore.Any, thing(1), bad, thing(3))
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrValidation) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	if got, want := ve.Index, 1; got != want {
		t.Errorf("index %d, want %d", got, want)
	}
	if got, want := ve.Pointer, "/payload/n"; got != want {
		t.Errorf("pointer %q, want %q", got, want)
	}
	if got, want := ve.Rule, "minimum"; got != want {
		t.Errorf("rule %q, want %q", got, want)
	}
	if _, err := s.ReadStream(ctx, "s", 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("stream after refusal: %v, want ErrStreamNotFound", err)
	}
	if head, _ := s.Head(ctx); !head.IsZero() {
		t.Fatalf("head %v after a refused append, want empty log", head)
	}
}

// TestStorageRefusalIsolated: an append that PostgreSQL refuses although
// the validator let it through (here a CHECK constraint the test adds
// stands for any such rule) fails alone; the appends coalesced with it in
// a group all land.
func TestStorageRefusalIsolated(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, 8)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE events ADD CONSTRAINT test_no_poison CHECK (payload->>'title' <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	if err := poisonedGroup(t, s, "iso", 32, 7); storageError(err) == nil || storageError(err).ConstraintName != "test_no_poison" {
		t.Fatalf("append 7: %v, want PostgreSQL's refusal by test_no_poison", err)
	}
}

// TestSameIDsInOneGroup: appends sent at once with the same event ids
// (a client retrying before its first attempt answered) may share a group;
// the ids' unique index sends such a group down the careful path, which
// writes the first and answers the others with its result. Every pair
// must end with one stored copy and the same answer twice.
func TestSameIDsInOneGroup(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8)
	ctx := context.Background()
	const pairs = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	res := make([][2]eventstore.AppendResult, pairs)
	errs := make([][2]error, pairs)
	for i := 0; i < pairs; i++ {
		e := thing(i)
		e.ID = uuid.New()
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func(i, k int) {
				defer wg.Done()
				<-start
				res[i][k], errs[i][k] = s.Append(ctx, fmt.Sprintf("pair-%d", i), eventstore.Any, e)
			}(i, k)
		}
	}
	close(start)
	wg.Wait()
	for i := 0; i < pairs; i++ {
		for k := 0; k < 2; k++ {
			if errs[i][k] != nil {
				t.Fatalf("pair %d, append %d: %v", i, k, errs[i][k])
			}
		}
		if a, b := res[i][0].Position(), res[i][1].Position(); a != b {
			t.Fatalf("pair %d answered positions %v and %v: one id stored twice?", i, a, b)
		}
		evs, err := s.ReadStream(ctx, fmt.Sprintf("pair-%d", i), 1, 0)
		if err != nil || len(evs) != 1 {
			t.Fatalf("pair %d: %d events stored (%v), want 1", i, len(evs), err)
		}
	}
	if head, _ := s.Head(ctx); head != eventstore.Pos(pairs) {
		t.Fatalf("head %v, want %d", head, pairs)
	}
}

func TestIdempotentRetryAcrossGroups(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 4)
	ctx := context.Background()
	e1, e2 := thing(1), thing(2)
	e1.ID, e2.ID = uuid.New(), uuid.New()
	first, err := s.Append(ctx, "idem", eventstore.NoStream, e1, e2)
	if err != nil {
		t.Fatal(err)
	}
	// Same ids, same content, payload keys reordered and spaced: the
	// original result, even though NoStream no longer holds.
	e1b := e1
	e1b.Payload = json.RawMessage(`{ "title":"thing 1","n":1.0 }`)
	again, err := s.Append(ctx, "idem", eventstore.NoStream, e1b, e2)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if again.Position() != first.Position() || again.Version() != 2 {
		t.Fatalf("retry returned %v/%d, want %v/2", again.Position(), again.Version(), first.Position())
	}
	changed := e2
	changed.Payload = json.RawMessage(`{"n": 3, "title": "other"}`)
	if _, err := s.Append(ctx, "idem", eventstore.Any, changed); !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("same id, other content: %v, want ErrDuplicateEvent", err)
	}
	if head, _ := s.Head(ctx); head != eventstore.Pos(2) {
		t.Fatalf("head %v, want 2: retries must write nothing", head)
	}
}

func TestMigrateTwiceConcurrently(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = postgres.Migrate(ctx, pool) }(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM eventstream_migrations WHERE component = $1`, postgres.Component).Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := postgres.Migrations()
	if n != len(ms) {
		t.Fatalf("%d migration rows, want %d", n, len(ms))
	}
}

// TestCommittersNeverWaitForever: committers that hold back small groups
// while another group is in flight (MinOverlapEvents) still send them when
// that group ends, however many committers wait: every append of a steady
// stream of single events lands, and the groups carry more than one event.
func TestCommittersNeverWaitForever(t *testing.T) {
	t.Parallel()
	u, _ := pgtest.Schema(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := postgres.New(context.Background(), pool, testRegistry(t), postgres.Options{Committers: 4, MinOverlapEvents: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writers, each = 32, 25
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("overlap-%d", w), eventstore.Any, thing(i)); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != eventstore.Pos(writers*each) {
		t.Fatalf("head %v, want %d", head, writers*each)
	}
	if st := s.Stats(); st.Groups >= uint64(writers*each) {
		t.Fatalf("%d groups for %d appends: the committers did not group anything", st.Groups, writers*each)
	}
}

// TestPreviousReleaseAppendsDuringAnUpgrade: migration 003 keeps the 002
// function, so a process of the previous release, which calls it inside
// BEGIN ... COMMIT, goes on appending while this release's stores do. Both
// take the same lock, so positions stay gapless and every event is there.
func TestPreviousReleaseAppendsDuringAnUpgrade(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, 0)
	ctx := context.Background()
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	lockKey := migrate.LockKey("append", schema)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			_, err := s.Append(ctx, fmt.Sprintf("new-%d", i), eventstore.NoStream, thing(i))
			errs <- err
		}(i)
		go func(i int) {
			defer wg.Done()
			errs <- previousReleaseAppend(ctx, pool, lockKey, fmt.Sprintf("old-%d", i), i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var count, head int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0) FROM events`).Scan(&count, &head); err != nil {
		t.Fatal(err)
	}
	if count != 2*n || head != 2*n {
		t.Fatalf("%d events, head %d: want %d of each (gapless)", count, head, 2*n)
	}
	evs, err := s.ReadStream(ctx, "old-7", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Version != 1 || evs[0].Meta.Producer != "previous-release" || !eventstore.JSONEqual(evs[0].Payload, thing(7).Payload) {
		t.Fatalf("the previous release's event reads back as %+v", evs)
	}
}

// previousReleaseAppend appends one event the way the previous release did:
// the 002 signature of eventstream_append inside an explicit transaction.
func previousReleaseAppend(ctx context.Context, pool *pgxpool.Pool, lockKey int64, stream string, n int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var accepted bool
		err := tx.QueryRow(ctx, `SELECT accepted FROM eventstream_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
			lockKey, time.Now().UTC().Truncate(time.Microsecond), []string{stream}, []int64{-2}, []int32{1},
			[]uuid.UUID{uuid.New()}, []string{"test.thing.happened"}, []string{"tests"}, []string{""}, []string{"acme"},
			[]string{""}, []string{""}, []string{"previous-release"}, []int32{1},
			[]string{string(thing(n).Payload)}, []string{`{"schema_version":1,"tenant_id":"acme","producer":"previous-release"}`}).Scan(&accepted)
		if err != nil {
			return err
		}
		if !accepted {
			return fmt.Errorf("the previous release's append to %s was refused", stream)
		}
		return nil
	})
}
