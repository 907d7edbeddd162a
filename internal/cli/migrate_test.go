package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
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
