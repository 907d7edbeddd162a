package migrate_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
)

const component = "test"

func migrations(sqls ...string) []migrate.Migration {
	ms := make([]migrate.Migration, len(sqls))
	for i, s := range sqls {
		ms[i] = migrate.Migration{Version: i + 1, Name: fmt.Sprintf("m%d", i+1), SQL: s}
	}
	return ms
}

// withParam returns u with one more query parameter (pgx sends unknown
// ones to the server as run-time settings).
func withParam(t *testing.T, u, k, v string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx does not read + as a space
	return p.String()
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func status(t *testing.T, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) int {
	t.Helper()
	v, err := migrate.Status(context.Background(), q, component)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tableExists(t *testing.T, c *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	if err := c.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestApplyTwiceRunsNothingTheSecondTime(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)
	ran, err := migrate.Apply(ctx, c, component, ms)
	if err != nil || len(ran) != 2 {
		t.Fatalf("first Apply: ran %d, %v; want 2, nil", len(ran), err)
	}
	ran, err = migrate.Apply(ctx, c, component, ms)
	if err != nil || len(ran) != 0 {
		t.Fatalf("second Apply: ran %d, %v; want 0, nil", len(ran), err)
	}
	if got := status(t, c); got != 2 {
		t.Fatalf("Status = %d, want 2", got)
	}
}

// TestApplyConcurrently: processes migrating one schema at once, each on
// its own connection, apply every migration exactly once between them and
// all succeed, whatever the session's default isolation level.
func TestApplyConcurrently(t *testing.T) {
	for _, iso := range []string{"", "repeatable read", "serializable"} {
		t.Run(strings.ReplaceAll(iso+" ", " ", "_"), func(t *testing.T) {
			ctx := context.Background()
			u, _ := pgtest.Schema(t)
			if iso != "" {
				u = withParam(t, u, "default_transaction_isolation", iso)
			}
			// The first migration sleeps so that every applier is
			// waiting on the lock before the first one commits.
			ms := migrations(`SELECT pg_sleep(0.3); CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `INSERT INTO a VALUES (1)`)
			const n = 6
			conns := make([]*pgx.Conn, n)
			for i := range conns {
				conns[i] = connect(t, u)
			}
			var wg sync.WaitGroup
			ran := make([]int, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r, err := migrate.Apply(ctx, conns[i], component, ms)
					ran[i], errs[i] = len(r), err
				}()
			}
			close(start)
			wg.Wait()
			total := 0
			for i := range n {
				if errs[i] != nil {
					t.Errorf("applier %d: %v", i, errs[i])
				}
				total += ran[i]
			}
			if total != len(ms) {
				t.Errorf("the appliers ran %v migrations, %d in all; want %d in all", ran, total, len(ms))
			}
			var rows int
			if err := conns[0].QueryRow(ctx, `SELECT count(*) FROM a`).Scan(&rows); err != nil || rows != 1 {
				t.Errorf("table a has %d rows (%v), want 1: migration 3 ran once", rows, err)
			}
		})
	}
}

// TestFailedMigrationLeavesNothing: a run stops at the first migration
// that fails, and neither it nor those it ran before in that run leave a
// trace (tables or records); the next run applies them all.
func TestFailedMigrationLeavesNothing(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	if _, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`)); err != nil {
		t.Fatal(err)
	}
	broken := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int); SELECT 1/0`)
	ran, err := migrate.Apply(ctx, c, component, broken)
	if err == nil || !strings.Contains(err.Error(), "003_m3") || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("Apply with a failing 003: %v, want an error naming 003_m3 and the cause", err)
	}
	if len(ran) != 0 {
		t.Fatalf("Apply returned %d migrations as run although it failed", len(ran))
	}
	if got := status(t, c); got != 1 {
		t.Fatalf("Status after the failed run = %d, want 1", got)
	}
	for _, tbl := range []string{"b", "c"} {
		if tableExists(t, c, tbl) {
			t.Errorf("table %s exists after the failed run", tbl)
		}
	}
	fixed := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
	ran, err = migrate.Apply(ctx, c, component, fixed)
	if err != nil || len(ran) != 2 {
		t.Fatalf("Apply after the fix: ran %d, %v; want 2, nil", len(ran), err)
	}
}

// TestNewerDatabaseIsRefused: a database a newer program migrated is
// reported and left as it is (docs/operations/migrate.md).
func TestNewerDatabaseIsRefused(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
	if _, err := migrate.Apply(ctx, c, component, ms); err != nil {
		t.Fatal(err)
	}
	ran, err := migrate.Apply(ctx, c, component, ms[:2])
	if err == nil || !strings.Contains(err.Error(), "at version 3") || len(ran) != 0 {
		t.Fatalf("Apply of 2 migrations to a database at 3: ran %d, %v; want an error naming version 3", len(ran), err)
	}
	if got := status(t, c); got != 3 {
		t.Fatalf("Status = %d, want 3", got)
	}
}

// TestOddSchemaName: the schema's name is never written into SQL, so any
// name PostgreSQL allows works, and two such schemas are independent.
// Each name ends in a random suffix, so that runs side by side on one
// database do not meet.
func TestOddSchemaName(t *testing.T) {
	ctx := context.Background()
	admin := connect(t, pgtest.BaseURL())
	suffix := rand.Text()[:8]
	for _, name := range []string{`Odd "Name"; DROP TABLE x; -- ` + suffix, `ünï cödé.ß ` + suffix} {
		if _, err := admin.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
		})
		c := connect(t, withParam(t, pgtest.BaseURL(), "search_path", pgx.Identifier{name}.Sanitize()))
		ms := migrations(`CREATE TABLE a (x int)`)
		ran, err := migrate.Apply(ctx, c, component, ms)
		if err != nil || len(ran) != 1 {
			t.Fatalf("%q: Apply ran %d, %v", name, len(ran), err)
		}
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename IN ('a', 'eventstream_migrations')`, name).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%q: %d of the tables a, eventstream_migrations are in the schema (%v), want 2", name, n, err)
		}
	}
}

// TestNoSchemaSelected: a search_path naming no existing schema is an
// error that says so, not a failed scan.
func TestNoSchemaSelected(t *testing.T) {
	ctx := context.Background()
	c := connect(t, withParam(t, pgtest.BaseURL(), "search_path", "es_test_does_not_exist"))
	_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`))
	if err == nil || !strings.Contains(err.Error(), "search_path") {
		t.Fatalf("Apply with no existing schema on the search_path: %v, want an error about the search_path", err)
	}
}

// TestApplyInsideATransaction: Apply on a transaction (a savepoint, as the
// projections use it) commits nothing itself.
func TestApplyInsideATransaction(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, tx, component, migrations(`CREATE TABLE a (x int)`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	c := connect(t, u)
	if tableExists(t, c, "a") {
		t.Fatal("the migration survived the rollback of the caller's transaction")
	}
	_, err = migrate.Status(ctx, c, component)
	if err == nil {
		t.Fatal("Status found a migrations table the rolled-back transaction created")
	}
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || pgErr.SQLState() != "42P01" {
		t.Fatalf("Status: %v, want undefined_table", err)
	}
}

// TestEditedMigrationIsRefused: a migration changed after it ran (the
// projections' audit 001 once was) would leave databases migrated before
// and after the change different under one version; Apply refuses to go on
// instead of skipping it, and runs nothing.
func TestEditedMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	if _, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `CREATE INDEX a_x ON a (x)`)); err != nil {
		t.Fatal(err)
	}
	edited := migrations(`CREATE TABLE a (x int)`, `CREATE INDEX a_x ON a USING hash (x)`, `CREATE TABLE b (x int)`)
	ran, err := migrate.Apply(ctx, c, component, edited)
	if err == nil || !strings.Contains(err.Error(), "002_m2") || !strings.Contains(err.Error(), "changed after it was applied") {
		t.Fatalf("Apply with 002 edited: ran %d, %v; want an error saying 002_m2 changed after it was applied", len(ran), err)
	}
	if tableExists(t, c, "b") {
		t.Fatal("003 ran although 002 had changed")
	}
	// Line endings are not a change: a checkout with CRLF builds the same.
	u2, _ := pgtest.Schema(t)
	c2 := connect(t, u2)
	if _, err := migrate.Apply(ctx, c2, component, migrations("CREATE TABLE a (x int);\nCREATE INDEX a_x ON a (x)\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, c2, component, migrations("CREATE TABLE a (x int);\r\nCREATE INDEX a_x ON a (x)\r\n")); err != nil {
		t.Fatalf("Apply of the same migration with CRLF line endings: %v", err)
	}
}

// TestRenamedMigrationIsRefused: two branches that each added a migration
// 002 of their own: the database ran one, the program has the other; and
// a migration whose file was renamed after it ran. Each is refused with
// an error that says which it is.
func TestRenamedMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	if _, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)); err != nil {
		t.Fatal(err)
	}
	other := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE c (x int)`)
	other[1].Name = "other_branch"
	_, err := migrate.Apply(ctx, c, component, other)
	if err == nil || !strings.Contains(err.Error(), `"m2"`) || !strings.Contains(err.Error(), `"other_branch"`) || !strings.Contains(err.Error(), "one number") {
		t.Fatalf("Apply with another 002: %v, want an error naming both, saying they share a number", err)
	}
	// The same SQL under a new name is the file renamed, and the error
	// says so rather than blaming another branch.
	renamed := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)
	renamed[1].Name = "create_b"
	_, err = migrate.Apply(ctx, c, component, renamed)
	if err == nil || !strings.Contains(err.Error(), `"m2"`) || !strings.Contains(err.Error(), `"create_b"`) || !strings.Contains(err.Error(), "renamed") {
		t.Fatalf("Apply with 002 renamed: %v, want an error naming both, saying it was renamed", err)
	}
}

// TestRowsOfAnOlderReleaseGetAChecksum: a migrations table written by a
// release that recorded no checksum is upgraded in place; the migrations it
// records are checked from then on.
func TestRowsOfAnOlderReleaseGetAChecksum(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	for _, q := range []string{
		`CREATE TABLE eventstream_migrations (component text NOT NULL, version integer NOT NULL, name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))`,
		`CREATE TABLE a (x int)`,
		`INSERT INTO eventstream_migrations (component, version, name) VALUES ('test', 1, 'm1')`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)
	ran, err := migrate.Apply(ctx, c, component, ms)
	if err != nil || len(ran) != 1 {
		t.Fatalf("Apply on an older release's table: ran %d, %v; want 1, nil", len(ran), err)
	}
	// A process of the older release still running records a migration
	// without a checksum.
	if _, err := c.Exec(ctx, `INSERT INTO eventstream_migrations (component, version, name) VALUES ('test', 3, 'm3'); CREATE TABLE c (x int)`); err != nil {
		t.Fatal(err)
	}
	ms = migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
	if _, err := migrate.Apply(ctx, c, component, ms); err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		edited := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
		edited[i].SQL += "; SELECT 1"
		if _, err := migrate.Apply(ctx, c, component, edited); err == nil {
			t.Errorf("Apply with %03d edited succeeded: its checksum was not recorded", i+1)
		}
	}
}

// TestMissingRecordIsRefused: a migrations table with a hole (a row
// deleted by hand) is not taken as "everything below the highest ran".
func TestMissingRecordIsRefused(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
	if _, err := migrate.Apply(ctx, c, component, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `DELETE FROM eventstream_migrations WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.Apply(ctx, c, component, ms)
	if err == nil || !strings.Contains(err.Error(), "002") {
		t.Fatalf("Apply with the record of 002 missing: %v, want an error naming 002", err)
	}
}

// TestUpToDateNeedsNoWrite: a process that finds every migration applied
// writes nothing, so it may run as a role that can only read the
// migrations table (the schema migrated beforehand by its owner, as
// docs/operations/migrate.md suggests), or in a read-only session; one that
// has migrations to apply there fails naming the cause.
func TestUpToDateNeedsNoWrite(t *testing.T) {
	ctx := context.Background()
	u, schema := pgtest.Schema(t)
	owner := connect(t, u)
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)
	if _, err := migrate.Apply(ctx, owner, component, ms); err != nil {
		t.Fatal(err)
	}
	role := "es_test_app_" + strings.ToLower(rand.Text()[:8])
	for _, q := range []string{
		`CREATE ROLE ` + role,
		`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + role,
		`GRANT SELECT ON eventstream_migrations TO ` + role,
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c := connect(t, pgtest.BaseURL())
		_, _ = c.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = c.Exec(context.Background(), `DROP ROLE `+role)
	})
	for _, tc := range []struct{ name, param, value string }{
		{"a role without CREATE on the schema", "role", role},
		{"a read-only session", "default_transaction_read_only", "on"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := connect(t, withParam(t, u, tc.param, tc.value))
			ran, err := migrate.Apply(ctx, c, component, ms)
			if err != nil || len(ran) != 0 {
				t.Fatalf("Apply of the migrations already applied: ran %d, %v; want 0, nil", len(ran), err)
			}
			if got := status(t, c); got != 2 {
				t.Fatalf("Status = %d, want 2", got)
			}
			more := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
			_, err = migrate.Apply(ctx, c, component, more)
			if err == nil || !strings.Contains(err.Error(), "003_m3") {
				t.Fatalf("Apply of a pending migration: %v, want an error naming 003_m3", err)
			}
		})
	}
}

// TestConcurrentAppliersWaitPastTimeouts: an applier waits for another's
// lock however low the database's lock_timeout or statement_timeout (the
// wait is bounded by its context), while the migrations themselves still
// run under those settings.
func TestConcurrentAppliersWaitPastTimeouts(t *testing.T) {
	for _, setting := range []string{"lock_timeout", "statement_timeout"} {
		t.Run(setting, func(t *testing.T) {
			ctx := context.Background()
			u, _ := pgtest.Schema(t)
			u = withParam(t, u, setting, "1s")
			// The first applier holds the lock past the timeout, within it
			// per statement; the last migration checks the setting is the
			// session's again.
			ms := migrations(`SELECT pg_sleep(0.4)`, `SELECT pg_sleep(0.4)`, `SELECT pg_sleep(0.4)`,
				`DO $$ BEGIN IF current_setting('`+setting+`') <> '1s' THEN
					RAISE EXCEPTION 'the migration runs with `+setting+` %', current_setting('`+setting+`'); END IF; END $$`)
			const n = 3
			conns := make([]*pgx.Conn, n)
			for i := range conns {
				conns[i] = connect(t, u)
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = migrate.Apply(ctx, conns[i], component, ms)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("applier %d: %v", i, err)
				}
			}
			_, err := migrate.Apply(ctx, conns[0], component, append(ms, migrate.Migration{Version: 5, Name: "slow", SQL: `SELECT pg_sleep(1.5)`}))
			switch setting {
			case "statement_timeout":
				if err == nil || !strings.Contains(err.Error(), "005_slow") {
					t.Errorf("a migration longer than statement_timeout: %v, want it to fail naming 005_slow", err)
				}
			case "lock_timeout":
				if err != nil {
					t.Errorf("a migration that takes no lock: %v", err)
				}
			}
		})
	}
}

// TestMigrationEndingTheTransactionIsRefused: a migration whose SQL ends
// the transaction it runs in (COMMIT or ROLLBACK, as hand-written scripts
// often do) would let its record and the migrations after it run outside
// any transaction and unlocked; Apply stops there with an error that
// names it, instead of succeeding.
func TestMigrationEndingTheTransactionIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, end := range []string{"COMMIT", "ROLLBACK"} {
		t.Run(end, func(t *testing.T) {
			u, _ := pgtest.Schema(t)
			c := connect(t, u)
			ms := migrations(`CREATE TABLE a (x int)`, `BEGIN; CREATE TABLE b (x int); `+end+`;`, `CREATE TABLE c (x int)`)
			ran, err := migrate.Apply(ctx, c, component, ms)
			if err == nil || !strings.Contains(err.Error(), "002_m2") || !strings.Contains(err.Error(), "COMMIT or ROLLBACK") {
				t.Fatalf("Apply of a migration ending in %s: ran %d, %v; want an error naming 002_m2 and why", end, len(ran), err)
			}
			if tableExists(t, c, "c") {
				t.Fatal("003 ran after 002 ended the transaction")
			}
		})
	}
}

// TestSchemaWithoutUsage: a search_path naming a schema that exists but
// that the role may not use reads as naming none; the error says so
// instead of asking to create a schema that exists.
func TestSchemaWithoutUsage(t *testing.T) {
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	admin := connect(t, pgtest.BaseURL())
	role := "es_test_nousage_" + strings.ToLower(rand.Text()[:8])
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP ROLE `+role) })
	c := connect(t, withParam(t, u, "role", role))
	_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`))
	if err == nil || !strings.Contains(err.Error(), "USAGE") || !strings.Contains(err.Error(), role) {
		t.Fatalf("Apply as a role without USAGE on the schema: %v, want an error naming the role and USAGE", err)
	}
}

// TestMigrationCommittingAndBeginningAgainIsRefused: a migration that
// commits and opens a transaction of its own (`COMMIT; ...; BEGIN;`, as
// scripts written for tools that run each file in a transaction do, to
// get a statement outside it) leaves a transaction open behind it, so the
// transaction status alone does not show it. What ran before it was
// committed and the lock released; the migrations after it ran unlocked,
// and a failure among them left the schema half migrated. Apply must
// refuse it as it refuses a bare COMMIT, and leave the earlier migrations
// of the run unapplied.
func TestMigrationCommittingAndBeginningAgainIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, end := range []string{"COMMIT", "ROLLBACK"} {
		t.Run(end, func(t *testing.T) {
			u, _ := pgtest.Schema(t)
			c := connect(t, u)
			ms := migrations(`CREATE TABLE a (x int)`, end+`; BEGIN; CREATE TABLE b (x int)`, `CREATE TABLE c (x int)`)
			ran, err := migrate.Apply(ctx, c, component, ms)
			if err == nil || !strings.Contains(err.Error(), "002_m2") || !strings.Contains(err.Error(), "COMMIT or ROLLBACK") {
				t.Fatalf("Apply of a migration running %s; BEGIN: ran %d, %v; want an error naming 002_m2 and why", end, len(ran), err)
			}
			if tableExists(t, c, "c") {
				t.Fatal("003 ran after 002 ended the transaction")
			}
			if end == "COMMIT" {
				return // 001 was committed by 002's COMMIT, as the docs say
			}
			if tableExists(t, c, "b") {
				t.Fatal("002 was recorded after it rolled 001 back")
			}
		})
	}
}

// TestMigrationChangingTheSearchPathIsRefused: a migration that changes
// the search_path (SET search_path, or pg_dump's set_config('search_path',
// ”, false) pasted in) makes what follows it leave the schema being
// migrated: its objects land in another schema, its record goes to that
// schema's migrations table (or fails there), and a plain SET outlives
// the transaction, so the pooled connection migrates the wrong schema the
// next time. Apply refuses it, naming it, and leaves nothing behind.
func TestMigrationChangingTheSearchPathIsRefused(t *testing.T) {
	ctx := context.Background()
	for name, set := range map[string]string{
		"SET":        "SET search_path TO %s",
		"SET_LOCAL":  "SET LOCAL search_path TO %s",
		"set_config": "SELECT set_config('search_path', '%s', false)",
	} {
		t.Run(name, func(t *testing.T) {
			u, schema := pgtest.Schema(t)
			otherURL, other := pgtest.Schema(t)
			oc := connect(t, otherURL)
			// The other schema is migrated too, so a record would land.
			if _, err := migrate.Apply(ctx, oc, component, migrations(`CREATE TABLE a (x int)`)); err != nil {
				t.Fatal(err)
			}
			cfg, err := pgxpool.ParseConfig(u)
			if err != nil {
				t.Fatal(err)
			}
			cfg.MaxConns = 1
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			ms := migrations(`CREATE TABLE a (x int)`, fmt.Sprintf(set, other)+`; CREATE TABLE b (x int)`)
			ran, err := migrate.Apply(ctx, pool, component, ms)
			if err == nil || !strings.Contains(err.Error(), "002_m2") || !strings.Contains(err.Error(), "search_path") {
				t.Errorf("Apply of a migration that changes the search_path: ran %d, %v; want an error naming 002_m2 and the search_path", len(ran), err)
			}
			if tableExists(t, oc, other+".b") {
				t.Errorf("002 created its table in the schema %s", other)
			}
			if got := status(t, oc); got != 1 {
				t.Errorf("the migrations table of the schema %s records version %d, want 1", other, got)
			}
			var cur string
			if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&cur); err != nil || cur != schema {
				t.Errorf("after Apply, the pool's connection works in the schema %q (%v), want %q", cur, err, schema)
			}
		})
	}
}

// TestMigrationCreatingASchemaAheadInThePathIsRefused: a migration can
// leave the schema being migrated without changing the search_path, by
// creating the schema the path names ahead of it that did not exist
// (search_path=new,schema, or "$user",schema with the role's schema
// missing): what follows it then lands in that schema, and so does every
// later run. Apply refuses it, naming it, and leaves nothing behind: no
// schema, no table, no record.
func TestMigrationCreatingASchemaAheadInThePathIsRefused(t *testing.T) {
	ctx := context.Background()
	u, schema := pgtest.Schema(t)
	ahead := schema + "_ahead"
	admin := connect(t, u)
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{ahead}.Sanitize()+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	c := connect(t, withParam(t, u, "search_path", ahead+","+schema))
	ms := migrations(`CREATE TABLE a (x int)`, `CREATE SCHEMA `+pgx.Identifier{ahead}.Sanitize()+`; CREATE TABLE b (x int)`)
	ran, err := migrate.Apply(ctx, c, component, ms)
	if err == nil || !strings.Contains(err.Error(), "002_m2") || !strings.Contains(err.Error(), ahead) {
		t.Errorf("Apply of a migration that creates a schema ahead in the path: ran %d, %v; want an error naming 002_m2 and %s", len(ran), err, ahead)
	}
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, ahead).Scan(&exists); err != nil || exists {
		t.Errorf("the schema %s exists after the refusal (%v)", ahead, err)
	}
	if tableExists(t, admin, schema+".a") || tableExists(t, admin, schema+".eventstream_migrations") {
		t.Errorf("the refused run left 001's table or record in %s", schema)
	}
}

// TestMigrationCreatingASchemaNotAheadIsApplied: the refusal of a
// migration that moves current_schema() refuses no other: one that, in a
// schema whose name needs quoting, creates another schema the path does
// not name ahead of it (and a table in it), and a temporary table (which
// puts pg_temp first in the path for lookups, not for creation), is
// applied and recorded in that schema.
func TestMigrationCreatingASchemaNotAheadIsApplied(t *testing.T) {
	ctx := context.Background()
	u, base := pgtest.Schema(t)
	admin := connect(t, u)
	odd, other := base+`_Odd "x" Y`, base+"_other"
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{odd}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{odd, other} {
			if _, err := admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
				t.Error(err)
			}
		}
	})
	c := connect(t, withParam(t, u, "search_path", pgx.Identifier{odd}.Sanitize()+","+pgx.Identifier{base}.Sanitize()))
	ms := migrations(`CREATE TABLE a (x int)`,
		`CREATE SCHEMA `+pgx.Identifier{other}.Sanitize()+`; CREATE TABLE `+pgx.Identifier{other, "t"}.Sanitize()+` (x int); CREATE TEMP TABLE tmp (x int); CREATE TABLE b (x int)`)
	ran, err := migrate.Apply(ctx, c, component, ms)
	if err != nil || len(ran) != 2 {
		t.Fatalf("Apply: ran %d, %v; want both", len(ran), err)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{odd, "eventstream_migrations"}.Sanitize()+` WHERE component = $1`, component).Scan(&n); err != nil || n != 2 {
		t.Errorf("the schema %q records %d migrations (%v), want 2", odd, n, err)
	}
	if !tableExists(t, admin, pgx.Identifier{odd, "b"}.Sanitize()) {
		t.Errorf("002's table is not in %q", odd)
	}
}
