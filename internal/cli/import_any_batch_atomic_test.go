package cli_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestImportAnyBatchRefusedWritesNothing: a batch of lines without
// versions (appended after what the stream holds, as with
// --expected-versions any) is appended whole or not at all, as a batch
// that keeps its versions is. The log holds, in another stream, an event
// with the id of the batch's third line: the import fails naming that
// line, and nothing of the batch is written. Before, the refusal sent the
// batch one event at a time: its first two lines were written, each
// alone.
func TestImportAnyBatchRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	taken := uuid.NewString()
	c.must(0, "append", "--file", writeFile(t, c.dir, "taken.ndjson", line(taken, "elsewhere", uuid.NewString())+"\n"))
	p := writeFile(t, c.dir, "batch.ndjson", strings.Join([]string{
		line(uuid.NewString(), "batch", uuid.NewString()),
		line(uuid.NewString(), "batch", uuid.NewString()),
		line(taken, "batch", uuid.NewString()),
	}, "\n")+"\n")
	r := c.run("import", p)
	if r.code == 0 || !strings.Contains(r.stderr, "batch.ndjson:3:") || !strings.Contains(r.stderr, taken) {
		t.Fatalf("import of a batch whose third id is taken: want a failure naming line 3 and the id, got %s", r)
	}
	if n := c.count("--all"); n != 1 {
		t.Fatalf("the refused batch left the log with %d events, want the 1 there before", n)
	}
}

// TestImportAnyBatchStoredInPartCompletesIt: a batch of lines without
// versions whose first line an earlier import stored is completed: the
// stored line is counted present, the rest written once, after it.
func TestImportAnyBatchStoredInPartCompletesIt(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	lines := []string{
		line(uuid.NewString(), "batch", uuid.NewString()),
		line(uuid.NewString(), "batch", uuid.NewString()),
		line(uuid.NewString(), "batch", uuid.NewString()),
	}
	c.must(0, "import", writeFile(t, c.dir, "head.ndjson", lines[0]+"\n"))
	r := c.must(0, "import", "--json", writeFile(t, c.dir, "batch.ndjson", strings.Join(lines, "\n")+"\n"))
	got := jsonLines(t, r.stdout)
	if len(got) != 1 || got[0]["written"] != float64(2) || got[0]["already_present"] != float64(1) {
		t.Fatalf("import of a batch whose first line is stored: want 2 written, 1 already present, got %s", r)
	}
	if n := c.count("batch"); n != 3 {
		t.Fatalf("stream batch holds %d events, want 3", n)
	}
}
