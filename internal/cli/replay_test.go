package cli_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReplayResumedReportsOnlyItsOwnProgress: a rebuild resumed after
// Ctrl-C reports, as backfill does, the events this run reads: its total
// is what is left from where the unfinished generation stood, and its rate
// is of its own work. Before, the events of the interrupted run counted
// as done at the first report, which showed a rate far above the real one
// and an ETA far too short.
func TestReplayResumedReportsOnlyItsOwnProgress(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const n = 300
	c.appendMany(n)
	c.must(0, "migrate")
	interruptReplay(t, c, 150, 20)
	r := c.must(0, "replay", "audit")
	if !strings.Contains(r.stdout, "resumed") {
		t.Fatalf("the second replay did not resume: %s", r)
	}
	var events, total int
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, `msg="replay done"`) {
			if _, err := fmt.Sscanf(l[strings.Index(l, " events="):], " events=%d", &events); err != nil {
				t.Fatalf("replay done line %q: %v", l, err)
			}
			if _, err := fmt.Sscanf(l[strings.Index(l, " total="):], " total=%d", &total); err != nil {
				t.Fatalf("replay done line %q: %v", l, err)
			}
		}
	}
	if events != total || total <= 0 || total >= n {
		t.Fatalf("resumed replay reports events=%d total=%d; want both the events left to it (fewer than %d): %s", events, total, n, r.stderr)
	}
}

// TestReplayCancelSaysWhatItDropped: replay --cancel says whether there
// was an unfinished rebuild to drop and which generation it was. Before,
// it printed "cancelled": true (and "dropped any unfinished rebuild")
// whether or not there was one, so a script could not tell a dropped
// rebuild from a rebuild that was never there.
func TestReplayCancelSaysWhatItDropped(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(100)
	c.must(0, "migrate")
	if r := c.must(0, "replay", "audit", "--cancel"); !strings.Contains(r.stdout, "audit has no unfinished rebuild: nothing to drop") {
		t.Fatalf("replay --cancel with no rebuild: %s", r)
	}
	interruptReplay(t, c, 100, 10)
	got := onlyJSON(t, "replay --cancel", c.must(0, "replay", "audit", "--cancel", "--json").stdout)
	if got["cancelled"] != true || got["generation"] != float64(2) {
		t.Fatalf("replay --cancel --json after an interrupted rebuild: %v, want cancelled true, generation 2", got)
	}
	if n := c.queryInt(`SELECT count(*) FROM projection_generations WHERE projection = 'audit' AND generation = 2`); n != 0 {
		t.Fatalf("generation 2 still recorded after --cancel (%d rows)", n)
	}
	got = onlyJSON(t, "replay --cancel", c.must(0, "replay", "audit", "--cancel", "--json").stdout)
	if got["cancelled"] != false || got["generation"] != nil {
		t.Fatalf("replay --cancel --json with nothing left to drop: %v, want cancelled false and no generation", got)
	}
}

// interruptReplay starts replay audit (generation 2) at maxRate events/s
// in batches of 10, sends it Ctrl-C once its checkpoint is at least at
// position, and checks it exited 130, leaving the rebuild unfinished.
func interruptReplay(t *testing.T, c *cli, maxRate, position int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bg := c.start(ctx, "replay", "audit", "--max-rate", fmt.Sprint(maxRate), "--batch", "10")
	for c.queryInt(`SELECT coalesce(max(commit_position), 0) FROM projection_checkpoints WHERE projection = 'audit' AND generation = 2`) < position {
		select {
		case err := <-bg.exited:
			t.Fatalf("replay ended (%v) before it was interrupted; stderr: %s", err, bg.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	if err, ok := (<-bg.exited).(*exec.ExitError); !ok || err.ExitCode() != 130 {
		t.Fatalf("interrupted replay: %v; stderr: %s", err, bg.stderr.String())
	}
}
