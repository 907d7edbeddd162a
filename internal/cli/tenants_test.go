package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	escli "github.com/brainhq/eventstream/internal/cli"
)

// TestGrantAnalystRefusesAnEmptyPassword: --password-stdin or
// --password-file that yields an empty password is a refused password
// (exit 2, nothing changed), not a grant without one: the user asked for
// a password and would otherwise get a LOGIN role that has none.
func TestGrantAnalystRefusesAnEmptyPassword(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	role := c.scratchRole("an_empty_")
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
	}{
		{"\n", []string{"--password-stdin"}},
		{"\r\n", []string{"--password-stdin"}},
		{"", []string{"--password-file", empty}},
	} {
		c.stdin = tc.stdin
		r := c.run(append([]string{"tenants", "grant-analyst", "acme", role}, tc.args...)...)
		if r.code != escli.ExitUsage || !strings.Contains(r.stderr, "password") {
			t.Errorf("grant-analyst %v with an empty password: want exit %d naming the password, got %s", tc.args, escli.ExitUsage, r)
		}
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil || exists {
			t.Fatalf("grant-analyst %v with an empty password created the role (%v)", tc.args, err)
		}
	}
}

// scratchRole names a role of the test's own, prefix and the test's
// schema, and drops it (and what it owns) when the test ends, if a
// command created it: roles are cluster-wide, and tests run side by side.
func (c *cli) scratchRole(prefix string) string {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		c.t.Fatal(err)
	}
	role := prefix + strings.TrimPrefix(schema, "es_test_")
	c.t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			c.t.Error(err)
			return
		}
		defer conn.Close(ctx)
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil || !exists {
			return
		}
		if _, err := conn.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role); err != nil {
			c.t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}
