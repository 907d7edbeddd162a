package analysts_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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

	// The control: a superuser sees that query, so the analysts' 0 below
	// says that they cannot, not that it is not there.
	if n, err := seen("root"); err != nil || n == 0 {
		t.Fatalf("a superuser sees %d queries holding the marker (%v): the checks below would prove nothing", n, err)
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
		s.refusedUnrecorded(t, role, "a member of "+group, "pg_read_all_stats", err)
	}
}

// TestAdvisoryLocksAndTheDocumentedRevoke pins what docs/operations/
// tenants.md says an analyst can still do, and that its recipe works: by
// default an analyst takes advisory locks (the functions are PUBLIC's) and
// LISTENs on any channel; once the page's SQL has run, every advisory-lock
// function is refused to it. The recipe is run in a transaction that is
// rolled back (it is database-wide), on the very text of the page.
func TestAdvisoryLocksAndTheDocumentedRevoke(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	role := s.role(t, "an_lock")
	if _, err := analysts.Grant(ctx, s.pool, "acme", role, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	conn := s.as(t, role)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(7340033)`).Scan(&got); err != nil || !got {
		t.Fatalf("by default an analyst takes advisory locks: %v %v (the page says it can)", got, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock_all(); LISTEN eventstream_probe`); err != nil {
		t.Fatalf("an analyst LISTENs (the page says it can): %v", err)
	}

	doc, err := os.ReadFile("../../docs/operations/tenants.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sql\n(.*?advisory.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/operations/tenants.md holds no SQL block about advisory locks")
	}
	recipe := strings.Replace(string(m[1]), "owner text := 'eventstream';", "owner text := current_user;", 1)
	if recipe == string(m[1]) {
		t.Fatal("the recipe no longer names its owner as `owner text := 'eventstream';`")
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, recipe); err != nil {
		t.Fatalf("the page's recipe: %v\n%s", err, recipe)
	}
	rows, err := tx.Query(ctx, `SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname LIKE '%advisory%lock%'
			AND has_function_privilege($1, p.oid, 'EXECUTE')`, role)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("after the recipe the analyst may still run %v", left)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_lock(7340033)`); sqlState(err) != "42501" {
		t.Fatalf("after the recipe, pg_advisory_lock as the analyst: %v, want permission denied", err)
	}
}
