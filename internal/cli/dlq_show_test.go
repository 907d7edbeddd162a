package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestDeadLetterShowReadFailure: when dlq show reads the dead-letter
// entry but then cannot read the parked event out of the log (the
// database went away), it says so and exits 75, instead of printing
// "event": null (no payload) with exit 0, which read as "the event is
// gone".
func TestDeadLetterShowReadFailure(t *testing.T) {
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
	for _, asJSON := range []bool{false, true} {
		// The log read is the query that orders by position: cut it, and
		// refuse the reconnection.
		cut := cutAndRefuse(proxy, faultproxy.ToServer, "ORDER BY position LIMIT")
		args := []string{"--database-url", proxied, "dlq", "show", id}
		if asJSON {
			args = append(args, "--json")
		}
		r := c.runIn(context.Background(), args...)
		heal(proxy)
		if !cut.Load() {
			t.Fatalf("dlq show (json %v) never read the log through the proxy: %s", asJSON, r)
		}
		if r.code != 75 || !strings.Contains(r.stderr, "reading the parked event") || !strings.Contains(r.stdout, "deploy-after-completion") {
			t.Errorf("dlq show (json %v) that could not read the event: want the entry on stdout, exit 75 and the read error on stderr, got %s", asJSON, r)
		}
	}
}
