package analysts_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// TestGrantRefusesRolesThatCanCreateWhereTheOwnerLooksUp: a role that may
// create objects in the home schema (through PUBLIC, as schema public
// allows before PostgreSQL 15, or a grant) plants a function or
// aggregate that the owner's unqualified SQL resolves to, and it runs
// with the owner's rights. Here an aggregate array_agg(text) (an exact
// match beats pg_catalog's polymorphic one) copies the log into the
// analyst's table the next time grant-analyst runs. So does a role that
// may create schemas (a schema named after the owner comes first in the
// default search_path, "$user"). Grant must refuse both.
func TestGrantRefusesRolesThatCanCreateWhereTheOwnerLooksUp(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `GRANT CREATE ON SCHEMA `+s.schema+` TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	role := s.role(t, "an_plant")
	_, grantErr := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{})
	if grantErr == nil {
		conn := s.as(t, role)
		for _, q := range []string{
			`CREATE TABLE stash (tenant_id text, payload text)`,
			`GRANT INSERT ON stash TO PUBLIC`,
			`CREATE FUNCTION steal(acc text[], v text) RETURNS text[] LANGUAGE sql AS $$
				INSERT INTO ` + s.schema + `.stash SELECT tenant_id, payload::text FROM ` + s.schema + `.events;
				SELECT pg_catalog.array_append(acc, v) $$`,
			`CREATE AGGREGATE array_agg(text) (SFUNC = steal, STYPE = text[])`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		// The next grant-analyst, in a new process (no cached statements).
		pool, err := pgxpool.New(ctx, s.url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if _, err := analysts.Grant(ctx, pool, "acme", role, analysts.Options{}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM stash WHERE tenant_id = 'globex'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("Grant accepted a role that can create objects in the home schema; as the analyst of acme it read %d globex events through an aggregate the owner ran", n)
	} else if !errors.Is(grantErr, analysts.ErrRefused) || !strings.Contains(grantErr.Error(), "CREATE") {
		t.Errorf("with CREATE on the home schema for PUBLIC: %v, want refused naming CREATE", grantErr)
	}
	if _, err := s.pool.Exec(ctx, `REVOKE CREATE ON SCHEMA `+s.schema+` FROM PUBLIC`); err != nil {
		t.Fatal(err)
	}

	creator := s.role(t, "an_schemas")
	if _, err := s.pool.Exec(ctx, `CREATE ROLE `+creator+` LOGIN; GRANT CREATE ON DATABASE `+`"`+currentDatabase(t, s.pool)+`"`+` TO `+creator); err != nil {
		t.Fatal(err)
	}
	if _, err := analysts.Grant(ctx, s.pool, "acme", creator, analysts.Options{}); !errors.Is(err, analysts.ErrRefused) || !strings.Contains(err.Error(), "CREATE") {
		t.Errorf("a role with CREATE on the database: %v, want refused naming CREATE", err)
	}
}

func currentDatabase(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var db string
	if err := pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestGrantRefusesRolesThatCanCreateElsewhereOnTheSearchPath: the owner's
// unqualified names are looked up in every schema of its search_path, not
// only the first (the home schema): a deployment whose URL says
// search_path=events,public (or a schema of extensions) reaches the
// second schema too. A role that may create objects there plants the
// same aggregate as above and reads every tenant's log the next time
// grant-analyst runs. Grant must refuse it.
func TestGrantRefusesRolesThatCanCreateElsewhereOnTheSearchPath(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	_, extra := pgtest.Schema(t)
	if _, err := s.pool.Exec(ctx, `GRANT USAGE, CREATE ON SCHEMA `+extra+` TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", s.schema+","+extra)
	u.RawQuery = q.Encode()
	newPool := func() *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	role := s.role(t, "an_path")
	_, grantErr := analysts.Grant(ctx, newPool(), "acme", role, analysts.Options{})
	if grantErr == nil {
		conn := s.as(t, role)
		for _, q := range []string{
			`CREATE TABLE ` + extra + `.stash (tenant_id text, payload text)`,
			`GRANT INSERT ON ` + extra + `.stash TO PUBLIC`,
			`CREATE FUNCTION ` + extra + `.steal(acc text[], v text) RETURNS text[] LANGUAGE sql AS $$
				INSERT INTO ` + extra + `.stash SELECT tenant_id, payload::text FROM ` + s.schema + `.events;
				SELECT pg_catalog.array_append(acc, v) $$`,
			`CREATE AGGREGATE ` + extra + `.array_agg(text) (SFUNC = ` + extra + `.steal, STYPE = text[])`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		// The next grant-analyst, in a new process (no cached statements).
		if _, err := analysts.Grant(ctx, newPool(), "acme", role, analysts.Options{}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+extra+`.stash WHERE tenant_id = 'globex'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("Grant accepted a role that can create objects in %s, on the owner's search_path; as the analyst of acme it read %d globex events through an aggregate the owner ran", extra, n)
	} else if !errors.Is(grantErr, analysts.ErrRefused) || !strings.Contains(grantErr.Error(), "CREATE") || !strings.Contains(grantErr.Error(), extra) {
		t.Errorf("with CREATE on %s (on the search_path) for PUBLIC: %v, want refused naming CREATE and the schema", extra, grantErr)
	}
}
