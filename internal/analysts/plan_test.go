package analysts_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/brainhq/eventstream/internal/analysts"
)

// TestPolicyIsAnIndexCondition: PostgreSQL runs a LEAKPROOF condition of
// the analyst's (=, <, >= on text...) before the row-level security
// policy, as an index condition, and EXPLAIN ANALYZE reports how many rows
// the policy then removed. With the policy a filter (tenant_id IN
// (subquery)), the analyst of acme counts another tenant's rows by its
// name, and finds the names by halving ranges. The policy must itself be
// an index condition, so that an index that starts with tenant_id never
// reaches another tenant's entries.
func TestPolicyIsAnIndexCondition(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	role := s.role(t, "an_plan")
	if _, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	conn := s.as(t, role)
	// The attacker chooses the plan: an index scan of (tenant_id, occurred_at).
	for _, q := range []string{`SET enable_seqscan = off`, `SET enable_bitmapscan = off`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, probe := range []string{
		`SELECT 1 FROM audit_events WHERE tenant_id = 'globex'`,
		`SELECT 1 FROM audit_events WHERE tenant_id > 'b'`,
		`SELECT 1 FROM audit_events WHERE tenant_id >= '' AND occurred_at > '2000-01-01'`,
	} {
		var plan []struct {
			Plan map[string]any `json:"Plan"`
		}
		var raw []byte
		if err := conn.QueryRow(ctx, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) `+probe).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", probe, err)
		}
		if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
			t.Fatalf("%s: plan %s: %v", probe, raw, err)
		}
		top := plan[0].Plan
		removed := 0.0
		for _, k := range []string{"Rows Removed by Filter", "Rows Removed by Index Recheck"} {
			if v, ok := top[k].(float64); ok {
				removed += v
			}
		}
		if removed != 0 {
			t.Errorf("%s: the analyst of acme learns that %v rows of other tenants match (%v on %v, condition %v)",
				probe, removed, top["Node Type"], top["Index Name"], top["Index Cond"])
		}
	}
}
