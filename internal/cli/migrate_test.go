package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/migrate"
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

// migrateReport is one component of migrate --json.
type migrateReport struct {
	Component string   `json:"component"`
	Version   int      `json:"version"`
	Applied   []string `json:"applied"`
}

// recordedMigrations reads, for every component migrate reports, the
// migrations the database records as run, as NNN_name in version order:
// the home schema's table, and for a read model ("projection:<name>")
// the table in the schema of its active generation. It fails the test
// if a read model has more than one generation (two installs).
func recordedMigrations(t *testing.T, ctx context.Context, conn *pgx.Conn) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	read := func(table, where string, args ...any) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT component, version, name FROM `+table+` `+where+` ORDER BY component, version`, args...)
		if err != nil {
			t.Fatal(err)
		}
		var c, n string
		var v int
		if _, err := pgx.ForEachRow(rows, []any{&c, &v, &n}, func() error {
			out[c] = append(out[c], fmt.Sprintf("%03d_%s", v, n))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	read("eventstream_migrations", "")
	rows, err := conn.Query(ctx, `SELECT projection, count(*), min(schema_name) FROM projection_generations GROUP BY projection ORDER BY projection`)
	if err != nil {
		t.Fatal(err)
	}
	type gen struct {
		name, schema string
		n            int
	}
	var gens []gen
	var g gen
	if _, err := pgx.ForEachRow(rows, []any{&g.name, &g.n, &g.schema}, func() error {
		gens = append(gens, g)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if g.n != 1 {
			t.Errorf("the read model %s has %d generations, want 1: it was installed more than once", g.name, g.n)
		}
		table := pgx.Identifier{g.schema, "eventstream_migrations"}.Sanitize()
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists { // a read model without migrations (reactions) has none
			read(table, "WHERE component = $1", "projection:"+g.name)
		}
	}
	return out
}

// TestConcurrentMigratesReportEachMigrationOnce: several migrate runs
// started at once on an empty schema each report as applied now only
// the migrations they applied: between them every migration of every
// component (the read models' included) is reported once, by its number
// and name, as the database records it, and the database records each
// once. The runs are lined up behind the migration lock, which the test
// holds until every run waits on it, so that they contend each round.
func TestConcurrentMigratesReportEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const runs, rounds = 3, 3
	for round := range rounds {
		c := newCLI(t)
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var schema string
		if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			t.Fatal(err)
		}
		key := migrate.LockKey("migrate", schema)
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			t.Fatal(err)
		}
		results := make([]result, runs)
		var wg sync.WaitGroup
		for i := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.run("migrate", "--json")
			}()
		}
		// The barrier: every run waits on the lock the test holds.
		hi, lo := int64(uint64(key)>>32), int64(uint32(key))
		deadline := time.Now().Add(time.Minute)
		for {
			var waiting int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1`, hi, lo).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting == runs {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of the %d runs wait on the migration lock after a minute", round, waiting, runs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		reported := map[string][]string{}
		versions := map[string][]int{}
		for i, r := range results {
			if r.code != 0 {
				t.Fatalf("round %d, run %d: %s", round, i, r)
			}
			var rs []migrateReport
			if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
				t.Fatalf("round %d, run %d: %v\n%s", round, i, err, r)
			}
			for _, x := range rs {
				reported[x.Component] = append(reported[x.Component], x.Applied...)
				versions[x.Component] = append(versions[x.Component], x.Version)
			}
		}
		recorded := recordedMigrations(t, ctx, conn)
		for comp, vs := range versions {
			want := recorded[comp]
			got := slices.Clone(reported[comp])
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("round %d: %s: the runs report %v as applied now between them; want each recorded migration once, %v", round, comp, got, want)
			}
			for _, v := range vs {
				if v != len(want) {
					t.Errorf("round %d: %s: a run reports version %d; the database records %d migrations", round, comp, v, len(want))
				}
			}
		}
		for comp := range recorded {
			if _, ok := versions[comp]; !ok {
				t.Errorf("round %d: migrate does not report the component %s", round, comp)
			}
		}
		if len(recorded["projection:catalog"]) == 0 || len(recorded["eventstore"]) == 0 {
			t.Errorf("round %d: the database records no migration of the catalog or the log: %v", round, recorded)
		}
		// Run again, every component is up to date.
		var rs []migrateReport
		r := c.must(0, "migrate", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
			t.Fatal(err)
		}
		for _, x := range rs {
			if len(x.Applied) != 0 {
				t.Errorf("round %d: migrate run again reports %s %v as applied now", round, x.Component, x.Applied)
			}
		}
	}
}

// TestMigrateNamesTheReadModelMigrationsItApplies: migrate's report of a
// read model's migrations names each by number and name (NNN_name), as
// it does the log's, in the table and in --json, and lists only those it
// applied.
func TestMigrateNamesTheReadModelMigrationsItApplies(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	recorded := recordedMigrations(t, ctx, conn)
	cat := recorded["projection:catalog"]
	if len(cat) < 2 {
		t.Fatalf("the catalog records %v", cat)
	}
	last := cat[len(cat)-1]
	// The catalog's last migration (an UPDATE) is taken as not run yet.
	var schema string
	if err := conn.QueryRow(ctx, `SELECT g.schema_name FROM projection_state s JOIN projection_generations g
		ON g.projection = s.projection AND g.generation = s.active_generation WHERE s.projection = 'catalog'`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	forget := func() {
		t.Helper()
		if _, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{schema, "eventstream_migrations"}.Sanitize()+` WHERE component = 'projection:catalog' AND version = $1`, len(cat)); err != nil {
			t.Fatal(err)
		}
	}
	forget()
	r := c.must(0, "migrate")
	row := regexp.MustCompile(`(?m)^projection:catalog\s+(\d+)\s+(.*?)\s*$`).FindStringSubmatch(r.stdout)
	if row == nil || row[1] != fmt.Sprint(len(cat)) || row[2] != "["+last+"]" {
		t.Errorf("migrate's row for the catalog is %q; want version %d and [%s]\n%s", row, len(cat), last, r)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "projection:") && !strings.HasPrefix(line, "projection:catalog ") && !strings.Contains(line, "up to date") {
			t.Errorf("migrate reports a read model it did not migrate: %q", line)
		}
	}
	forget()
	var rs []migrateReport
	r = c.must(0, "migrate", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		t.Fatal(err)
	}
	for _, x := range rs {
		want := []string{}
		if x.Component == "projection:catalog" {
			want = []string{last}
		}
		if !slices.Equal(x.Applied, want) {
			t.Errorf("migrate --json reports %s applied now %v, want %v", x.Component, x.Applied, want)
		}
	}
}

// TestStartUpMigrationThatLosesTheDatabaseExitsUnavailable: the commands
// that migrate when they start (serve, demo, projections run, replay,
// backfill, tokens) and lose the database during that migration end with
// exit 75, as migrate does (internal/cli/exit.go: a database lost during
// the command is unavailable), in text and in --json; run again once the
// database is back, they migrate and go on.
func TestStartUpMigrationThatLosesTheDatabaseExitsUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		// marker is a statement of the start-up migration: the read
		// models' (the log's lost one is the store's to report), or the
		// API's for tokens.
		marker string
		// again is false for a command that does not end by itself.
		again bool
	}{
		{[]string{"serve", "--addr", "127.0.0.1:0"}, "INSERT INTO projection_state", false},
		{[]string{"demo"}, "INSERT INTO projection_state", true},
		{[]string{"projections", "run"}, "INSERT INTO projection_state", false},
		{[]string{"replay", "audit"}, "INSERT INTO projection_state", true},
		{[]string{"backfill", "audit"}, "INSERT INTO projection_state", true},
		{[]string{"tokens", "list"}, "pg_advisory_xact_lock", true},
	} {
		what := strings.Join(tc.args, " ")
		t.Run(strings.ReplaceAll(what, " ", "_"), func(t *testing.T) {
			t.Parallel()
			c, proxy, proxied := proxiedCLI(t)
			for _, asJSON := range []bool{false, true} {
				args := append([]string{"--database-url", proxied}, tc.args...)
				if asJSON {
					args = append([]string{"--json"}, args...)
				}
				cut := cutAndRefuse(proxy, faultproxy.ToServer, tc.marker)
				r := c.runIn(context.Background(), args...)
				if !cut.Load() {
					t.Fatalf("%s: %q never went through the proxy: %s", what, tc.marker, r)
				}
				if r.code != 75 {
					t.Errorf("%s that lost the database while migrating: want exit 75 (unavailable), got %s", what, r)
				}
				if asJSON && !strings.Contains(r.stderr, `"kind":"unavailable"`) {
					t.Errorf("%s --json that lost the database while migrating: want a report of kind unavailable, got %s", what, r)
				}
				heal(proxy)
				if tc.again {
					c.must(0, args...)
				}
			}
		})
	}
}

// TestMigrateJSONKeepsARebuildsMigrationsApart: with a replay of the
// catalog interrupted (its generation 2 being built), a migration that
// runs in both generations is reported in --json by its name alone:
// "applied" lists what ran in the generation readers query, and
// "rebuilding" the generation being built and what ran in it, so that
// every entry of either list is a migration's NNN_name. The table marks
// the rebuild's.
func TestMigrateJSONKeepsARebuildsMigrationsApart(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(300)
	c.must(0, "migrate")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "replay", "catalog", "--max-rate", "50", "--batch", "10")
	cmd.Env = cleanEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for c.queryInt(`SELECT count(*) FROM projection_state WHERE projection = 'catalog' AND building_generation IS NOT NULL`) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the rebuild never started: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the replay ended before it was interrupted: %s", stderr.String())
	}
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The catalog's last migration (an UPDATE) is taken as not run yet
	// in both generations.
	var version int
	var name string
	var active string
	if err := conn.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'catalog' AND generation = 1`).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT version, name FROM `+pgx.Identifier{active, "eventstream_migrations"}.Sanitize()+` WHERE component = 'projection:catalog' ORDER BY version DESC LIMIT 1`).Scan(&version, &name); err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("%03d_%s", version, name)
	forget := func() {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'catalog' ORDER BY generation`)
		if err != nil {
			t.Fatal(err)
		}
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(schemas) != 2 {
			t.Fatalf("the catalog's generations are in %v (%v), want 2", schemas, err)
		}
		for _, s := range schemas {
			if _, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{s, "eventstream_migrations"}.Sanitize()+` WHERE component = 'projection:catalog' AND version = $1`, version); err != nil {
				t.Fatal(err)
			}
		}
	}
	forget()
	r := c.must(0, "migrate", "--json")
	var rs []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	found := false
	for _, x := range rs {
		var comp string
		_ = json.Unmarshal(x["component"], &comp)
		if comp != "projection:catalog" {
			if _, ok := x["rebuilding"]; ok {
				t.Errorf("migrate --json reports a rebuild of %s: %s", comp, x["rebuilding"])
			}
			continue
		}
		found = true
		var applied []string
		var rebuilding struct {
			Generation int      `json:"generation"`
			Applied    []string `json:"applied"`
		}
		if err := json.Unmarshal(x["applied"], &applied); err != nil || !slices.Equal(applied, []string{last}) {
			t.Errorf("migrate --json reports the catalog's applied %s (%v), want [%q]", x["applied"], err, last)
		}
		if err := json.Unmarshal(x["rebuilding"], &rebuilding); err != nil || rebuilding.Generation != 2 || !slices.Equal(rebuilding.Applied, []string{last}) {
			t.Errorf("migrate --json reports the catalog's rebuilding %s (%v), want generation 2 and [%q]", x["rebuilding"], err, last)
		}
	}
	if !found {
		t.Fatalf("migrate --json does not report the catalog: %s", r)
	}
	forget()
	r = c.must(0, "migrate")
	if want := "[" + last + " " + last + " (generation 2, being rebuilt)]"; !strings.Contains(r.stdout, want) {
		t.Errorf("migrate's table does not show %s\n%s", want, r)
	}
}
