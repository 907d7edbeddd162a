package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestServeOnAMemoryLogRefusesReadModelsOfAnEarlierLog: the read models'
// checkpoints stay in PostgreSQL while a memory log starts empty on every
// run. A second "serve --store memory" on the same database numbered its
// events from 1 again, below the checkpoints, so the projections skipped
// them without a word: the read models never showed them. It is refused
// before serving, saying why and what to do.
func TestServeOnAMemoryLogRefusesReadModelsOfAnEarlierLog(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	token := strings.TrimSpace(c.must(0, "tokens", "create", "acme").stdout)
	s := startServe(t, c, "--database-url", c.url, "--store", "memory", "serve", "--addr", "127.0.0.1:0")
	for i := range 3 {
		body := fmt.Sprintf(`{"type":"distribution.viewed","payload":{"distribution_id":"5e1f0000-0000-4000-8000-000000000000","course_id":"7b0c0000-0000-4000-8000-000000000000","visitor_id":"v-%d"}}`, i)
		if code, out := s.do(t, "POST", "/streams/web-analytics-acme/events", token, body); code != 201 {
			t.Fatalf("append: %d %s", code, out)
		}
	}
	s.waitAuditAtHead(t, token)
	s.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := c.runIn(ctx, "--database-url", c.url, "--store", "memory", "serve", "--addr", "127.0.0.1:0")
	if r.code != 1 || strings.Contains(r.stderr, "msg=serving") ||
		!strings.Contains(r.stderr, "the read models in this database are at position 3 of an earlier log") ||
		!strings.Contains(r.stderr, "--store postgres") {
		t.Fatalf("second serve on a memory log: want exit 1 before serving, naming the stale read models; got %s", r)
	}
}
