package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// withSessionOption returns u whose sessions start with "-c setting": what
// a database's or a role's default (ALTER DATABASE ... SET) gives every
// session, without changing the shared test database.
func withSessionOption(u, setting string) string {
	return u + "&options=" + strings.NewReplacer(" ", "%20", "=", "%3D", ",", "%2C").Replace("-c "+setting)
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
// New refuses it with ErrDateStyle before it migrates anything; with
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
			if !errors.Is(err, ErrDateStyle) || !strings.Contains(err.Error(), `"German, DMY"`) {
				t.Fatalf("New: %v, want ErrDateStyle naming the style", err)
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

// SetSessionDefaults leaves a DateStyle the connection string gives.
func TestSetSessionDefaultsKeepsAnExplicitDateStyle(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig("postgres://root@127.0.0.1:5432/test?datestyle=SQL")
	if err != nil {
		t.Fatal(err)
	}
	SetSessionDefaults(cfg)
	if len(cfg.RuntimeParams) != 1 || cfg.RuntimeParams["datestyle"] != "SQL" {
		t.Fatalf("runtime params %v, want only the given datestyle", cfg.RuntimeParams)
	}
	cfg, err = pgx.ParseConfig("postgres://root@127.0.0.1:5432/test")
	if err != nil {
		t.Fatal(err)
	}
	SetSessionDefaults(cfg)
	if cfg.RuntimeParams["DateStyle"] != "ISO" {
		t.Fatalf("runtime params %v, want DateStyle ISO", cfg.RuntimeParams)
	}
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
