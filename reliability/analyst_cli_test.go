package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/internal/cli"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

// TestGrantAnalystThroughTheCLI drives "eventstream tenants grant-analyst"
// end to end on a throwaway cluster with password authentication: events
// of two tenants appended and projected with the CLI, the role created
// with a password read from stdin, then used to connect. It reads its
// tenant's audit rows only, not the log; after "eventstream replay audit"
// (a new generation, published by the CLI's runtime) it still does; the
// password never appears in any output; refusals exit 2; revoke ends the
// access.
func TestGrantAnalystThroughTheCLI(t *testing.T) {
	t.Parallel()
	const owner, analystPW = "Owner-Pa55-cli", "Analyst-Pa55-cli"
	c := pgcluster.Start(t, pgcluster.Options{Password: owner})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := c.URL("")
	run := func(stdin string, args ...string) cliRun {
		t.Helper()
		var out, errOut bytes.Buffer
		code := cli.Main(ctx, append([]string{"--database-url", db, "--work-dir", t.TempDir()}, args...),
			cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errOut})
		r := cliRun{code: code, stdout: out.String(), stderr: errOut.String()}
		if strings.Contains(r.stdout+r.stderr, analystPW) || strings.Contains(r.stdout+r.stderr, owner) {
			t.Errorf("%v: a password in the output", args)
		}
		return r
	}
	must := func(args ...string) cliRun {
		t.Helper()
		r := run("", args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		return r
	}
	counts := map[string]int{"acme": 4, "globex": 2}
	for tenant, n := range counts {
		for range n {
			must("append", "--stream", tenant+"-course", "--type", "course.generation.requested", "--tenant", tenant,
				"--data", fmt.Sprintf(`{"course_id":%q,"topic":"%s secret","attempt":1,"language":"en"}`, uuid.NewString(), tenant))
		}
	}
	must("backfill", "audit")
	if r := run(analystPW+"\n", "tenants", "grant-analyst", "acme", "analyst_cli", "--password-stdin"); r.code != 0 {
		t.Fatalf("grant-analyst: exit %d: %s", r.code, r.stderr)
	}

	conn, err := pgx.Connect(ctx, c.URLAs("analyst_cli", analystPW, ""))
	if err != nil {
		t.Fatalf("connect as the analyst with its password: %v", err)
	}
	defer conn.Close(context.Background())
	read := func() (all, foreign int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tenant_id <> 'acme') FROM audit_events`).Scan(&all, &foreign); err != nil {
			t.Fatalf("the analyst reads audit_events: %v", err)
		}
		return all, foreign
	}
	if all, foreign := read(); all != counts["acme"] || foreign != 0 {
		t.Fatalf("the analyst sees %d audit rows, %d of other tenants; want %d and 0", all, foreign, counts["acme"])
	}
	if _, err := conn.Exec(ctx, `SELECT 1 FROM events`); sqlState(err) != "42501" {
		t.Errorf("the analyst reading the log: %v, want permission denied", err)
	}

	must("replay", "audit")
	if all, foreign := read(); all != counts["acme"] || foreign != 0 {
		t.Fatalf("after replay the analyst sees %d audit rows, %d of other tenants", all, foreign)
	}

	var list []map[string]string
	if r := must("--json", "tenants", "analysts"); json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 || list[0]["tenant"] != "acme" {
		t.Errorf("tenants analysts: %s", r.stdout)
	}
	for _, args := range [][]string{
		{"tenants", "grant-analyst", "acme", pgcluster.Superuser},
		{"tenants", "grant-analyst", "*", "someone"},
		{"tenants", "grant-analyst", "acme", "Bad Name"},
		{"tenants", "grant-analyst", "acme"},
		{"tenants", "revoke-analyst", "nobody"},
	} {
		if r := run("", args...); r.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, r.code, cli.ExitUsage, r.stderr)
		}
	}
	// The refusals wrote nothing: no mapping, no role.
	if r := must("--json", "tenants", "analysts"); json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 || list[0]["tenant"] != "acme" {
		t.Errorf("tenants analysts after the refusals: %s", r.stdout)
	}
	owned, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var roles int
	err = owned.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname IN ('someone', 'Bad Name')`).Scan(&roles)
	owned.Close(context.Background())
	if err != nil || roles != 0 {
		t.Errorf("the refused grants created %d roles (%v)", roles, err)
	}
	must("tenants", "revoke-analyst", "analyst_cli")
	if _, err := conn.Exec(ctx, `SELECT 1 FROM audit_events`); sqlState(err) != "42501" {
		t.Errorf("after revoke-analyst: %v, want permission denied", err)
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
