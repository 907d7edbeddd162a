package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExportToADeviceOrAPipe: --output may name something that is not a
// regular file (/dev/stdout piped into gzip, /dev/null for a dry run).
// There is nothing to resume there: the export writes the log and ends,
// instead of reading the device back first (a pipe never ends: the export
// hung, deaf to Ctrl-C) or failing to fsync it after writing everything.
func TestExportToADeviceOrAPipe(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(7)
	// The test's stdout is a pipe.
	r := c.runBounded(15*time.Second, "export", "--output", "/dev/stdout")
	if r.code != 0 {
		t.Fatalf("export --output /dev/stdout: %s", r)
	}
	if got := jsonLines(t, r.stdout); len(got) != 7 {
		t.Fatalf("export --output /dev/stdout wrote %d events, want 7: %s", len(got), r)
	}
	if strings.Contains(r.stderr, "resuming") {
		t.Fatalf("export resumed from a pipe: %s", r)
	}
	if r := c.runBounded(15*time.Second, "export", "--output", "/dev/null"); r.code != 0 {
		t.Fatalf("export --output /dev/null: %s", r)
	}
}

// TestExportCountsTheEventsItWrote: the progress an export reports (its
// last log line off a terminal) counts the events written, not those of
// the pages read: a page runs past --to, and a resumed export skips what
// the file already holds.
func TestExportCountsTheEventsItWrote(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(7)
	r := c.must(0, "export", "--from", "3", "--to", "4")
	if got := jsonLines(t, r.stdout); len(got) != 2 {
		t.Fatalf("export --from 3 --to 4: %d events, want 2", len(got))
	}
	if !strings.Contains(r.stderr, "events=2 ") {
		t.Fatalf("export --from 3 --to 4 reports another count: %s", r.stderr)
	}
	out := filepath.Join(c.dir, "e.ndjson")
	c.must(0, "export", "--to", "5", "--output", out)
	r = c.must(0, "export", "--output", out)
	if got := readLines(t, out); len(got) != 7 {
		t.Fatalf("resumed export: the file has %d lines, want 7", len(got))
	}
	if !strings.Contains(r.stderr, "events=2 ") || !strings.Contains(r.stderr, "total=2") {
		t.Fatalf("resumed export after 5 of 7 events reports another count: %s", r.stderr)
	}
	// A --to past the head: the total is what there is to write.
	if r := c.must(0, "export", "--from", "6", "--to", "18446744073709551615"); !strings.Contains(r.stderr, "events=2 ") || !strings.Contains(r.stderr, "total=2") {
		t.Fatalf("export --from 6 --to past the head reports another count: %s", r.stderr)
	}
}
