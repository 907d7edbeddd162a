package projections_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/projections/catalog"
)

// bigAttempt is beyond the int32 range that course_catalog.attempt had.
const bigAttempt = int64(1)<<31 + 5

// catalogAttemptTypes returns the type of attempt in the active catalog
// generation's course_catalog and in the view readers query, and the
// catalog migration version recorded in that generation.
func catalogAttemptTypes(tb testing.TB, pool *pgxpool.Pool) (table, view string, version int) {
	tb.Helper()
	ctx := context.Background()
	var schema string
	if err := pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = $1 AND state = 'active'`, catalog.Name).Scan(&schema); err != nil {
		tb.Fatal(err)
	}
	typeIn := func(rel string) string {
		var typ string
		if err := pool.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
			WHERE attrelid = $1::regclass AND attname = 'attempt' AND NOT attisdropped`, rel).Scan(&typ); err != nil {
			tb.Fatalf("the type of %s.attempt: %v", rel, err)
		}
		return typ
	}
	table, view = typeIn(pgx.Identifier{schema, "course_catalog"}.Sanitize()), typeIn("course_catalog")
	q := `SELECT max(version) FROM ` + pgx.Identifier{schema, "eventstream_migrations"}.Sanitize() + ` WHERE component = 'projection:' || $1`
	if err := pool.QueryRow(ctx, q, catalog.Name).Scan(&version); err != nil {
		tb.Fatal(err)
	}
	return table, view, version
}

// catalogRows is every row of course_catalog, as JSON, in key order.
func catalogRows(tb testing.TB, pool *pgxpool.Pool) []string {
	tb.Helper()
	return dumpQuery(tb, pool, `SELECT row_to_json(c)::text FROM course_catalog c ORDER BY tenant_id, course_id`)
}

// An attempt is a schema integer, which may be any int64: one above
// 2^31-1 is projected, compared with the row's (a late completion of an
// earlier attempt changes nothing) and read back intact. Before, the
// column was an integer: the request was parked and the course missing.
func TestCatalogKeepsAnAttemptBeyondInt32(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course := uuid.New()
	appendTo(t, store, "course-"+course.String(),
		ev("course.generation.requested", 2, "acme", map[string]any{"course_id": course, "topic": "Big", "attempt": bigAttempt, "language": "en"}),
		ev("course.generation.completed", 1, "acme", map[string]any{"course_id": course, "title": "Current", "lesson_count": 3, "attempt": bigAttempt}),
		// A late completion of the attempt before: it changes nothing.
		ev("course.generation.completed", 1, "acme", map[string]any{"course_id": course, "title": "Earlier", "lesson_count": 9, "attempt": bigAttempt - 1}))
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	runUntilCaughtUp(t, rt)
	if parked, err := rt.ListParked(context.Background(), catalog.Name); err != nil || len(parked) != 0 {
		t.Fatalf("parked %v %v", parked, err)
	}
	var attempt int64
	var title string
	var lessons int
	if err := pool.QueryRow(context.Background(), `SELECT attempt, title, lesson_count FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, course).
		Scan(&attempt, &title, &lessons); err != nil {
		t.Fatal(err)
	}
	if attempt != bigAttempt || title != "Current" || lessons != 3 {
		t.Fatalf("the course: attempt %d, %q, %d lessons; want attempt %d, \"Current\", 3 lessons", attempt, title, lessons, bigAttempt)
	}
	if table, view, _ := catalogAttemptTypes(t, pool); table != "bigint" || view != "bigint" {
		t.Fatalf("attempt is %s in the table and %s in the view, want bigint", table, view)
	}
}

// A catalog generation made by the migrations before attempt was a
// bigint, with rows, is upgraded by Migrate: the column and the view
// readers query become bigint, every row is kept as it was, and the
// generation then projects an attempt above 2^31-1.
func TestCatalogMigrationWidensAttemptOfAnExistingTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 60, 10)
	kept := uuid.New()
	appendTo(t, store, "course-"+kept.String(),
		ev("course.generation.requested", 2, "acme", map[string]any{"course_id": kept, "topic": "Max", "attempt": int64(1)<<31 - 1, "language": "en"}))

	old := catalogBefore(t, 7)
	names, err := fs.Glob(catalog.Projection().Migrations, "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	analyst := testRoles(t, "es_catalog_analyst_")[0]
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), old)
	if _, err := rt.CatchUp(ctx, catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	// An operator's grants and comments, on the view whose column is
	// widened and on one the widening does not touch (all the catalog's
	// views are made again for it).
	for _, q := range []string{
		`GRANT SELECT ON course_catalog, course_distributions TO ` + pgx.Identifier{analyst}.Sanitize(),
		`COMMENT ON VIEW course_catalog IS 'courses, for the analysts'`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if table, view, v := catalogAttemptTypes(t, pool); table != "integer" || view != "integer" || v != 6 {
		t.Fatalf("the old generation: attempt %s (view %s) at migration %d, want integer at 6", table, view, v)
	}
	rows := catalogRows(t, pool)
	if len(rows) < 2 || !strings.Contains(strings.Join(rows, "\n"), `"attempt":2147483647`) {
		t.Fatalf("the old generation's rows: %q", rows)
	}

	rt = newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	if table, view, v := catalogAttemptTypes(t, pool); table != "bigint" || view != "bigint" || v != len(names) {
		t.Fatalf("after Migrate: attempt %s (view %s) at migration %d, want bigint at %d", table, view, v, len(names))
	}
	if got := catalogRows(t, pool); strings.Join(got, "\n") != strings.Join(rows, "\n") {
		t.Fatalf("the rows changed in the upgrade:\n%q\nwant\n%q", got, rows)
	}
	var granted bool
	var note *string
	if err := pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'course_catalog', 'SELECT') AND has_table_privilege($1, 'course_distributions', 'SELECT'),
		obj_description('course_catalog'::regclass, 'pg_class')`, analyst).Scan(&granted, &note); err != nil {
		t.Fatal(err)
	}
	if !granted || note == nil || *note != "courses, for the analysts" {
		t.Fatalf("after the upgrade: the analyst's SELECT %v, the comment %v; want both kept", granted, note)
	}

	appendTo(t, store, "course-"+kept.String(),
		ev("course.generation.requested", 2, "acme", map[string]any{"course_id": kept, "topic": "Big", "attempt": bigAttempt, "language": "en"}))
	if _, err := rt.CatchUp(ctx, catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	if parked, err := rt.ListParked(ctx, catalog.Name); err != nil || len(parked) != 0 {
		t.Fatalf("parked %v %v", parked, err)
	}
	var attempt int64
	var topic string
	if err := pool.QueryRow(ctx, `SELECT attempt, topic FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, kept).Scan(&attempt, &topic); err != nil {
		t.Fatal(err)
	}
	if attempt != bigAttempt || topic != "Big" {
		t.Fatalf("after the upgrade: attempt %d, topic %q; want %d, \"Big\"", attempt, topic, bigAttempt)
	}
}
