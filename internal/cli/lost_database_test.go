package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// lostCase is a command that loses the database at one of its
// statements (marker, cut on its way to the server, and no new connection
// let through).
type lostCase struct {
	args   []string
	marker string
}

// runLost runs each case through the proxy, in text and with --json, cut
// at its marker: each must end with exit 75 (kind "unavailable" with
// --json) and print nothing on stdout. The cases share the proxy, so they
// run one after the other.
func runLost(t *testing.T, c *cli, proxy *faultproxy.Proxy, proxied string, cases []lostCase) {
	t.Helper()
	for _, tc := range cases {
		what := strings.Join(tc.args, " ")
		for _, asJSON := range []bool{false, true} {
			args := append([]string{"--database-url", proxied}, tc.args...)
			if asJSON {
				args = append([]string{"--json"}, args...)
			}
			cut := cutAndRefuse(proxy, faultproxy.ToServer, tc.marker)
			r := c.runIn(context.Background(), args...)
			heal(proxy)
			if !cut.Load() {
				t.Fatalf("%s: %q never went through the proxy: %s", what, tc.marker, r)
			}
			if asJSON {
				checkReport(t, fmt.Sprintf("%s that lost the database at %q", what, tc.marker), r, 75, "unavailable")
			} else if r.code != 75 || !strings.Contains(r.stderr, "unavailable") {
				t.Errorf("%s that lost the database at %q: want exit 75 and a message saying the database is unavailable, got %s", what, tc.marker, r)
			}
			if r.stdout != "" {
				t.Errorf("%s (json %v) that lost the database at %q wrote to stdout: %s", what, asJSON, tc.marker, r)
			}
		}
	}
}

// TestDeadLetterCommandsThatLoseTheDatabaseExitUnavailable: dlq list,
// show, retry and skip that lose the database while they query the
// dead-letter table end with exit 75, kind "unavailable" with --json, as
// the README and exit.go promise, not 1. Nothing was changed: the entry is
// still parked, and once the database is back an unknown id is still a
// usage error (2) and skip skips.
func TestDeadLetterCommandsThatLoseTheDatabaseExitUnavailable(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	course := uuid.NewString()
	c.must(0, "append", "--stream", "course-"+course, "--type", "course.generation.completed", "--tenant", "acme",
		"--data", fmt.Sprintf(`{"course_id":"%s","title":"T","lesson_count":1,"attempt":1}`, course))
	c.settle("reactions")
	parked := jsonLines(t, c.must(0, "dlq", "list", "--json").stdout)
	if len(parked) != 1 {
		t.Fatalf("dlq list: %v, want one parked event", parked)
	}
	id := fmt.Sprint(parked[0]["id"])
	runLost(t, c, proxy, proxied, []lostCase{
		{[]string{"dlq", "list"}, "ORDER BY projection, generation"},
		{[]string{"dlq", "show", id}, "FROM projection_dead_letters WHERE id = $1"},
		{[]string{"dlq", "retry", id}, "FROM projection_dead_letters WHERE id = $1"},
		{[]string{"dlq", "retry", id}, "FOR UPDATE OF dl"},
		{[]string{"dlq", "retry", "--all"}, "ORDER BY projection, generation"},
		{[]string{"dlq", "skip", id}, "DELETE FROM projection_dead_letters"},
	})
	after := jsonLines(t, c.must(0, "--database-url", proxied, "dlq", "list", "--json").stdout)
	if len(after) != 1 || fmt.Sprint(after[0]["id"]) != id || after[0]["attempts"] != parked[0]["attempts"] {
		t.Fatalf("after the runs that lost the database, dlq list: %v, want %v unchanged", after, parked)
	}
	c.must(2, "--database-url", proxied, "dlq", "skip", "999999999")
	c.must(0, "--database-url", proxied, "dlq", "skip", id)
	if r := c.must(0, "--database-url", proxied, "dlq", "list", "--json"); r.stdout != "" {
		t.Errorf("dlq list after skip: want nothing parked, got %s", r)
	}
}

// TestTokensCommandsThatLoseTheDatabaseExitUnavailable: tokens create,
// list and revoke that lose the database at their statement on the
// tokens table end with exit 75, kind "unavailable" with --json, not 1.
// Nothing was changed: no token was added, none revoked; once the database
// is back an unknown name is still a usage error (2) and revoke revokes.
func TestTokensCommandsThatLoseTheDatabaseExitUnavailable(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	c.must(0, "tokens", "create", "acme", "--name", "kept")
	runLost(t, c, proxy, proxied, []lostCase{
		{[]string{"tokens", "create", "acme", "--name", "lost"}, "INSERT INTO eventstream_api_tokens"},
		{[]string{"tokens", "list"}, "FROM eventstream_api_tokens ORDER BY"},
		{[]string{"tokens", "revoke", "kept"}, "UPDATE eventstream_api_tokens SET revoked_at"},
	})
	var ts []map[string]any
	if r := c.must(0, "--database-url", proxied, "--json", "tokens", "list"); json.Unmarshal([]byte(r.stdout), &ts) != nil {
		t.Fatalf("tokens list --json: not a JSON array: %s", r)
	}
	if len(ts) != 1 || ts[0]["name"] != "kept" || ts[0]["revoked_at"] != nil {
		t.Fatalf("after the runs that lost the database, tokens list: %v, want the one live token named kept", ts)
	}
	c.must(2, "--database-url", proxied, "tokens", "revoke", "nobody")
	c.must(0, "--database-url", proxied, "tokens", "revoke", "kept")
}
