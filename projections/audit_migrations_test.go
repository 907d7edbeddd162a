package projections_test

import (
	"context"
	"io/fs"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/projections/audit"
)

// activeIndexes returns the definitions of the indexes of the active
// audit generation's audit_events, without the schema name, sorted, and
// the audit migration version recorded in that generation.
func activeIndexes(tb testing.TB, pool *pgxpool.Pool) ([]string, int) {
	tb.Helper()
	ctx := context.Background()
	var schema string
	if err := pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = $1 AND state = 'active'`, audit.Name).Scan(&schema); err != nil {
		tb.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT replace(indexdef, quote_ident(schemaname) || '.', '') FROM pg_indexes
		WHERE schemaname = $1 AND tablename = 'audit_events' ORDER BY indexname`, schema)
	if err != nil {
		tb.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	var version int
	q := `SELECT max(version) FROM ` + pgx.Identifier{schema, "eventstream_migrations"}.Sanitize() + ` WHERE component = 'projection:' || $1`
	if err := pool.QueryRow(ctx, q, audit.Name).Scan(&version); err != nil {
		tb.Fatal(err)
	}
	return defs, version
}

// A generation that ran only the first audit migration (the B-tree on
// (stream, version)) ends, after Migrate with the current migrations,
// with the same indexes as a fresh install.
func TestAuditMigrationsUpgradeLikeAFreshInstall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 50, 10)

	fresh := database(t)
	newRuntime(t, fresh, store, fastConfig(), audit.Projection())
	want, wantVersion := activeIndexes(t, fresh)
	ms, err := fs.Glob(audit.Projection().Migrations, "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	if wantVersion != len(ms) || wantVersion < 2 {
		t.Fatalf("a fresh install is at migration %d of %d", wantVersion, len(ms))
	}
	hash := `CREATE INDEX audit_events_stream_idx ON audit_events USING hash (stream)`
	if !slices.Contains(want, hash) {
		t.Fatalf("a fresh install lacks %q: %q", hash, want)
	}

	old := audit.Projection()
	first, err := fs.ReadFile(old.Migrations, "001_audit_events.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	old.Migrations = fstest.MapFS{"001_audit_events.up.sql": {Data: first}}
	upgraded := database(t)
	rt := newRuntime(t, upgraded, store, fastConfig(), old)
	if _, err := rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	before, v := activeIndexes(t, upgraded)
	btree := `CREATE INDEX audit_events_stream_idx ON audit_events USING btree (stream, version)`
	if v != 1 || !slices.Contains(before, btree) {
		t.Fatalf("the old generation is at migration %d with %q; want 1 with %q", v, before, btree)
	}

	rt = newRuntime(t, upgraded, store, fastConfig(), audit.Projection())
	got, gotVersion := activeIndexes(t, upgraded)
	if gotVersion != wantVersion || !slices.Equal(got, want) {
		t.Fatalf("after the upgrade, migration %d with\n%q\nwant migration %d with\n%q", gotVersion, got, wantVersion, want)
	}
	if pos, err := rt.CatchUp(ctx, audit.Name, 0); err != nil || pos != headOf(t, store) {
		t.Fatalf("the upgraded generation after CatchUp: %s, %v", pos, err)
	}
	var n int
	if err := upgraded.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 50 {
		t.Fatalf("the upgraded generation holds %d rows (%v), want 50", n, err)
	}
}
