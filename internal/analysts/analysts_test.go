package analysts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgcluster"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/schemas"
)

const ownerPassword = "Owner-pa55word"

// world is a throwaway cluster (roles are cluster-wide) with password
// authentication, a log holding events of acme and globex, and the audit
// and analytics read models caught up, published through OnPublish.
type world struct {
	cluster *pgcluster.Cluster
	pool    *pgxpool.Pool
	rt      *projections.Runtime
	counts  map[string]int
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	c := pgcluster.Start(t, pgcluster.Options{Password: ownerPassword})
	pool, err := pgxpool.New(ctx, c.URL(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, reg := logStore(t, pool)
	ms, err := server.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := (server.TokenTable{Pool: pool}).Add(ctx, "acme", "tok"); err != nil {
		t.Fatal(err)
	}
	w := &world{cluster: c, pool: pool, counts: map[string]int{"acme": 5, "globex": 3}}
	for tenant, n := range w.counts {
		for i := range n {
			e := eventstore.Event{
				Type: "reliability.probe.recorded", Source: "analysts",
				Payload: json.RawMessage(fmt.Sprintf(`{"writer":1,"seq":%d,"i":0,"note":"%s-secret"}`, i, tenant)),
				Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: tenant},
			}
			if _, err := store.Append(ctx, tenant+"-stream", eventstore.Any, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.rt, err = projections.New(pool, store, reg, projections.Config{OnPublish: analysts.OnPublish}, audit.Projection(), analytics.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{audit.Name, analytics.Name} {
		if _, err := w.rt.CatchUp(ctx, name, 0); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// as connects as role with password.
func (w *world) as(t *testing.T, role, password string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, w.cluster.URLAs(role, password, ""))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mustDeny runs q and wants an insufficient-privilege error.
func mustDeny(t *testing.T, conn *pgx.Conn, q string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), q)
	if sqlState(err) != "42501" {
		t.Errorf("%s: %v, want permission denied (42501)", q, err)
	}
}

// rowsOf counts the rows of a view seen by conn, and those of another
// tenant.
func rowsOf(t *testing.T, conn *pgx.Conn, view, tenant string) (all, foreign int) {
	t.Helper()
	err := conn.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM `+pgx.Identifier{view}.Sanitize(), tenant).Scan(&all, &foreign)
	if err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	return all, foreign
}

// TestAnalystReadsOneTenantOnly is the grant-analyst proof: connected as
// the role (with the password it was given), an analyst reads its tenant's
// rows of every read model and nothing of another tenant's, cannot reach
// the log, the runtime's tables, the tokens or the mapping of others,
// cannot switch row security off or become the owner, and keeps exactly
// that access across a rebuild; moving the role to another tenant and
// revoking it take effect.
func TestAnalystReadsOneTenantOnly(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	res, err := analysts.Grant(ctx, w.pool, "acme", "analyst_acme", analysts.Options{Password: "acme-Pa55word"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Tables) < 2 {
		t.Fatalf("Grant = %+v, want a new role on the audit and analytics views", res)
	}
	if _, err := analysts.Grant(ctx, w.pool, "globex", "analyst_globex", analysts.Options{Password: "globex-Pa55word"}); err != nil {
		t.Fatal(err)
	}

	conn := w.as(t, "analyst_acme", "acme-Pa55word")
	check := func(tenant string) {
		t.Helper()
		for _, v := range res.Tables {
			all, foreign := rowsOf(t, conn, v, tenant)
			if foreign != 0 {
				t.Errorf("%s: the analyst of %s sees %d rows of other tenants", v, tenant, foreign)
			}
			if v == "audit_events" && all != w.counts[tenant] {
				t.Errorf("audit_events: the analyst of %s sees %d rows, want %d", tenant, all, w.counts[tenant])
			}
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE payload->>'note' NOT LIKE $1`, tenant+"%").Scan(&n); err != nil || n != 0 {
			t.Errorf("the analyst of %s reads %d payloads of other tenants (%v)", tenant, n, err)
		}
	}
	check("acme")

	// The generation's table itself, not only the view, is protected.
	var gen string
	if err := w.pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'audit' AND state = 'active'`).Scan(&gen); err != nil {
		t.Fatal(err)
	}
	var all, foreign int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tenant_id <> 'acme') FROM `+pgx.Identifier{gen, "audit_events"}.Sanitize()).Scan(&all, &foreign); err != nil || foreign != 0 || all != 5 {
		t.Errorf("%s.audit_events directly: %d rows, %d foreign, %v", gen, all, foreign, err)
	}

	for _, q := range []string{
		`SELECT 1 FROM events LIMIT 1`,
		`SELECT 1 FROM projection_checkpoints LIMIT 1`,
		`SELECT 1 FROM projection_dead_letters LIMIT 1`,
		`SELECT 1 FROM projection_state LIMIT 1`,
		`SELECT 1 FROM eventstream_migrations LIMIT 1`,
		`SELECT 1 FROM eventstream_api_tokens LIMIT 1`,
		`INSERT INTO audit_events SELECT * FROM audit_events LIMIT 1`,
		`DELETE FROM audit_events`,
		`UPDATE eventstream_analysts SET tenant_id = 'globex'`,
		`INSERT INTO eventstream_analysts (role_name, tenant_id) VALUES ('analyst_acme', 'globex')`,
		`ALTER TABLE ` + pgx.Identifier{gen, "audit_events"}.Sanitize() + ` DISABLE ROW LEVEL SECURITY`,
		`CREATE TABLE public.stash (x int)`,
	} {
		mustDeny(t, conn, q)
	}
	if _, err := conn.Exec(ctx, `SET ROLE postgres`); err == nil {
		t.Error("the analyst became the owner with SET ROLE")
	}
	var mine []string
	rows, err := conn.Query(ctx, `SELECT role_name || '=' || tenant_id FROM eventstream_analysts`)
	if err == nil {
		mine, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(mine) != 1 || mine[0] != "analyst_acme=acme" {
		t.Errorf("the analyst sees the mappings %v (%v), want its own only", mine, err)
	}
	// Switching row security off is refused, not a way around it.
	if _, err := conn.Exec(ctx, `SET row_security = off`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT count(*) FROM audit_events`); sqlState(err) != "42501" {
		t.Errorf("with row_security off: %v, want refused", err)
	}
	if _, err := conn.Exec(ctx, `RESET row_security`); err != nil {
		t.Fatal(err)
	}

	// A rebuild publishes a new generation: same rows, same protection.
	if _, err := w.rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var gen2 string
	if err := w.pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'audit' AND state = 'active'`).Scan(&gen2); err != nil {
		t.Fatal(err)
	}
	if gen2 == gen {
		t.Fatalf("the rebuild did not make a new generation (%s)", gen)
	}
	check("acme")

	// Moving the role to another tenant.
	if res, err := analysts.Grant(ctx, w.pool, "globex", "analyst_acme", analysts.Options{}); err != nil || res.Created {
		t.Fatalf("move: %+v, %v", res, err)
	}
	check("globex")

	// The other analyst keeps its own tenant; revoking it ends its access.
	g := w.as(t, "analyst_globex", "globex-Pa55word")
	if all, foreign := rowsOf(t, g, "audit_events", "globex"); all != 3 || foreign != 0 {
		t.Errorf("analyst_globex: %d rows, %d foreign", all, foreign)
	}
	if err := analysts.Revoke(ctx, w.pool, "analyst_globex"); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, g, `SELECT 1 FROM audit_events`)
	if list, err := analysts.List(ctx, w.pool); err != nil || len(list) != 1 || list[0].Tenant != "globex" || list[0].Role != "analyst_acme" {
		t.Errorf("List = %+v, %v", list, err)
	}
}

// TestGrantRefusesRolesRowSecurityCannotBind checks the refusals: roles
// that row-level security cannot restrict, names and tenants that are
// not allowed, a role that PUBLIC lets read the log, and a role with a
// grant on the log (which Grant takes away).
func TestGrantRefusesRolesRowSecurityCannotBind(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE ROLE bypasser LOGIN BYPASSRLS`,
		`CREATE ROLE chief LOGIN SUPERUSER`,
		`CREATE ROLE owner_friend LOGIN IN ROLE postgres`,
		`CREATE ROLE reader LOGIN`,
		`GRANT SELECT ON events TO reader`,
	} {
		if _, err := w.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, c := range []struct{ tenant, role string }{
		{"acme", "postgres"},
		{"acme", "bypasser"},
		{"acme", "chief"},
		{"acme", "owner_friend"},
		{"*", "fine_role"},
		{"", "fine_role"},
		{"acme\x00", "fine_role"},
		{"acme", "Capital"},
		{"acme", "pg_reader"},
		{"acme", `x"; DROP TABLE events; --`},
	} {
		_, err := analysts.Grant(ctx, w.pool, c.tenant, c.role, analysts.Options{})
		if !errors.Is(err, analysts.ErrRefused) {
			t.Errorf("Grant(%q, %q) = %v, want refused", c.tenant, c.role, err)
		}
	}
	if _, err := analysts.Grant(ctx, w.pool, "acme", "weak", analysts.Options{Password: "short"}); !errors.Is(err, analysts.ErrRefused) {
		t.Errorf("a 5-character password: %v, want refused", err)
	}
	var fine bool
	if err := w.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fine_role')`).Scan(&fine); err != nil || fine {
		t.Errorf("a refused grant left the role behind (%v)", err)
	}
	var exists bool
	if err := w.pool.QueryRow(ctx, `SELECT to_regclass('events') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatalf("the events table after the refusals: %v %v", exists, err)
	}

	// A direct grant on the log is taken away.
	if _, err := analysts.Grant(ctx, w.pool, "acme", "reader", analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	var can bool
	if err := w.pool.QueryRow(ctx, `SELECT has_table_privilege('reader', 'events', 'SELECT')`).Scan(&can); err != nil || can {
		t.Errorf("reader can still read the log after grant-analyst (%v)", err)
	}
	// PUBLIC's grant cannot be taken from one role: refused, rolled back.
	if _, err := w.pool.Exec(ctx, `GRANT SELECT ON events TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	_, err := analysts.Grant(ctx, w.pool, "acme", "newcomer", analysts.Options{})
	if !errors.Is(err, analysts.ErrRefused) || !strings.Contains(err.Error(), "events") {
		t.Errorf("with SELECT on events for PUBLIC: %v, want refused naming events", err)
	}
	if err := w.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newcomer')`).Scan(&exists); err != nil || exists {
		t.Errorf("the refused grant was not rolled back (%v)", err)
	}
}

// logStore is the event log in pool's schema, with the reliability tests'
// schemas (the domain's and their test types).
func logStore(t *testing.T, pool *pgxpool.Pool) (*postgres.Store, *schemas.Registry) {
	t.Helper()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("../../reliability/testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(context.Background(), pool, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, reg
}

// TestMigrateDoesNotWaitForAnAnalystsQuery: every process start migrates
// and publishes the read models again. With the tables already protected
// and their views current, that takes no lock an analyst's open query
// holds against it (ALTER TABLE, CREATE POLICY and CREATE OR REPLACE VIEW
// wait for every query on the table to end, and make new ones queue), and
// the protection stays as it was.
func TestMigrateDoesNotWaitForAnAnalystsQuery(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if _, err := analysts.Grant(ctx, w.pool, "acme", "analyst_acme", analysts.Options{Password: "acme-Pa55word"}); err != nil {
		t.Fatal(err)
	}
	conn := w.as(t, "analyst_acme", "acme-Pa55word")
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != w.counts["acme"] {
		t.Fatalf("the analyst's report: %d rows, %v; want %d", n, err, w.counts["acme"])
	}

	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.rt.Migrate(mctx); err != nil {
		t.Fatalf("Migrate while an analyst's query holds the read models: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	all, foreign := rowsOf(t, conn, "audit_events", "acme")
	if foreign != 0 || all != w.counts["acme"] {
		t.Fatalf("after Migrate the analyst of acme sees %d rows, %d of other tenants; want %d, 0", all, foreign, w.counts["acme"])
	}
}
