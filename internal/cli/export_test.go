package cli_test

import (
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
