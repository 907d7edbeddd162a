package analysts_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/analysts"
)

// TestPlannerEstimatesAndTheDocumentedRecipe pins what docs/operations/
// tenants.md says of the planner's estimates, and that its recipe works.
// ANALYZE samples every tenant's rows into pg_statistic; pg_stats hides
// them from the analyst, but the planner estimates its LEAKPROOF
// conditions from them, so plain EXPLAIN tells the analyst of acme that
// globex has rows in stream "globex-stream" and that a made-up stream has
// none. Once the page's SQL has run (in a transaction rolled back here:
// it stops ANALYZE on the protected tables and deletes their statistics),
// the estimate is the same for both, ANALYZE run again included.
func TestPlannerEstimatesAndTheDocumentedRecipe(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	role := s.role(t, "an_est")
	if _, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	var gen string
	if err := s.pool.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = 'audit' AND state = 'active'`).Scan(&gen); err != nil {
		t.Fatal(err)
	}
	// What autovacuum does once enough rows have changed.
	if _, err := s.pool.Exec(ctx, `ANALYZE `+pgx.Identifier{gen, "audit_events"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	estimate := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}, stream string) float64 {
		t.Helper()
		var raw []byte
		if err := q.QueryRow(ctx, `EXPLAIN (FORMAT JSON) SELECT * FROM audit_events WHERE stream = '`+stream+`'`).Scan(&raw); err != nil {
			t.Fatalf("EXPLAIN as the analyst: %v", err)
		}
		var plan []struct {
			Plan struct {
				Rows float64 `json:"Plan Rows"`
			} `json:"Plan"`
		}
		if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
			t.Fatalf("plan %s: %v", raw, err)
		}
		return plan[0].Plan.Rows
	}
	conn := s.as(t, role)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id <> 'acme'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the analyst of acme reads %d rows of other tenants (%v)", n, err)
	}
	if globex, none := estimate(conn, "globex-stream"), estimate(conn, "no-such-stream"); globex <= none {
		t.Fatalf("the analyst of acme is estimated %v rows of globex's stream and %v of none: the page says the estimates tell them apart; update it", globex, none)
	}

	doc, err := os.ReadFile("../../docs/operations/tenants.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sql\n([^`]*?pg_statistic[^`]*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/operations/tenants.md holds no SQL block that deletes from pg_statistic")
	}
	recipe := strings.Replace(string(m[1]), "home text := 'events';", "home text := current_schema();", 1)
	if recipe == string(m[1]) {
		t.Fatal("the recipe no longer names its schema as `home text := 'events';`")
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, recipe); err != nil {
		t.Fatalf("the page's recipe: %v\n%s", err, recipe)
	}
	for _, table := range []pgx.Identifier{{gen, "audit_events"}, {s.schema, "eventstream_analysts"}} {
		if _, err := tx.Exec(ctx, `ANALYZE `+table.Sanitize()); err != nil {
			t.Fatal(err)
		}
		var left int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_statistic WHERE starelid = $1::regclass`, table.Sanitize()).Scan(&left); err != nil || left != 0 {
			t.Errorf("after the recipe and ANALYZE, %s has %d columns' statistics (%v), want none", table.Sanitize(), left, err)
		}
	}
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
		t.Fatal(err)
	}
	if globex, none := estimate(tx, "globex-stream"), estimate(tx, "no-such-stream"); globex != none {
		t.Errorf("after the recipe the analyst of acme is still estimated %v rows of globex's stream and %v of none", globex, none)
	}
}
