package projections_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
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

// The migrations the view tests add to the seen projection.
const (
	addSize   = `ALTER TABLE seen ADD COLUMN size integer NOT NULL DEFAULT 7`
	widenSize = `ALTER TABLE seen ALTER COLUMN size TYPE bigint`
	dropSize  = `ALTER TABLE seen DROP COLUMN size`
)

// catchUpSeen catches the seen projection up with the log and returns
// how many events its view shows (failing the test when none).
func catchUpSeen(t *testing.T, rt *projections.Runtime, pool *pgxpool.Pool) int {
	t.Helper()
	if _, err := rt.CatchUp(context.Background(), "seen", 0); err != nil {
		t.Fatal(err)
	}
	n := seenCount(t, pool)
	if n == 0 {
		t.Fatal("nothing seen")
	}
	return n
}

// execInTx runs the statements, in order, in one transaction on pool.
func execInTx(t *testing.T, pool *pgxpool.Pool, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// seenWithMigrations is the "seen" projection (a handler that does
// nothing) with the migrations sql added after its own, named after names
// in order.
func seenWithMigrations(names ...string) func(sql ...string) projections.Projection {
	return func(sql ...string) projections.Projection {
		p := seenProjection("seen", func(eventstore.Event) error { return nil })
		ms := p.Migrations.(fstest.MapFS)
		for i, q := range sql {
			ms[names[i]] = &fstest.MapFile{Data: []byte(q)}
		}
		return p
	}
}

// stoppedByReaderView checks that Migrate is stopped by a reader's own
// view (dependent_objects_still_exist, naming it) and changes nothing
// (size stays an integer, the view shows want rows), then drops that
// view.
func stoppedByReaderView(t *testing.T, rt *projections.Runtime, pool *pgxpool.Pool, view string, want int) {
	t.Helper()
	ctx := context.Background()
	err := rt.Migrate(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "2BP01" || !strings.Contains(err.Error(), view) {
		t.Fatalf("Migrate under a reader's view: %v, want the refusal (dependent_objects_still_exist) naming %s", err, view)
	}
	if got := seenSizeType(t, pool); got != "integer" || seenCount(t, pool) != want {
		t.Fatalf("the refused migration changed size to %q or the rows", got)
	}
	if _, err := pool.Exec(ctx, `DROP VIEW `+view); err != nil {
		t.Fatal(err)
	}
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
	with := seenWithMigrations("002_size.up.sql", "003_size_bigint.up.sql")

	rt := newRuntime(t, pool, store, fastConfig(), with())
	want := catchUpSeen(t, rt, pool)
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
	stoppedByReaderView(t, rt, pool, "seen_report", want)
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

// testRoles creates a role for each name, with a random suffix so that
// parallel tests and reruns do not meet (roles belong to the cluster, not
// to a schema), and returns their names. Call it before database: the
// roles are dropped after the test's schemas are, with DROP OWNED BY for
// anything still granted to them.
func testRoles(tb testing.TB, names ...string) []string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	roles := make([]string, len(names))
	for i, n := range names {
		roles[i] = n + suffix
		if _, err := conn.Exec(ctx, `CREATE ROLE `+pgx.Identifier{roles[i]}.Sanitize()+` NOLOGIN`); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.BaseURL())
		if err != nil {
			tb.Errorf("drop the test roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, r := range roles {
			id := pgx.Identifier{r}.Sanitize()
			if _, err := conn.Exec(ctx, `DROP OWNED BY `+id); err != nil {
				tb.Errorf("drop owned by %s: %v", r, err)
			}
			if _, err := conn.Exec(ctx, `DROP ROLE `+id); err != nil {
				tb.Errorf("drop role %s: %v", r, err)
			}
		}
	})
	return roles
}

// viewSettings is what an operator set by hand on the view seen: its
// owner, its privileges and those of its column event_id (grantor>grantee:
// privilege, * for WITH GRANT OPTION, sorted, separated by ", "), its comment and event_id's,
// and the view's oid (not a setting: it tells a view made again).
type viewSettings struct {
	Owner, ACL, ColumnACL string
	Comment, ColumnNote   *string
	OID                   uint32
}

func seenViewSettings(tb testing.TB, pool *pgxpool.Pool) viewSettings {
	tb.Helper()
	acl := func(from string) string {
		return `coalesce((SELECT string_agg(x, ', ' ORDER BY x) FROM (SELECT format('%s>%s:%s%s', pg_get_userbyid(a.grantor),
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
			CASE WHEN a.is_grantable THEN '*' ELSE '' END) AS x FROM ` + from + `) s), '')`
	}
	var s viewSettings
	err := pool.QueryRow(context.Background(), `SELECT pg_get_userbyid(c.relowner), `+acl(`aclexplode(c.relacl) a`)+`,
		`+acl(`pg_attribute t, aclexplode(t.attacl) a WHERE t.attrelid = c.oid AND t.attname = 'event_id'`)+`,
		obj_description(c.oid, 'pg_class'),
		col_description(c.oid, (SELECT attnum FROM pg_attribute WHERE attrelid = c.oid AND attname = 'event_id')),
		c.oid
		FROM pg_class c WHERE c.oid = 'seen'::regclass`).Scan(&s.Owner, &s.ACL, &s.ColumnACL, &s.Comment, &s.ColumnNote, &s.OID)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (s viewSettings) String() string {
	str := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return strconv.Quote(*p)
	}
	return fmt.Sprintf("owner %s, acl [%s], event_id acl [%s], comment %s, event_id comment %s", s.Owner, s.ACL, s.ColumnACL, str(s.Comment), str(s.ColumnNote))
}

// sameSettings is s and t but for the oid.
func sameSettings(s, t viewSettings) bool {
	s.OID, t.OID = 0, 0
	return s.String() == t.String()
}

// A migration that changes a column's type makes the projection's view
// again (TestMigrateChangesAColumnTypeUnderThePublishedView), and what an
// operator set on the view by hand is made again with it, in the same
// transaction: the owner, SELECT granted to a role (with an odd name), to
// another WITH GRANT OPTION, by that one to a third, and to PUBLIC, a
// column's privilege, privileges the owner revoked from itself, the
// comments; a privilege the new view would get by default and the old
// one did not have is revoked. A migration that fails after the view was
// dropped, or a publication that fails after the view was made again,
// changes nothing: the old view stands with its settings.
func TestMigrateKeepsTheGrantsOfTheViewsItMakesAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	roles := testRoles(t, `es "Odd" reader-`, "es_lead_", "es_chained_", "es_column_", "es_owner_", "es_stranger_")
	reader, lead, chained, column, owner, stranger := roles[0], roles[1], roles[2], roles[3], roles[4], roles[5]
	id := func(role string) string { return pgx.Identifier{role}.Sanitize() }
	store := logStore(t)
	fill(t, store, 30, 10)
	pool := database(t)
	with := seenWithMigrations("002_size.up.sql", "003_size_bigint.up.sql", "004_fails.up.sql")

	rt := newRuntime(t, pool, store, fastConfig(), with())
	want := catchUpSeen(t, rt, pool)
	var home string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&home); err != nil {
		t.Fatal(err)
	}
	execInTx(t, pool,
		`ALTER VIEW seen OWNER TO `+id(owner),
		`REVOKE TRUNCATE, TRIGGER ON seen FROM `+id(owner),
		`GRANT SELECT ON seen TO `+id(reader),
		`GRANT SELECT ON seen TO `+id(lead)+` WITH GRANT OPTION`,
		`GRANT SELECT ON seen TO PUBLIC`,
		`GRANT SELECT (event_id), UPDATE (event_id) ON seen TO `+id(column),
		`COMMENT ON VIEW seen IS 'What was seen: it''s "quoted" \ and ünicode'`,
		`COMMENT ON COLUMN seen.event_id IS 'the event'`,
		// The lead grants on its own (it needs to find the view).
		`GRANT USAGE ON SCHEMA `+id(home)+` TO `+id(lead),
		`SET LOCAL ROLE `+id(lead),
		`GRANT SELECT ON seen TO `+id(chained),
		`RESET ROLE`,
		// What a view made from now on gets, and seen did not.
		`ALTER DEFAULT PRIVILEGES IN SCHEMA `+id(home)+` GRANT SELECT, DELETE ON TABLES TO `+id(stranger),
	)
	set := seenViewSettings(t, pool)
	for _, item := range []string{
		owner + ">" + reader + ":SELECT", owner + ">" + lead + ":SELECT*", lead + ">" + chained + ":SELECT",
		owner + ">PUBLIC:SELECT", owner + ">" + owner + ":DELETE",
	} {
		if !slices.Contains(strings.Split(set.ACL, ", "), item) {
			t.Fatalf("the settings made by hand: %s, want %s among the privileges", set, item)
		}
	}
	if strings.Contains(set.ACL, owner+":TRUNCATE") || strings.Contains(set.ACL, stranger) || set.Owner != owner || set.ColumnACL == "" || set.Comment == nil || set.ColumnNote == nil {
		t.Fatalf("the settings made by hand: %s", set)
	}

	// Adding a column replaces the view (CREATE OR REPLACE): it keeps
	// them anyway.
	newRuntime(t, pool, store, fastConfig(), with(addSize))
	if got := seenViewSettings(t, pool); !sameSettings(got, set) || got.OID != set.OID {
		t.Fatalf("after adding a column: %s (oid %d), want %s (oid %d)", got, got.OID, set, set.OID)
	}

	// A migration that fails after the one that made the view be dropped.
	failing, err := projections.New(pool, store, registry(t), fastConfig(), with(addSize, widenSize, `SELECT 1/0`))
	if err != nil {
		t.Fatal(err)
	}
	err = failing.Migrate(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("Migrate with a failing migration: %v, want division_by_zero", err)
	}
	if got := seenViewSettings(t, pool); !sameSettings(got, set) || got.OID != set.OID || seenSizeType(t, pool) != "integer" {
		t.Fatalf("after a failed migration: size is %s, %s (oid %d), want integer, %s (oid %d)", seenSizeType(t, pool), got, got.OID, set, set.OID)
	}

	// A publication that fails after the view was made again.
	cfg := fastConfig()
	cfg.OnPublish = func(context.Context, pgx.Tx, projections.Publication) error { return errors.New("refused") }
	failing, err = projections.New(pool, store, registry(t), cfg, with(addSize, widenSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := failing.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Migrate with a failing OnPublish: %v", err)
	}
	if got := seenViewSettings(t, pool); !sameSettings(got, set) || got.OID != set.OID || seenSizeType(t, pool) != "integer" {
		t.Fatalf("after a failed publication: size is %s, %s (oid %d), want integer, %s (oid %d)", seenSizeType(t, pool), got, got.OID, set, set.OID)
	}

	newRuntime(t, pool, store, fastConfig(), with(addSize, widenSize))
	if got := seenSizeType(t, pool); got != "bigint" || seenCount(t, pool) != want {
		t.Fatalf("after widening: size is %s, %d rows, want bigint, %d", got, seenCount(t, pool), want)
	}
	got := seenViewSettings(t, pool)
	if got.OID == set.OID {
		t.Fatal("the widening did not make the view again: the test proves nothing")
	}
	if !sameSettings(got, set) {
		t.Fatalf("after widening:\n%s\nwant\n%s", got, set)
	}
	for _, c := range []struct {
		role, privilege string
		want            bool
	}{
		{reader, "SELECT", true}, {reader, "SELECT WITH GRANT OPTION", false},
		{lead, "SELECT WITH GRANT OPTION", true}, {chained, "SELECT", true},
		{stranger, "DELETE", false}, {owner, "TRUNCATE", false}, {owner, "UPDATE", true},
	} {
		var has bool
		if err := pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'seen', $2)`, c.role, c.privilege).Scan(&has); err != nil || has != c.want {
			t.Errorf("has_table_privilege(%s, seen, %s) = %v (%v), want %v", c.role, c.privilege, has, err, c.want)
		}
	}
	var colUpdate bool
	if err := pool.QueryRow(ctx, `SELECT has_column_privilege($1, 'seen', 'event_id', 'UPDATE')`, column).Scan(&colUpdate); err != nil || !colUpdate {
		t.Errorf("the column privilege: %v (%v)", colUpdate, err)
	}
}

// A migration that renames a column leaves the view with the old name,
// which CREATE OR REPLACE VIEW cannot change: publishViews drops the view
// and makes it again, keeping the grants and comment made on it by hand.
func TestMigrateKeepsTheGrantsOfAViewWhoseColumnsChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reader := testRoles(t, "es_reader_")[0]
	store := logStore(t)
	fill(t, store, 10, 5)
	pool := database(t)
	p := seenProjection("seen", func(eventstore.Event) error { return nil })
	newRuntime(t, pool, store, fastConfig(), p)
	for _, q := range []string{
		`GRANT SELECT ON seen TO ` + pgx.Identifier{reader}.Sanitize() + ` WITH GRANT OPTION`,
		`COMMENT ON VIEW seen IS 'seen events'`,
		`COMMENT ON COLUMN seen.event_id IS 'the event'`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	set := seenViewSettings(t, pool)

	p = seenProjection("seen", func(eventstore.Event) error { return nil })
	p.Migrations.(fstest.MapFS)["002_rename.up.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE seen RENAME COLUMN tenant_id TO tenant`)}
	newRuntime(t, pool, store, fastConfig(), p)
	var cols string
	if err := pool.QueryRow(ctx, `SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'seen'::regclass AND attnum > 0`).Scan(&cols); err != nil || cols != "n,event_id,tenant" {
		t.Fatalf("the view's columns after the rename: %q (%v)", cols, err)
	}
	got := seenViewSettings(t, pool)
	if got.OID == set.OID || !sameSettings(got, set) {
		t.Fatalf("after the rename: %s (oid %d), want %s made again (oid %d)", got, got.OID, set, set.OID)
	}
}

// A migration may drop a column of a published table, which PostgreSQL
// refuses while a view reads it (dependent_objects_still_exist): Migrate
// drops the projection's views for it and makes them again without the
// column, keeping the rows. A reader's own view on the column still stops
// it, naming the view, and changes nothing.
func TestMigrateDropsAColumnUnderThePublishedView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 20, 10)
	pool := database(t)
	with := seenWithMigrations("002_size.up.sql", "003_no_size.up.sql")

	rt := newRuntime(t, pool, store, fastConfig(), with(addSize))
	want := catchUpSeen(t, rt, pool)
	if _, err := pool.Exec(ctx, `CREATE VIEW seen_sizes AS SELECT size FROM seen`); err != nil {
		t.Fatal(err)
	}
	rt, err := projections.New(pool, store, registry(t), fastConfig(), with(addSize, dropSize))
	if err != nil {
		t.Fatal(err)
	}
	stoppedByReaderView(t, rt, pool, "seen_sizes", want)
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("Migrate dropping a column under the projection's view: %v", err)
	}
	var cols int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_attribute WHERE attrelid = 'seen'::regclass AND attname = 'size' AND NOT attisdropped`).Scan(&cols); err != nil || cols != 0 {
		t.Fatalf("after the drop the view still has size (%d, %v)", cols, err)
	}
	if got := seenCount(t, pool); got != want {
		t.Fatalf("after the drop the view shows %d rows, want %d", got, want)
	}
}
