package server_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestUITypePatternMatchesUnderscoresLiterally: in the audit browser's
// type filter "*" (or "%") matches any run of characters and nothing else
// is a wildcard. "_", which type names hold, is an underscore: the
// pattern ir.approval_* lists ir.approval_invalid, not ir.approvalxinvalid.
// (Passed to LIKE as it was, "_" matched any one character.)
func TestUITypePatternMatchesUnderscoresLiterally(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO audit_events (position, prepare_position, event_id, type, stream, version, source,
		tenant_id, schema_version, occurred_at, payload, meta)
		VALUES (1, 1, gen_random_uuid(), 'ir.approval_invalid', 'web-1', 1, 'test', 'acme', 1, now(), '{}', '{}'),
		       (2, 2, gen_random_uuid(), 'ir.approvalxinvalid', 'web-1', 2, 'test', 'acme', 1, now(), '{}', '{}')`); err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`<tr class="event"`)
	for pattern, want := range map[string]int{
		"ir.approval_*":   1,
		"ir.approval%25":  2,
		"ir.approval*":    2,
		"ir.*_invalid":    1,
		"ir.approval_inv": 0, // no wildcard: compared whole
	} {
		body := e.must(200, "GET", "/ui/?type="+pattern, acmeToken, "").body
		if got := len(row.FindAllString(body, -1)); got != want {
			t.Errorf("type=%s lists %d events, want %d", pattern, got, want)
		}
	}
}
