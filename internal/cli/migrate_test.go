package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestMigrateRefusesWhatItCannotApply: a database a newer eventstream
// migrated, and a migration changed after it ran, end migrate with exit 1
// and one line naming the cause (docs/operations/migrate.md), in text and
// in --json.
func TestMigrateRefusesWhatItCannotApply(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string) {
		t.Helper()
		r := c.run("migrate")
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Fatalf("migrate: want exit 1 and one line with %q, got %s", want, r)
		}
		r = c.run("migrate", "--json")
		if r.code != 1 || !strings.Contains(r.stderr, `"kind":"failure"`) || !strings.Contains(r.stderr, want) {
			t.Fatalf("migrate --json: want exit 1 and a failure report with %q, got %s", want, r)
		}
	}
	exec(`INSERT INTO eventstream_migrations (component, version, name, checksum) VALUES ('eventstore', 99, 'future', 'x')`)
	check("the database is at version 99")
	exec(`DELETE FROM eventstream_migrations WHERE component = 'eventstore' AND version = 99`)
	exec(`UPDATE eventstream_migrations SET checksum = 'edited' WHERE component = 'api' AND version = 1`)
	check("001_api_tokens was changed after it was applied")
}

// TestMigrateSaysItLeavesAnalystsToGrantAnalyst: migrate does not create
// the analysts component, whose table turns on row-level security for
// every read model published after it exists (hiding their rows from
// roles not granted through grant-analyst), and says so in its report;
// once grant-analyst installed it, migrate reports (and upgrades) it.
func TestMigrateSaysItLeavesAnalystsToGrantAnalyst(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	analystsEntry := func() map[string]any {
		t.Helper()
		var rs []map[string]any
		r := c.must(0, "migrate", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
			t.Fatalf("migrate --json: %v\n%s", err, r)
		}
		for _, x := range rs {
			if x["component"] == "analysts" {
				return x
			}
		}
		t.Fatalf("migrate --json does not report the analysts component:\n%s", r)
		return nil
	}
	if a := analystsEntry(); a["version"] != 0.0 || !strings.Contains(fmt.Sprint(a["not_installed"]), "grant-analyst") {
		t.Errorf("migrate reports analysts as %v; want version 0, not installed, naming grant-analyst", a)
	}
	r := c.must(0, "migrate")
	if !regexp.MustCompile(`(?m)^analysts\s+0\s+not installed: eventstream tenants grant-analyst`).MatchString(r.stdout) {
		t.Errorf("migrate's table does not say it left analysts to grant-analyst:\n%s", r)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('eventstream_analysts') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("migrate created eventstream_analysts (%v)", err)
	}

	// What grant-analyst does first.
	if err := analysts.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ms, err := analysts.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if a := analystsEntry(); a["version"] != float64(len(ms)) || a["not_installed"] != nil {
		t.Errorf("migrate reports the installed analysts component as %v; want version %d, installed", a, len(ms))
	}
}

// TestMigrateThatLosesTheDatabaseExitsUnavailable: a migrate that loses
// the database once it is under way (a restart, a failover) is an outage
// to retry after, exit 75 (docs/operations/migrate.md), as when no server
// answers at the start: not a failure (exit 1), which tells a deploy
// script that retrying will not help.
func TestMigrateThatLosesTheDatabaseExitsUnavailable(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	for _, args := range [][]string{{"migrate"}, {"migrate", "--json"}} {
		what := strings.Join(args, " ")
		cut := cutAndRefuse(proxy, faultproxy.ToServer, "pg_advisory_xact_lock")
		r := c.runIn(context.Background(), append([]string{"--database-url", proxied}, args...)...)
		if !cut.Load() {
			t.Fatalf("%s: the lock query never went through the proxy: %s", what, r)
		}
		if r.code != 75 {
			t.Errorf("%s that lost the database: want exit 75 (unavailable), got %s", what, r)
		}
		if len(args) == 2 && !strings.Contains(r.stderr, `"kind":"unavailable"`) {
			t.Errorf("%s that lost the database: want a report of kind unavailable, got %s", what, r)
		}
		heal(proxy)
		c.must(0, append([]string{"--database-url", proxied}, args...)...)
	}
}
