package server_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUIEventPageOpensTheTenantsOwnEventWhenAnotherTenantReusesItsID: on
// EventStoreDB ids are unique per stream only (Features.PerStreamIDs), so
// another tenant may append an event with the id of one of acme's into a
// stream of its own, and audit_events then holds two rows with that id.
// /ui/events/ID must open acme's own for acme, not look at whichever row
// the database returns first and answer 404 when that is globex's (a
// tenant hiding another's event from it); each tenant sees its own row.
// (The PostgreSQL backend refuses a reused id, so the row is written here
// as the audit projection writes it from EventStoreDB.)
func TestUIEventPageOpensTheTenantsOwnEventWhenAnotherTenantReusesItsID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	e.seed()
	ctx := context.Background()
	page := e.must(200, "GET", "/ui/?type=course.generation.failed", acmeToken, "").body
	m := regexp.MustCompile(`href="/ui/events/([0-9a-f-]{36})"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no event link:\n%s", page)
	}
	id := m[1]
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{
		// globex's event with acme's id, later in the log.
		`INSERT INTO audit_events SELECT position + 1000, prepare_position + 1000, event_id, 'course.generation.failed', 'globex-forged', 1, source, target,
			'globex', correlation_id, causation_id, producer, schema_version, occurred_at, '{"forged":true}', meta FROM audit_events WHERE event_id = $1`,
		// acme's row written again, so that globex's comes first in
		// the table: which row an unordered read returns is not
		// defined, and this makes it the other tenant's.
		`CREATE TEMP TABLE acme_row ON COMMIT DROP AS SELECT * FROM audit_events WHERE event_id = $1 AND tenant_id = 'acme'`,
		`DELETE FROM audit_events WHERE event_id = $1 AND tenant_id = 'acme'`,
		`INSERT INTO audit_events SELECT * FROM acme_row WHERE event_id = $1`,
	} {
		if _, err := tx.Exec(ctx, q, id); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ token, stream, not string }{
		{acmeToken, "orders-0", "globex-forged"},
		{globexToken, "globex-forged", "orders-0"},
	} {
		r := e.do("GET", "/ui/events/"+id, c.token, "")
		if r.code != 200 || !strings.Contains(r.body, ">"+c.stream+"</a>") || strings.Contains(r.body, c.not) {
			t.Errorf("%s opens /ui/events/%s: %d, want 200 with its own event (stream %s):\n%s", c.token, id, r.code, c.stream, r.body)
		}
	}
}
