package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestExportToStdoutRedirectedToAFileSaysHowToResume: an export with
// --output /dev/stdout > FILE that stops part way (the database lost)
// said "run the same command again to resume", and that command, > FILE
// again, empties FILE before export reads it back: what was exported is
// lost and the export starts over. The advice is to run it with >> in
// place of >, which resumes after FILE's last line: FILE then holds the
// log once, as a one-shot export writes it.
func TestExportToStdoutRedirectedToAFileSaysHowToResume(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	// A first page (1,000 events) that reaches FILE, then the page that
	// holds the event of the stream the proxy cuts on.
	c.appendMany(1000)
	late := func(stream string) {
		p := writeFile(t, c.dir, stream+".ndjson", envelope(stream, "course.generation.requested", 2, requested())+"\n")
		c.must(0, "append", "--file", p)
	}
	marker := "late-" + uuid.NewString()[:8]
	late(marker + "-a")
	late(marker + "-b")
	want := c.must(0, "export").stdout

	path := filepath.Join(c.dir, "events.ndjson")
	export := func(flags int) (string, int) {
		t.Helper()
		out, err := os.OpenFile(path, flags, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		r := c.runTo(out, "--database-url", proxied, "export", "--output", "/dev/stdout")
		return r.stderr, r.code
	}
	cut := cutAndRefuse(proxy, faultproxy.ToClient, marker+"-b")
	stderr, code := export(os.O_WRONLY | os.O_CREATE | os.O_TRUNC)
	if !cut.Load() || code != 75 {
		t.Fatalf("export -o /dev/stdout > FILE that lost the database: want exit 75, got %d (cut: %v)\n%s", code, cut.Load(), stderr)
	}
	if n := len(readLines(t, path)); n != 1000 {
		t.Fatalf("the interrupted export left %d lines, want the first page's 1000", n)
	}
	if !strings.Contains(stderr, ">>") {
		t.Fatalf("the interrupted export's advice does not say to append (>>): rerun with > empties FILE:\n%s", stderr)
	}
	heal(proxy)
	stderr, code = export(os.O_WRONLY | os.O_CREATE | os.O_APPEND)
	if code != 0 || !strings.Contains(stderr, "resuming the export") {
		t.Fatalf("export -o /dev/stdout >> FILE, as advised: want exit 0, resumed; got %d\n%s", code, stderr)
	}
	if got := readFileT(t, path); got != want {
		t.Fatalf("FILE after the advised rerun is not a one-shot export: %d lines, want %d", len(readLines(t, path)), len(strings.Split(strings.TrimSpace(want), "\n")))
	}
}
