package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExportToStdoutRedirectedToAFileWithJSONKeepsTheFileAnExport:
// "--output /dev/stdout" with stdout redirected to a regular file
// (eventstream --json export --output /dev/stdout > events.ndjson) writes
// the events to that file through a descriptor of its own, and there the
// events are the output: export --json printed its result object to
// stdout as well, at offset 0 of the same file, over the first event (a
// corrupt first line), or after the last one with >> (a line that is no
// envelope). The result is for a FILE that is not stdout.
func TestExportToStdoutRedirectedToAFileWithJSONKeepsTheFileAnExport(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(7)
	for _, tc := range []struct {
		name   string
		output string
		flags  int
	}{
		{"/dev/stdout, > FILE", "/dev/stdout", os.O_WRONLY | os.O_CREATE | os.O_TRUNC},
		{"/dev/stdout, >> FILE", "/dev/stdout", os.O_WRONLY | os.O_CREATE | os.O_APPEND},
		{"FILE itself, > FILE", "", os.O_WRONLY | os.O_CREATE | os.O_TRUNC},
	} {
		path := filepath.Join(c.dir, strings.NewReplacer("/", "_", " ", "_", ",", "", ">", "gt").Replace(tc.name)+".ndjson")
		output := tc.output
		if output == "" {
			output = path
		}
		out, err := os.OpenFile(path, tc.flags, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "--json", "export", "--output", output)
		cmd.Dir = c.dir
		cmd.Env = cleanEnv()
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = out, &stderr
		err = cmd.Run()
		cancel()
		out.Close()
		if err != nil {
			t.Fatalf("%s: export --json --output %s: %v\n%s", tc.name, output, err, stderr.String())
		}
		got := jsonLines(t, readFileT(t, path))
		if len(got) != 7 {
			t.Fatalf("%s: the file holds %d lines, want the 7 events:\n%s", tc.name, len(got), readFileT(t, path))
		}
		for i, e := range got {
			if e["id"] == nil || e["type"] != "course.generation.requested" || e["file"] != nil {
				t.Fatalf("%s: line %d of the file is no exported event: %v", tc.name, i+1, e)
			}
		}
	}
}
