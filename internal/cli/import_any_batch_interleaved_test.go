package cli_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestImportAnyBatchStoredAroundAnotherWritersEventCompletesIt: lines
// without versions that earlier imports stored in two appends, with
// another writer's event between them (the stream is live, and the
// earlier run used a smaller --batch), are found stored when a larger
// batch holds them all: the import is idempotent and writes only the new
// line. The refused batch was completed from its first stored run only:
// the rest, which starts with the second stored run, went as one append
// and was refused as a duplicate.
func TestImportAnyBatchStoredAroundAnotherWritersEventCompletesIt(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	lines := make([]string, 5)
	for i := range lines {
		lines[i] = line(uuid.NewString(), "batch", uuid.NewString())
	}
	c.must(0, "import", writeFile(t, c.dir, "first.ndjson", strings.Join(lines[:2], "\n")+"\n"))
	c.must(0, "append", "--file", writeFile(t, c.dir, "other.ndjson", line(uuid.NewString(), "batch", uuid.NewString())+"\n"))
	c.must(0, "import", writeFile(t, c.dir, "second.ndjson", strings.Join(lines[2:4], "\n")+"\n"))
	r := c.run("import", "--json", writeFile(t, c.dir, "all.ndjson", strings.Join(lines, "\n")+"\n"))
	got := jsonLines(t, r.stdout)
	if r.code != 0 || len(got) != 1 || got[0]["written"] != float64(1) || got[0]["already_present"] != float64(4) {
		t.Fatalf("import of a batch whose first four lines are stored around another event: want 1 written, 4 already present, got %s", r)
	}
	if n := c.count("batch"); n != 6 {
		t.Fatalf("stream batch holds %d events, want 6", n)
	}
}
