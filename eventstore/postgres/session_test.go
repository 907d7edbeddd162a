package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// withSessionOption returns u whose sessions start with "-c setting": what
// a database's or a role's default (ALTER DATABASE ... SET) gives every
// session, without changing the shared test database. A space in the
// setting's value is escaped for the server's option parser.
func withSessionOption(u, setting string) string {
	setting = strings.ReplaceAll(setting, " ", `\ `)
	return u + "&options=" + strings.NewReplacer(" ", "%20", "=", "%3D", ",", "%2C", `\`, "%5C").Replace("-c "+setting)
}

var nonISODateStyles = []string{"SQL, DMY", "Postgres, MDY", "German"}

var everyExecMode = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
}

// Under the simple protocol and QueryExecModeExec pgx reads timestamps
// from their text, which it parses in the ISO style only. A store opened
// on a database whose DateStyle is another one still reads its log in
// every mode: Open starts its sessions with DateStyle ISO.
func TestOpenReadsTimestampsUnderAnyDateStyle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	for _, style := range nonISODateStyles {
		for _, mode := range everyExecMode {
			t.Run(style+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				u, _ := pgtest.Schema(t)
				u = withSessionOption(u, "datestyle="+strings.ReplaceAll(style, " ", "")) + "&default_query_exec_mode=" + execModeParam(mode)
				s, err := Open(ctx, u, reg)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				var shown string
				if err := s.pool.QueryRow(ctx, `SHOW DateStyle`).Scan(&shown); err != nil || !strings.HasPrefix(shown, "ISO") {
					t.Fatalf("the store's sessions show DateStyle %q (%v), want ISO", shown, err)
				}
				sent := readTestEvents()[:2]
				res, err := s.Append(ctx, "datestyle", eventstore.NoStream, sent...)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.ReadStream(ctx, "datestyle", 1, 10)
				if err != nil {
					t.Fatalf("read the stream: %v", err)
				}
				all, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
				if err != nil {
					t.Fatalf("read the log: %v", err)
				}
				if len(got) != len(sent) || len(all.Events) != len(sent) {
					t.Fatalf("read %d events from the stream and %d from the log, want %d", len(got), len(all.Events), len(sent))
				}
				for i := range sent {
					sameAsAppended(t, "stream", got[i], res.Events[i], sent[i])
					sameAsAppended(t, "log", all.Events[i], res.Events[i], sent[i])
				}
			})
		}
	}
}

// A pool given to New keeps the caller's settings. If its reads would
// fail on the log's timestamps (text results, a DateStyle other than ISO),
// New refuses it with ErrSessionSetting before it migrates anything; with
// SetSessionDefaults on its configuration, or in a mode that reads
// timestamps in binary, the same database is fine.
func TestNewRefusesAPoolThatCannotReadTimestamps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range everyExecMode {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			u, schema := pgtest.Schema(t)
			cfg, err := pgxpool.ParseConfig(withSessionOption(u, "datestyle=German"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool := newPool(t, cfg)
			s, err := New(ctx, pool, reg)
			text := mode == pgx.QueryExecModeSimpleProtocol || mode == pgx.QueryExecModeExec
			if !text {
				if err != nil {
					t.Fatalf("New in a mode that reads timestamps in binary: %v", err)
				}
				appendAndReadBack(t, s)
				return
			}
			if !errors.Is(err, ErrSessionSetting) || !strings.Contains(err.Error(), `DateStyle is "German, DMY"`) {
				t.Fatalf("New: %v, want ErrSessionSetting naming the style", err)
			}
			var tables int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, schema).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("the refused New left %d tables in the schema (%v), want none", tables, err)
			}

			SetSessionDefaults(cfg.ConnConfig)
			s, err = New(ctx, newPool(t, cfg), reg)
			if err != nil {
				t.Fatalf("New after SetSessionDefaults: %v", err)
			}
			appendAndReadBack(t, s)
		})
	}
}

// SetSessionDefaults leaves a setting the connection string gives.
func TestSetSessionDefaultsKeepsExplicitSettings(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig("postgres://root@127.0.0.1:5432/test?datestyle=SQL&Default_Transaction_Isolation=serializable")
	if err != nil {
		t.Fatal(err)
	}
	SetSessionDefaults(cfg)
	if len(cfg.RuntimeParams) != len(sessionDefaults) || cfg.RuntimeParams["datestyle"] != "SQL" || cfg.RuntimeParams["Default_Transaction_Isolation"] != "serializable" {
		t.Fatalf("runtime params %v, want the given ones and the other defaults", cfg.RuntimeParams)
	}
	cfg, err = pgx.ParseConfig("postgres://root@127.0.0.1:5432/test")
	if err != nil {
		t.Fatal(err)
	}
	SetSessionDefaults(cfg)
	if cfg.RuntimeParams["DateStyle"] != "ISO" || cfg.RuntimeParams["default_transaction_isolation"] != "read committed" {
		t.Fatalf("runtime params %v, want DateStyle ISO and read committed", cfg.RuntimeParams)
	}
}

// The server applies the defaults to a store's sessions over TCP, where
// the keepalives matter: they are what ends the session of a client that
// vanished while it held the append lock.
func TestOpenSessionsCarryTheDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := pgtest.Schema(t)
	s, err := Open(ctx, u, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var addr *string
	if err := s.pool.QueryRow(ctx, `SELECT inet_client_addr()::text`).Scan(&addr); err != nil {
		t.Fatal(err)
	}
	if addr == nil {
		t.Skip("the test database is reached over a Unix socket, where keepalives do not apply")
	}
	for _, d := range sessionDefaults {
		var got string
		if err := s.pool.QueryRow(ctx, `SELECT current_setting($1)`, d.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := d.value; got != want && !(d.name == "DateStyle" && strings.HasPrefix(got, want+",")) {
			t.Errorf("%s is %q in the store's session, want %q", d.name, got, want)
		}
	}
}

// hammer appends from 24 goroutines, 20 appends each, single events and
// pairs, to 5 streams with expected version Any, and returns the errors.
func hammer(s *Store) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	evs := readTestEvents()[:2]
	for w := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := s.Append(context.Background(), fmt.Sprintf("hammer-%d", (w+i)%5), eventstore.Any, evs[:1+i%2]...); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// checkGapless fails unless the log holds want events at positions 1..want
// and each stream's versions run 1..n.
func checkGapless(t *testing.T, s *Store, want int) {
	t.Helper()
	page, err := s.ReadAll(context.Background(), eventstore.ReadAllOptions{Limit: want + 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != want {
		t.Fatalf("the log holds %d events, want %d", len(page.Events), want)
	}
	versions := map[string]int64{}
	for i, e := range page.Events {
		versions[e.Stream]++
		if e.Position != eventstore.Pos(uint64(i+1)) || e.Version != versions[e.Stream] {
			t.Fatalf("event %d: position %v, %s version %d; want position %d, version %d", i, e.Position, e.Stream, e.Version, i+1, versions[e.Stream])
		}
	}
}

// A database or role whose transactions default to repeatable read or
// serializable: a group's one statement would take its snapshot before
// the append lock and miss the group committed just before it (a duplicate
// position, a serialization failure). Open starts its sessions in read
// committed, so concurrent appends, with two groups in flight at a time,
// all land, gapless.
func TestOpenAppendsUnderAnyDefaultIsolation(t *testing.T) {
	t.Parallel()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	for _, iso := range []string{"repeatable read", "serializable"} {
		t.Run(iso, func(t *testing.T) {
			t.Parallel()
			u, _ := pgtest.Schema(t)
			s, err := Open(context.Background(), withSessionOption(u, "default_transaction_isolation="+iso), reg, Options{MinOverlapEvents: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if errs := hammer(s); len(errs) > 0 {
				t.Fatalf("%d appends failed, the first: %v", len(errs), errs[0])
			}
			checkGapless(t, s, 24*30)
		})
	}
}

// A pool given to New whose transactions default to another isolation is
// refused (ErrSessionSetting) before New migrates anything. A connection
// that changes its default after New (a SET, an AfterConnect) makes
// appends fail, each with ErrSessionSetting naming the setting, not with a
// duplicate key; the log stays gapless.
func TestAppendsSayWhenTheIsolationIsWrong(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	u, schema := pgtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(withSessionOption(u, "default_transaction_isolation=repeatable read"))
	if err != nil {
		t.Fatal(err)
	}
	pool := newPool(t, cfg)
	if _, err := New(ctx, pool, reg); !errors.Is(err, ErrSessionSetting) || !strings.Contains(err.Error(), `default_transaction_isolation is "repeatable read"`) {
		t.Fatalf("New: %v, want ErrSessionSetting naming the isolation", err)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, schema).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("the refused New left %d tables in the schema (%v), want none", tables, err)
	}

	// Sessions that pass New's check, then turn to repeatable read.
	cfg, err = pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	var turned atomic.Bool
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if turned.Load() {
			_, err := c.Exec(ctx, `SET default_transaction_isolation = 'repeatable read'`)
			return err
		}
		return nil
	}
	pool = newPool(t, cfg)
	s, err := New(ctx, pool, reg, Options{MinOverlapEvents: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	turned.Store(true)
	pool.Reset()
	var failed int
	for range 10 {
		errs := hammer(s)
		for _, err := range errs {
			if !errors.Is(err, ErrSessionSetting) {
				t.Fatalf("append: %v, want ErrSessionSetting", err)
			}
		}
		if failed += len(errs); failed > 0 {
			break
		}
	}
	if failed == 0 {
		t.Fatal("no append failed in 10 rounds of 480 with two groups in flight under repeatable read")
	}
	t.Logf("%d appends refused with ErrSessionSetting", failed)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	checkGapless(t, s, n)
}

func newPool(t *testing.T, cfg *pgxpool.Config) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func appendAndReadBack(t *testing.T, s *Store) {
	t.Helper()
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	sent := readTestEvents()[:1]
	res, err := s.Append(ctx, "datestyle", eventstore.NoStream, sent...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "datestyle", 1, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("read back %d events: %v", len(got), err)
	}
	sameAsAppended(t, "stream", got[0], res.Events[0], sent[0])
}

// execModeParam is mode as the connection string's default_query_exec_mode.
func execModeParam(mode pgx.QueryExecMode) string {
	return strings.ReplaceAll(mode.String(), " ", "_")
}
