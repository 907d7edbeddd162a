package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// Migration 004 makes the stream column compare in byte order. A log
// written before it keeps every stream as it was: ids that differ only
// where a collation could fold them (case, accents, ignorable characters)
// stay distinct streams, reads by stream find the same events, appends go
// on at the right versions, and the stream index still serves the reads.
func TestStreamByteOrderMigrationKeepsALog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 4 || ms[3].Version != 4 || ms[3].Name != "stream_byte_order" {
		t.Fatalf("%d migrations: want stream_byte_order fourth", len(ms))
	}
	// The log as the previous release made it, with streams in it.
	if _, err := migrate.Apply(ctx, pool, postgres.Component, ms[:3]); err != nil {
		t.Fatal(err)
	}
	var before string
	if err := pool.QueryRow(ctx, `SELECT coalesce(collation_name, '') FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'events' AND column_name = 'stream'`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before == "C" {
		t.Fatal("the stream column is in byte order before migration 004")
	}
	streams := []string{"course-Å", "course-å", "course-a", "course-A", "course-a\u0301", "Course-a", "course-a ", "course-ß", "course-ss", "курс-1", "课程-1", "x"}
	old, err := postgres.New(ctx, pool, testRegistry(t), postgres.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range streams {
		for j := 0; j < 2; j++ {
			if _, err := old.Append(ctx, s, eventstore.Any, thing(10*i+j)); err != nil {
				t.Fatalf("append to %q before the migration: %v", s, err)
			}
		}
	}
	old.Close()

	s, err := postgres.New(ctx, pool, testRegistry(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var after string
	if err := pool.QueryRow(ctx, `SELECT coalesce(collation_name, '') FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'events' AND column_name = 'stream'`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "C" {
		t.Fatalf("the stream column's collation is %q after the migrations, want C", after)
	}
	for i, st := range streams {
		// Each stream goes on from version 2, and its expected version is
		// checked against its own events only.
		res, err := s.Append(ctx, st, eventstore.ExpectedVersion(2), thing(10*i+2))
		if err != nil {
			t.Fatalf("append to %q after the migration: %v", st, err)
		}
		if res.Events[0].Version != 3 {
			t.Errorf("%q: appended at version %d, want 3", st, res.Events[0].Version)
		}
		evs, err := s.ReadStream(ctx, st, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3 {
			t.Fatalf("%q reads back %d events, want 3", st, len(evs))
		}
		for j, e := range evs {
			if e.Stream != st || e.Version != int64(j+1) || !eventstore.JSONEqual(e.Payload, thing(10*i+j).Payload) {
				t.Errorf("%q event %d: stream %q version %d payload %s", st, j, e.Stream, e.Version, e.Payload)
			}
		}
	}
	// A read by stream can still walk the (stream, version) index (the
	// table is too small for the planner to want it unless told).
	var plan strings.Builder
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) SELECT * FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT 100`, streams[0], 1)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, l := range lines {
			fmt.Fprintln(&plan, l)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "events_stream_version_key") {
		t.Errorf("a read by stream does not use the stream index after the migration:\n%s", plan.String())
	}
}
