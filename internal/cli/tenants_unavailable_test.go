package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestTenantsCommandsThatLoseTheDatabaseExitUnavailable: revoke-analyst
// and "tenants analysts" that lose the database while they run (the
// connection cut at one of their statements, and no new connection let
// through) end with exit 75, kind "unavailable" with --json, not 1, as
// grant-analyst does (TestGrantAnalystThatLosesTheDatabaseExitsUnavailable).
// What had not committed was rolled back: run again once the database is
// back, revoke-analyst revokes and the listing lists the role.
func TestTenantsCommandsThatLoseTheDatabaseExitUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		marker string // a statement of the command, cut on its way to the server
		args   func(role string) []string
	}{
		{"revoke/delete", "DELETE FROM eventstream_analysts", func(role string) []string { return []string{"tenants", "revoke-analyst", role} }},
		{"revoke/revoke", "REVOKE ALL ON", func(role string) []string { return []string{"tenants", "revoke-analyst", role} }},
		{"analysts/lookup", "to_regclass('eventstream_analysts')", func(string) []string { return []string{"tenants", "analysts"} }},
		{"analysts/select", "SELECT role_name, tenant_id FROM eventstream_analysts", func(string) []string { return []string{"tenants", "analysts"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, proxy, proxied := proxiedCLI(t)
			role := c.scratchRole("lost_")
			c.must(0, "tenants", "grant-analyst", "acme", role, "--no-login")
			args := tc.args(role)
			what := strings.Join(args[:2], " ")
			for _, asJSON := range []bool{false, true} {
				run := append([]string{"--database-url", proxied}, args...)
				if asJSON {
					run = append([]string{"--json"}, run...)
				}
				cut := cutAndRefuse(proxy, faultproxy.ToServer, tc.marker)
				r := c.runIn(context.Background(), run...)
				heal(proxy)
				if !cut.Load() {
					t.Fatalf("%s: %q never went through the proxy: %s", what, tc.marker, r)
				}
				if asJSON {
					checkReport(t, what+" that lost the database at "+tc.marker, r, 75, "unavailable")
				} else if r.code != 75 {
					t.Errorf("%s that lost the database at %q: want exit 75 (unavailable), got %s", what, tc.marker, r)
				}
				if r.stdout != "" {
					t.Errorf("%s that lost the database at %q wrote to stdout: %s", what, tc.marker, r)
				}
			}
			// Nothing was revoked: the role is still listed, with its tenant.
			listed := func() []map[string]any {
				t.Helper()
				var as []map[string]any
				r := c.must(0, "--json", "tenants", "analysts")
				if err := json.Unmarshal([]byte(r.stdout), &as); err != nil {
					t.Fatalf("tenants analysts --json: %v\n%s", err, r)
				}
				return as
			}
			if as := listed(); len(as) != 1 || as[0]["role"] != role || as[0]["tenant"] != "acme" {
				t.Fatalf("after the runs that lost the database, tenants analysts lists %v, want %s of acme", as, role)
			}
			r := c.must(0, append([]string{"--database-url", proxied}, args...)...)
			if args[1] == "revoke-analyst" {
				if as := listed(); len(as) != 0 {
					t.Errorf("revoke-analyst run again once the database is back: tenants analysts still lists %v", as)
				}
			} else if !strings.Contains(r.stdout, role) || !strings.Contains(r.stdout, "acme") {
				t.Errorf("tenants analysts run again once the database is back: want %s of acme, got %s", role, r)
			}
		})
	}
}
