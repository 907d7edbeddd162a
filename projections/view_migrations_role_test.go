package projections_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
)

// The tests in view_migrations_test.go run the runtime as the superuser
// the test database is reached as. These run it as a deployment does: as
// a login role that is not a superuser, with no more than it needs.

// runtimeRoles is testRoles with the first role able to log in and made
// what a deployment's runtime role is: not a superuser, owner of the
// fresh schema the runtime works in (the pool's search_path) and allowed
// to create schemas in the database (each generation of a read model has
// one). Tried less: without CREATE on the database the first generation
// cannot be made (permission denied for database); with USAGE and CREATE
// on the schema instead of owning it the runtime works, but cannot grant
// USAGE on its schema to readers (OnPublish: PostgreSQL only warns, and
// the readers do not find the views). It returns the roles, a pool connected as the first one, and a
// pool on the same schema connected as the superuser, for the checks
// and for what another role does (SET ROLE). Roles are dropped after the
// schemas (testRoles), then checked gone.
func runtimeRoles(tb testing.TB, names ...string) (roles []string, pool, admin *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	// Registered first, so it runs last: after testRoles dropped them.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.BaseURL())
		if err != nil {
			tb.Errorf("check the test roles are gone: %v", err)
			return
		}
		defer conn.Close(ctx)
		var left []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(rolname::text), '{}') FROM pg_roles WHERE rolname = ANY($1)`, roles).Scan(&left); err != nil || len(left) > 0 {
			tb.Errorf("test roles left behind: %v (%v)", left, err)
		}
	})
	roles = testRoles(tb, names...)
	runtime := pgx.Identifier{roles[0]}.Sanitize()
	u, schema := pgtest.Schema(tb)
	admin = rolePool(tb, u)
	var db string
	if err := admin.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		tb.Fatal(err)
	}
	onDatabase := ` ON DATABASE ` + pgx.Identifier{db}.Sanitize()
	for _, q := range []string{
		`ALTER ROLE ` + runtime + ` LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS`,
		`ALTER SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` OWNER TO ` + runtime,
		// CREATE SCHEMA, for the generations; CONNECT and TEMPORARY are
		// PUBLIC's by default.
		`GRANT CREATE` + onDatabase + ` TO ` + runtime,
	} {
		if err := execRetrying(ctx, admin, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	// Before testRoles' DROP OWNED BY, so that it meets no other test
	// changing the database's ACL.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := execRetrying(ctx, admin, `REVOKE CREATE`+onDatabase+` FROM `+runtime); err != nil {
			tb.Errorf("revoke CREATE on the database from %s: %v", roles[0], err)
		}
	})
	ru, err := url.Parse(u)
	if err != nil {
		tb.Fatal(err)
	}
	ru.User = url.User(roles[0])
	pool = rolePool(tb, ru.String())
	// As database does: Uninstall, here as the runtime role, before the
	// schemas are dropped.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := projections.Uninstall(ctx, pool); err != nil {
			tb.Errorf("uninstall as %s: %v", roles[0], err)
		}
	})
	var user string
	var super bool
	if err := pool.QueryRow(ctx, `SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super); err != nil || user != roles[0] || super {
		tb.Fatalf("the runtime's pool is connected as %s (superuser %v, %v), want %s, not a superuser", user, super, err, roles[0])
	}
	return roles, pool, admin
}

// execRetrying runs q, again if another session changed the same
// catalog row meanwhile (tuple concurrently updated): tests in parallel,
// here and in other packages, grant and revoke privileges on the one
// database.
func execRetrying(ctx context.Context, pool *pgxpool.Pool, q string) error {
	for try := 0; ; try++ {
		_, err := pool.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if err == nil || try == 20 || !errors.As(err, &pgErr) || pgErr.Code != "XX000" || !strings.Contains(pgErr.Message, "concurrently") {
			return err
		}
		time.Sleep(time.Duration(try+1) * 10 * time.Millisecond)
	}
}

func rolePool(tb testing.TB, u string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// grantReaders is an OnPublish that lets the roles read what the views
// show: USAGE on the runtime's schema and the generation's, SELECT on the
// generation's tables (the views are security_invoker).
func grantReaders(roles ...string) func(context.Context, pgx.Tx, projections.Publication) error {
	return func(ctx context.Context, tx pgx.Tx, p projections.Publication) error {
		for _, r := range roles {
			to := ` TO ` + pgx.Identifier{r}.Sanitize()
			qs := []string{
				`GRANT USAGE ON SCHEMA ` + pgx.Identifier{p.Home}.Sanitize() + to,
				`GRANT USAGE ON SCHEMA ` + pgx.Identifier{p.Schema}.Sanitize() + to,
			}
			for _, t := range p.Tables {
				qs = append(qs, `GRANT SELECT ON `+pgx.Identifier{p.Schema, t}.Sanitize()+to)
			}
			for _, q := range qs {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// readAs counts the rows of the view seen as role reads them, through
// admin (SET LOCAL ROLE).
func readAs(pool *pgxpool.Pool, role string) (n int, err error) {
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM seen`).Scan(&n)
	})
	return n, err
}

func hasSelect(tb testing.TB, pool *pgxpool.Pool, role, privilege string) bool {
	tb.Helper()
	var has bool
	if err := pool.QueryRow(context.Background(), `SELECT has_table_privilege($1, 'seen', $2)`, role, privilege).Scan(&has); err != nil {
		tb.Fatal(err)
	}
	return has
}

// A runtime connected as a role that is not a superuser, but owns its
// schema and may create schemas, migrates the published view as the
// superuser does: a migration that changes a column's type, then one that
// drops the column, each drops the view and makes it again, and the
// SELECT the runtime role granted an analyst on it, and its comment, are
// kept: the analyst reads the view after each.
func TestMigrateAsARoleThatIsNotSuperuserKeepsItsGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 30, 10)
	roles, pool, admin := runtimeRoles(t, "es_runtime_", "es_analyst_")
	runtime, analyst := roles[0], roles[1]
	cfg := fastConfig()
	cfg.OnPublish = grantReaders(analyst)
	with := seenWithMigrations("002_size.up.sql", "003_size_bigint.up.sql", "004_no_size.up.sql")

	rt := newRuntime(t, pool, store, cfg, with(addSize))
	want := catchUpSeen(t, rt, pool)
	for _, q := range []string{
		`GRANT SELECT ON seen TO ` + pgx.Identifier{analyst}.Sanitize(),
		`COMMENT ON VIEW seen IS 'seen events'`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s as %s: %v", q, runtime, err)
		}
	}
	set := seenViewSettings(t, pool)
	if set.Owner != runtime || !slices.Contains(strings.Split(set.ACL, ", "), runtime+">"+analyst+":SELECT") {
		t.Fatalf("the settings made by the runtime role: %s", set)
	}
	if n, err := readAs(admin, analyst); err != nil || n != want {
		t.Fatalf("the analyst reads %d rows (%v), want %d", n, err, want)
	}

	for _, step := range []struct {
		name     string
		sql      []string
		sizeCols int
	}{
		{"widening size", []string{addSize, widenSize}, 1},
		{"dropping size", []string{addSize, widenSize, dropSize}, 0},
	} {
		before := seenViewSettings(t, pool)
		rt, err := projections.New(pool, store, registry(t), cfg, with(step.sql...))
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Migrate(ctx); err != nil {
			t.Fatalf("Migrate %s as %s: %v", step.name, runtime, err)
		}
		var cols int
		var typ *string
		if err := admin.QueryRow(ctx, `SELECT count(*), max(format_type(atttypid, atttypmod)) FROM pg_attribute
			WHERE attrelid = 'seen'::regclass AND attname = 'size' AND NOT attisdropped`).Scan(&cols, &typ); err != nil {
			t.Fatal(err)
		}
		if cols != step.sizeCols || (cols == 1 && *typ != "bigint") {
			t.Fatalf("after %s: the view has %d columns size (%v)", step.name, cols, typ)
		}
		got := seenViewSettings(t, pool)
		if got.OID == before.OID {
			t.Fatalf("%s did not make the view again: the test proves nothing", step.name)
		}
		if !sameSettings(got, set) {
			t.Fatalf("after %s:\n%s\nwant\n%s", step.name, got, set)
		}
		if !hasSelect(t, admin, analyst, "SELECT") || hasSelect(t, admin, analyst, "SELECT WITH GRANT OPTION") {
			t.Fatalf("after %s: the analyst's privileges on seen are not SELECT alone: %s", step.name, got)
		}
		if n, err := readAs(admin, analyst); err != nil || n != want {
			t.Fatalf("after %s the analyst reads %d rows (%v), want %d", step.name, n, err, want)
		}
	}
}

// A grant on the view made by another role than the owner is made again
// under SET ROLE that role; a runtime role that cannot become it (not a
// member) makes it in its own name, the owner's, as asGrantor documents:
// the role granted to keeps reading the view, and Migrate does not fail.
// Here the runtime role granted a lead SELECT WITH GRANT OPTION, and the
// lead granted SELECT to a chained role, on the view and on its column
// event_id (the grant option on the view is enough for that).
func TestMigrateAsARoleThatIsNotSuperuserRegrantsWhatItCannotGrantAs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	fill(t, store, 20, 10)
	roles, pool, admin := runtimeRoles(t, "es_runtime_", "es_lead_", "es_chained_")
	runtime, lead, chained := roles[0], roles[1], roles[2]
	id := func(role string) string { return pgx.Identifier{role}.Sanitize() }
	cfg := fastConfig()
	cfg.OnPublish = grantReaders(lead, chained)
	with := seenWithMigrations("002_size.up.sql", "003_size_bigint.up.sql")

	rt := newRuntime(t, pool, store, cfg, with(addSize))
	want := catchUpSeen(t, rt, pool)
	if _, err := pool.Exec(ctx, `GRANT SELECT ON seen TO `+id(lead)+` WITH GRANT OPTION`); err != nil {
		t.Fatal(err)
	}
	execInTx(t, admin,
		`SET LOCAL ROLE `+id(lead),
		`GRANT SELECT ON seen TO `+id(chained),
		`GRANT SELECT (event_id) ON seen TO `+id(chained),
	)
	var member bool
	if err := admin.QueryRow(ctx, `SELECT pg_has_role($1, $2, 'MEMBER')`, runtime, lead).Scan(&member); err != nil || member {
		t.Fatalf("%s is a member of %s (%v): the test proves nothing", runtime, lead, err)
	}
	set := seenViewSettings(t, pool)
	for _, item := range []string{runtime + ">" + lead + ":SELECT*", lead + ">" + chained + ":SELECT"} {
		if !slices.Contains(strings.Split(set.ACL, ", "), item) {
			t.Fatalf("the grants made: %s, want %s among them", set, item)
		}
	}
	if set.ColumnACL != lead+">"+chained+":SELECT" {
		t.Fatalf("the grants made: %s, want the column's by %s", set, lead)
	}
	if n, err := readAs(admin, chained); err != nil || n != want {
		t.Fatalf("the chained role reads %d rows (%v), want %d", n, err, want)
	}

	rt, err := projections.New(pool, store, registry(t), cfg, with(addSize, widenSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("Migrate as %s with a grant by %s on the view: %v", runtime, lead, err)
	}
	if got := seenSizeType(t, pool); got != "bigint" {
		t.Fatalf("after widening: size is %s", got)
	}
	got := seenViewSettings(t, pool)
	if got.OID == set.OID {
		t.Fatal("the widening did not make the view again: the test proves nothing")
	}
	acl := strings.Split(got.ACL, ", ")
	for _, item := range []string{runtime + ">" + lead + ":SELECT*", runtime + ">" + chained + ":SELECT"} {
		if !slices.Contains(acl, item) {
			t.Errorf("after widening: %s, want %s among the privileges", got, item)
		}
	}
	if got.ColumnACL != runtime+">"+chained+":SELECT" {
		t.Errorf("after widening: %s, want the column's SELECT for %s made again by %s", got, chained, runtime)
	}
	if strings.Contains(got.ACL, lead+">") || strings.Contains(got.ColumnACL, lead+">") {
		t.Errorf("after widening: %s, want no grant recorded as %s's", got, lead)
	}
	if !hasSelect(t, admin, chained, "SELECT") || hasSelect(t, admin, chained, "SELECT WITH GRANT OPTION") || !hasSelect(t, admin, lead, "SELECT WITH GRANT OPTION") {
		t.Errorf("after widening: the privileges on seen are %s", got)
	}
	if n, err := readAs(admin, chained); err != nil || n != want {
		t.Errorf("after widening the chained role reads %d rows (%v), want %d", n, err, want)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("a second Migrate: %v", err)
	}
	if again := seenViewSettings(t, pool); again.OID != got.OID || !sameSettings(again, got) {
		t.Fatalf("a second Migrate with nothing to do changed the view: %s (oid %d), was %s (oid %d)", again, again.OID, got, got.OID)
	}
}

// A role holding the grant option of a privilege on the whole view may
// grant it on one column: Migrate makes that column grant again, by that
// role, when it makes the view again. (restoreACL looked for the grant
// option among the column's privileges only, and failed the migration:
// "never holds the grant option".)
func TestMigrateKeepsAColumnGrantMadeWithTheViewsGrantOption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	roles := testRoles(t, "es_lead_", "es_chained_")
	lead, chained := roles[0], roles[1]
	id := func(role string) string { return pgx.Identifier{role}.Sanitize() }
	store := logStore(t)
	fill(t, store, 10, 5)
	pool := database(t)
	with := seenWithMigrations("002_size.up.sql", "003_size_bigint.up.sql")

	newRuntime(t, pool, store, fastConfig(), with(addSize))
	var home string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&home); err != nil {
		t.Fatal(err)
	}
	execInTx(t, pool,
		`GRANT SELECT ON seen TO `+id(lead)+` WITH GRANT OPTION`,
		`GRANT USAGE ON SCHEMA `+id(home)+` TO `+id(lead),
		`SET LOCAL ROLE `+id(lead),
		`GRANT SELECT (event_id) ON seen TO `+id(chained),
		`RESET ROLE`,
	)
	set := seenViewSettings(t, pool)
	if set.ColumnACL != lead+">"+chained+":SELECT" {
		t.Fatalf("the grants made: %s", set)
	}
	rt, err := projections.New(pool, store, registry(t), fastConfig(), with(addSize, widenSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("Migrate under a column grant made with the view's grant option: %v", err)
	}
	got := seenViewSettings(t, pool)
	if got.OID == set.OID || seenSizeType(t, pool) != "bigint" {
		t.Fatal("the widening did not make the view again: the test proves nothing")
	}
	if !sameSettings(got, set) {
		t.Fatalf("after widening:\n%s\nwant\n%s", got, set)
	}
	var has bool
	if err := pool.QueryRow(ctx, `SELECT has_column_privilege($1, 'seen', 'event_id', 'SELECT')`, chained).Scan(&has); err != nil || !has {
		t.Fatalf("after widening: has_column_privilege(%s, seen, event_id, SELECT) = %v (%v)", chained, has, err)
	}
}
