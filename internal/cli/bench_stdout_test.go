package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchReportToStdoutKeepsTheFile: bench --markdown /dev/stdout (or
// --html) with stdout redirected to a file writes the report through
// stdout, as the shell opened it, and nothing else: the report file was
// opened again with O_TRUNC, which emptied what >> FILE held, and the
// table was printed into it before the report.
func TestBenchReportToStdoutKeepsTheFile(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const held = "# runs kept before this one\n"
	for _, tc := range []struct {
		flag, starts string
	}{
		{"--markdown", "| scenario |"},
		{"--html", "<!doctype html>"},
	} {
		path := filepath.Join(c.dir, "report")
		if err := os.WriteFile(path, []byte(held), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0) // >> FILE
		if err != nil {
			t.Fatal(err)
		}
		r := c.runTo(f, "--database-url", c.url, "bench", "--scenario", "batch",
			"--events", "200", "--rounds", "1", "--no-raw", tc.flag, "/dev/stdout")
		f.Close()
		if r.code != 0 {
			t.Fatalf("bench %s /dev/stdout: %s", tc.flag, r)
		}
		got := readFileT(t, path)
		if !strings.HasPrefix(got, held+tc.starts) {
			t.Errorf("bench %s /dev/stdout >> FILE: FILE does not hold what it held followed by the report alone; it starts:\n%.300s", tc.flag, got)
		}
		if n := strings.Count(got, "| scenario |"); tc.flag == "--markdown" && n != 1 {
			t.Errorf("bench --markdown /dev/stdout: the file holds %d tables, want the report's alone:\n%s", n, got)
		}
	}
}
