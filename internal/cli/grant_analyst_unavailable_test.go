package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestGrantAnalystThatLosesTheDatabaseExitsUnavailable: grant-analyst
// installs the analysts component on first use; a database lost while it
// does (the connection cut at its CREATE TABLE), or while it grants, is an
// outage to retry after: exit 75, kind "unavailable" with --json, not 1.
// Run again once the database is back, it grants.
func TestGrantAnalystThatLosesTheDatabaseExitsUnavailable(t *testing.T) {
	t.Parallel()
	for _, marker := range []string{"CREATE TABLE eventstream_analysts", "INSERT INTO eventstream_analysts"} {
		t.Run(strings.Fields(marker)[0], func(t *testing.T) {
			t.Parallel()
			c, proxy, proxied := proxiedCLI(t)
			role := c.scratchRole("lost_")
			for _, asJSON := range []bool{false, true} {
				args := []string{"--database-url", proxied, "tenants", "grant-analyst", "acme", role, "--no-login"}
				if asJSON {
					args = append([]string{"--json"}, args...)
				}
				cut := cutAndRefuse(proxy, faultproxy.ToServer, marker)
				r := c.runIn(context.Background(), args...)
				if !cut.Load() {
					t.Fatalf("%q never went through the proxy: %s", marker, r)
				}
				if r.code != 75 {
					t.Errorf("grant-analyst that lost the database at %q: want exit 75 (unavailable), got %s", marker, r)
				}
				if asJSON && !strings.Contains(r.stderr, `"kind":"unavailable"`) {
					t.Errorf("grant-analyst --json that lost the database: want a report of kind unavailable, got %s", r)
				}
				heal(proxy)
			}
			c.must(0, "--database-url", proxied, "tenants", "grant-analyst", "acme", role, "--no-login")
		})
	}
}
