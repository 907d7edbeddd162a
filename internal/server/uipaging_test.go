package server_test

import (
	"context"
	"html"
	"regexp"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUIOlderEventsKeepsEventsThatShareACommitPosition: on EventStoreDB
// the events of one transaction share their commit position and differ in
// their prepare position, so audit_events holds several rows with one
// position. The "Older events" link of the audit browser went on from
// before=COMMIT alone, "position < COMMIT", and so never listed the rest
// of a transaction that a page boundary cut: they were on no page. (The
// PostgreSQL backend gives every event a position of its own, so the rows
// are written here as the audit projection writes them from
// EventStoreDB.)
func TestUIOlderEventsKeepsEventsThatShareACommitPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	const n = 60 // more than a page (50)
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO audit_events (position, prepare_position, event_id, type, stream, version, source,
		tenant_id, schema_version, occurred_at, payload, meta)
		SELECT 1000, 900 + i, gen_random_uuid(), 'course.generation.requested', 'orders-1', i, 'test', 'acme', 1, now(), '{}', '{}'
		FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`id="older" href="([^"]*)"`)
	row := regexp.MustCompile(`<tr class="event"`)
	seen, path := 0, "/ui/"
	for pages := 0; path != ""; pages++ {
		if pages > 2 {
			t.Fatalf("more than %d pages for %d events", pages, n)
		}
		body := e.must(200, "GET", path, acmeToken, "").body
		seen += len(row.FindAllString(body, -1))
		path = ""
		if m := link.FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if seen != n {
		t.Fatalf("the audit browser's pages list %d events, want all %d", seen, n)
	}
}

// TestUIOlderEventsRefusesABadCursor: a before= that is not a position (a
// word, a negative number, a number past the log's bigint) is the caller's
// mistake, 400 saying so, not the newest page shown as though it were the
// older one (what the browser did with any before= it could not read).
func TestUIOlderEventsRefusesABadCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, before := range []string{"abc", "-1", "1.5", "99999999999999999999", "9223372036854775808", "1/9223372036854775808"} {
		r := e.do("GET", "/ui/?before="+before, acmeToken, "")
		if r.code != 400 || !regexp.MustCompile(`id="unavailable">[^<]*before`).MatchString(r.body) {
			t.Errorf("before=%s: %d, want 400 naming before:\n%s", before, r.code, r.body)
		}
	}
	e.must(200, "GET", "/ui/?before=5", acmeToken, "")
	e.must(200, "GET", "/ui/?before=5/4", acmeToken, "")
}
