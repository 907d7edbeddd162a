package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// seenSizeType is the type of seen.size in the view readers query.
func seenSizeType(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	var typ string
	if err := pool.QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'seen'::regclass AND attname = 'size' AND NOT attisdropped`).Scan(&typ); err != nil {
		tb.Fatal(err)
	}
	return typ
}

// A migration may change the type of a column of a published table,
// which PostgreSQL refuses while a view reads it: Migrate drops the
// projection's views for that migration and makes them again, in one
// transaction, keeping the rows. A migration that adds a column does not
// drop them, so a reader's own view on top of the projection's survives
// it; one that changes a type is stopped by such a view, and changes
// nothing, until it is dropped.
func TestMigrateChangesAColumnTypeUnderThePublishedView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 30, 10)
	pool := database(t)
	none := func(eventstore.Event) error { return nil }
	with := func(sql ...string) projections.Projection {
		p := seenProjection("seen", none)
		ms := p.Migrations.(fstest.MapFS)
		for i, q := range sql {
			ms[[]string{"002_size.up.sql", "003_size_bigint.up.sql"}[i]] = &fstest.MapFile{Data: []byte(q)}
		}
		return p
	}
	addSize := `ALTER TABLE seen ADD COLUMN size integer NOT NULL DEFAULT 7`
	widenSize := `ALTER TABLE seen ALTER COLUMN size TYPE bigint`

	rt := newRuntime(t, pool, store, fastConfig(), with())
	if _, err := rt.CatchUp(ctx, "seen", 0); err != nil {
		t.Fatal(err)
	}
	want := seenCount(t, pool)
	if want == 0 {
		t.Fatal("nothing seen")
	}
	if _, err := pool.Exec(ctx, `CREATE VIEW seen_report AS SELECT event_id FROM seen`); err != nil {
		t.Fatal(err)
	}

	newRuntime(t, pool, store, fastConfig(), with(addSize))
	if got := seenSizeType(t, pool); got != "integer" {
		t.Fatalf("after adding the column: size is %s", got)
	}

	rt, err := projections.New(pool, store, registry(t), fastConfig(), with(addSize, widenSize))
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Migrate(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "2BP01" || !strings.Contains(err.Error(), "seen_report") {
		t.Fatalf("Migrate under a reader's view on the projection's: %v, want the refusal to drop it (dependent_objects_still_exist) naming seen_report", err)
	}
	if got := seenSizeType(t, pool); got != "integer" || seenCount(t, pool) != want {
		t.Fatalf("the refused migration changed size to %s or the rows", got)
	}

	if _, err := pool.Exec(ctx, `DROP VIEW seen_report`); err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := seenSizeType(t, pool); got != "bigint" {
		t.Fatalf("after widening: size is %s in the view", got)
	}
	var n, sum int64
	if err := pool.QueryRow(ctx, `SELECT count(*), sum(size) FROM seen`).Scan(&n, &sum); err != nil || n != int64(want) || sum != 7*n {
		t.Fatalf("after widening: %d rows, sizes summing to %d (%v); want %d rows of 7", n, sum, err, want)
	}
	// A second Migrate has nothing to do and leaves the view alone.
	viewOID := func() (oid uint32) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT 'seen'::regclass::oid`).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		return oid
	}
	before := viewOID()
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if after := viewOID(); after != before {
		t.Fatalf("a Migrate with nothing to do made the view again (oid %d, was %d)", after, before)
	}
}
