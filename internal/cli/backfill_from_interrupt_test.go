package cli_test

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBackfillFromInterruptedSaysRunItWithoutFrom: Ctrl-C during
// `backfill --from POS` must not tell the operator to run "the same
// command again to continue": the same command rewinds to POS again and
// reapplies what this run already did. It says to run it without --from,
// and that run does continue from the checkpoint (no rewind).
func TestBackfillFromInterruptedSaysRunItWithoutFrom(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	c.appendMany(1500)
	c.must(0, "backfill", "audit")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := c.start(ctx, "backfill", "audit", "--from", "100", "--max-rate", "100")
	// Wait for the rewind (the checkpoint goes back to 99) and a slice
	// applied after it.
	for cp := c.checkpoint("audit"); cp < 100 || cp >= 1500; cp = c.checkpoint("audit") {
		select {
		case err := <-b.exited:
			t.Fatalf("backfill --from ended before it applied a slice: %v\n%s", err, b.stderr.String())
		case <-ctx.Done():
			t.Fatalf("backfill --from never rewound and applied a slice: %s", b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	err := <-b.exited
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted backfill --from: want exit 130, got %v\n%s", err, b.stderr.String())
	}
	stderr := b.stderr.String()
	if strings.Contains(stderr, "run the same command again") {
		t.Fatalf("interrupted backfill --from says to run the same command again, which would rewind to 100 again:\n%s", stderr)
	}
	if !strings.Contains(stderr, "run it again without --from to continue") {
		t.Fatalf("interrupted backfill --from does not say to run it without --from:\n%s", stderr)
	}
	at := c.checkpoint("audit")

	r := c.must(0, "backfill", "audit")
	if strings.Contains(r.stderr, "rewound") {
		t.Fatalf("backfill without --from rewound:\n%s", r.stderr)
	}
	if c.checkpoint("audit") != 1500 {
		t.Fatalf("backfill without --from stopped at %d, want 1500 (it continued from %d)", c.checkpoint("audit"), at)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 1500 {
		t.Fatalf("audit_events has %d rows, want 1500", n)
	}
	checkSameEvents(t, "audit_events after the backfill continued", c.auditRows(), c.logRows())
}
