package analysts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// shared is a fresh schema on the shared test server (TEST_DATABASE_URL)
// with a log of acme and globex events and the audit read model caught
// up. Roles are cluster-wide: role gives each test its own names and
// drops them when the test ends.
type shared struct {
	url, schema string
	pool        *pgxpool.Pool
}

func newShared(t *testing.T) *shared {
	t.Helper()
	ctx := context.Background()
	u, schema := pgtest.Schema(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, reg := logStore(t, pool)
	for _, tenant := range []string{"acme", "globex"} {
		for i := range 3 {
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
	rt, err := projections.New(pool, store, reg, projections.Config{OnPublish: analysts.OnPublish}, audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	return &shared{url: u, schema: schema, pool: pool}
}

// role returns a role name unique to this test (the schema's random
// suffix) and drops the role, with what it owns, when the test ends.
func (s *shared) role(t *testing.T, prefix string) string {
	t.Helper()
	name := prefix + "_" + strings.TrimPrefix(s.schema, "es_test_")
	t.Cleanup(func() {
		ctx := context.Background()
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil || !exists {
			return
		}
		id := pgx.Identifier{name}.Sanitize()
		if _, err := s.pool.Exec(ctx, `DROP OWNED BY `+id); err != nil {
			t.Errorf("drop owned by %s: %v", name, err)
		}
		if _, err := s.pool.Exec(ctx, `DROP ROLE `+id); err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
	return name
}

// as connects to the test's schema as role (the shared server trusts
// local connections).
func (s *shared) as(t *testing.T, role string) *pgx.Conn {
	t.Helper()
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	conn, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestGrantRefusesSuperuserEquivalentRoles: a role that may run programs
// or read and write files as the server's operating-system user, or that
// may replicate (a base backup, logical decoding), reads every tenant's
// data around row-level security, like a superuser. Grant must refuse it
// as it refuses superusers, and change nothing.
func TestGrantRefusesSuperuserEquivalentRoles(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()

	// The leak: a member of pg_execute_server_program reads another
	// tenant's payloads from the log's data file.
	prog := s.role(t, "an_prog")
	if _, err := s.pool.Exec(ctx, `CREATE ROLE `+prog+` LOGIN IN ROLE pg_execute_server_program`); err != nil {
		t.Fatal(err)
	}
	_, grantErr := analysts.Grant(ctx, s.pool, "acme", prog, analysts.Options{})
	if grantErr == nil {
		var file string
		if err := s.pool.QueryRow(ctx, `SELECT pg_relation_filepath('events')`).Scan(&file); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, `CHECKPOINT`); err != nil {
			t.Fatal(err)
		}
		conn := s.as(t, prog)
		if _, err := conn.Exec(ctx, `SELECT 1 FROM events`); sqlState(err) != "42501" {
			t.Fatalf("reading the log directly: %v, want permission denied", err)
		}
		for _, q := range []string{
			`CREATE TEMP TABLE heap (line text)`,
			`COPY heap FROM PROGRAM 'tr -c "[:alnum:]-" "\n" < ` + file + `'`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("the analyst of acme runs a program as the server: %s: %v", q, err)
			}
		}
		var leaked int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM heap WHERE line = 'globex-secret'`).Scan(&leaked); err != nil {
			t.Fatal(err)
		}
		t.Errorf("Grant accepted a member of pg_execute_server_program; as the analyst of acme it read %d globex payloads from %s", leaked, file)
	} else if !errors.Is(grantErr, analysts.ErrRefused) || !strings.Contains(grantErr.Error(), "pg_execute_server_program") {
		t.Errorf("a member of pg_execute_server_program: %v, want refused naming the role", grantErr)
	}

	for _, c := range []struct{ prefix, create, why string }{
		{"an_read", `LOGIN IN ROLE pg_read_server_files`, "pg_read_server_files"},
		{"an_write", `LOGIN IN ROLE pg_write_server_files`, "pg_write_server_files"},
		{"an_repl", `LOGIN REPLICATION`, "REPLICATION"},
	} {
		role := s.role(t, c.prefix)
		if _, err := s.pool.Exec(ctx, `CREATE ROLE `+role+` `+c.create); err != nil {
			t.Fatal(err)
		}
		_, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{})
		s.refusedUnrecorded(t, role, "a role "+c.create, c.why, err)
	}
}

// TestRevokeTakesEveryGrantAway: after revoke-analyst the role holds no
// privilege Grant gave it on the read models' schemas and tables,
// including USAGE on the home schema.
func TestRevokeTakesEveryGrantAway(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	role := s.role(t, "an_rev")
	if _, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	conn := s.as(t, role)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("before revoke the analyst reads %d rows (%v), want 3", n, err)
	}
	if err := analysts.Revoke(ctx, s.pool, role); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT 'schema ' || n.nspname FROM pg_namespace n
			WHERE (n.nspname = $1 OR n.nspname LIKE $1 || '\_\_%') AND has_schema_privilege(n.oid, 'USAGE')
		UNION ALL SELECT 'table ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE (n.nspname = $1 OR n.nspname LIKE $1 || '\_\_%') AND has_table_privilege(c.oid, 'SELECT')`, s.schema)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("after revoke-analyst the role still holds %v", left)
	}
}

// TestGrantRefusesReservedRoleNames: "public" and "none" pass the name
// pattern but PostgreSQL reserves them ("public" in a GRANT means every
// role). They are refused as names (ErrRefused, exit 2), not left to
// fail as an SQL error.
func TestGrantRefusesReservedRoleNames(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	for _, role := range []string{"public", "none"} {
		if _, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{}); !errors.Is(err, analysts.ErrRefused) {
			t.Errorf("Grant(acme, %q) = %v, want refused", role, err)
		}
		if err := analysts.Revoke(ctx, s.pool, role); !errors.Is(err, analysts.ErrRefused) {
			t.Errorf("Revoke(%q) = %v, want refused", role, err)
		}
	}
}

// refusedUnrecorded fails t unless err, Grant's answer for role (what
// describes it), is a refusal naming why, and the refused role was not
// recorded as an analyst.
func (s *shared) refusedUnrecorded(t *testing.T, role, what, why string, err error) {
	t.Helper()
	if !errors.Is(err, analysts.ErrRefused) || !strings.Contains(err.Error(), why) {
		t.Errorf("%s: %v, want refused naming %s", what, err, why)
	}
	var mapped bool
	if err := s.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM eventstream_analysts WHERE role_name = $1)`, role).Scan(&mapped); err != nil || mapped {
		t.Errorf("the refused grant to %s was recorded (%v)", role, err)
	}
}

// TestGrantRefusesARoleThatReadsAnotherTenantThroughAGroup: the policy
// lets a role read the tenants of every analyst role it is a member of.
// A role that is already a member of another tenant's analyst group
// (grant-analyst --no-login) would, granted for acme, read globex too,
// while grant-analyst says it reads acme. Grant must refuse it, naming
// the group, and record nothing.
func TestGrantRefusesARoleThatReadsAnotherTenantThroughAGroup(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	group := s.role(t, "an_group")
	if _, err := analysts.Grant(ctx, s.pool, "globex", group, analysts.Options{NoLogin: true}); err != nil {
		t.Fatal(err)
	}
	member := s.role(t, "an_member")
	if _, err := s.pool.Exec(ctx, `CREATE ROLE `+member+` LOGIN IN ROLE `+group); err != nil {
		t.Fatal(err)
	}
	_, err := analysts.Grant(ctx, s.pool, "acme", member, analysts.Options{})
	if err == nil {
		var all, foreign int
		if err := s.as(t, member).QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tenant_id <> 'acme') FROM audit_events`).Scan(&all, &foreign); err != nil {
			t.Fatal(err)
		}
		t.Fatalf("Grant accepted a member of globex's analyst group as the analyst of acme; it reads %d rows, %d of other tenants", all, foreign)
	}
	s.refusedUnrecorded(t, member, "a member of globex's analyst group", group, err)
	// A member of an analyst group of the same tenant is fine.
	same := s.role(t, "an_same")
	if _, err := s.pool.Exec(ctx, `CREATE ROLE `+same+` LOGIN IN ROLE `+group); err != nil {
		t.Fatal(err)
	}
	if _, err := analysts.Grant(ctx, s.pool, "globex", same, analysts.Options{}); err != nil {
		t.Fatalf("Grant to a member of an analyst group of the same tenant: %v", err)
	}
}
