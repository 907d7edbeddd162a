package analysts_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/analysts"
)

// TestGrantRefusesRolesThatReadOtherSessionsQueries: pg_stat_activity
// shows the text of every session's current (or last) query to members of
// pg_read_all_stats (pg_monitor among them). The log's writers send event
// payloads as literals in their query text (the careful path's one-message
// round trips), so such a member reads other tenants' payloads around
// row-level security. Grant must refuse it. A plain analyst sees no other
// role's query text.
func TestGrantRefusesRolesThatReadOtherSessionsQueries(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	// A session of the owner whose last query holds a payload of globex,
	// as a writer's does.
	marker := "globex-secret-" + s.schema
	writer := s.as(t, "root")
	if _, err := writer.Exec(ctx, `SELECT '{"note":"`+marker+`"}'::jsonb`); err != nil {
		t.Fatal(err)
	}
	seen := func(role string) (int, error) {
		var n int
		err := s.as(t, role).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`, marker).Scan(&n)
		return n, err
	}

	plain := s.role(t, "an_plain")
	if _, err := analysts.Grant(ctx, s.pool, "acme", plain, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	if n, err := seen(plain); err != nil || n != 0 {
		t.Fatalf("a plain analyst of acme sees %d queries holding globex's payload (%v), want 0", n, err)
	}

	for _, group := range []string{"pg_read_all_stats", "pg_monitor"} {
		role := s.role(t, "an_stats")
		if group == "pg_monitor" {
			role = s.role(t, "an_mon")
		}
		if _, err := s.pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN IN ROLE `+group); err != nil {
			t.Fatal(err)
		}
		_, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{})
		if err == nil {
			n, qerr := seen(role)
			t.Errorf("Grant accepted a member of %s; as the analyst of acme it sees %d queries holding globex's payload (%v)", group, n, qerr)
			continue
		}
		if !errors.Is(err, analysts.ErrRefused) || !strings.Contains(err.Error(), "pg_read_all_stats") {
			t.Errorf("a member of %s: %v, want refused naming pg_read_all_stats", group, err)
		}
		var mapped bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM eventstream_analysts WHERE role_name = $1)`, role).Scan(&mapped); err != nil || mapped {
			t.Errorf("the refused grant to %s was recorded (%v)", role, err)
		}
	}
}
