package cli_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/pgtest"
)

// TestSearchPathSchemaErrors: a search_path whose schema does not exist
// asks for it to be created; one whose schema exists but that the role may
// not use (PostgreSQL leaves such a schema out of the path just the same)
// names the role and asks for USAGE instead of asking to create a schema
// that exists.
func TestSearchPathSchemaErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	role := "es_test_nousage_" + strings.ToLower(rand.Text()[:8])
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP ROLE `+role) })

	c := newCLI(t)
	withoutUsage := c.url + "&options=-c%20role%3D" + role
	r := c.runIn(ctx, "--database-url", withoutUsage, "read", "--all")
	if r.code != 1 || !strings.Contains(r.stderr, "USAGE") || !strings.Contains(r.stderr, role) || strings.Contains(r.stderr, "create it") {
		t.Fatalf("read as a role without USAGE on the schema: want exit 1 naming the role and USAGE, got %s", r)
	}

	missing := strings.Replace(c.url, "search_path=", "search_path=no_such_schema_", 1)
	if missing == c.url {
		t.Fatalf("no search_path in %s", c.url)
	}
	r = c.runIn(ctx, "--database-url", missing, "read", "--all")
	if r.code != 1 || !strings.Contains(r.stderr, "create it") {
		t.Fatalf("read with a search_path naming no schema: want exit 1 asking to create it, got %s", r)
	}
}
