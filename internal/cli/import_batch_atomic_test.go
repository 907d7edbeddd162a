package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestImportRefusedBatchWritesNothingAndNamesItsLine: a batch (consecutive
// events of a stream, at their file versions) is appended whole or not at
// all. The log holds, in
// another stream, an event with the id of the batch's second line: the
// import fails naming that line, and nothing of the batch is written.
// Before, the refusal sent the batch one event at a time: its first line
// was written alone, and the error named the batch's first line.
func TestImportRefusedBatchWritesNothingAndNamesItsLine(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	taken := uuid.NewString()
	c.must(0, "append", "--file", writeFile(t, c.dir, "taken.ndjson", line(taken, "elsewhere", uuid.NewString())+"\n"))
	// As export writes them: with their stream versions.
	at := func(id string, version int) string {
		return strings.Replace(line(id, "batch", uuid.NewString()), `"stream":"batch"`, fmt.Sprintf(`"stream":"batch","version":%d`, version), 1)
	}
	p := writeFile(t, c.dir, "batch.ndjson", at(uuid.NewString(), 1)+"\n"+at(taken, 2)+"\n"+at(uuid.NewString(), 3)+"\n")
	r := c.run("import", p)
	if r.code == 0 || !strings.Contains(r.stderr, "batch.ndjson:2:") || !strings.Contains(r.stderr, taken) {
		t.Fatalf("import of a batch whose second id is taken: want a failure naming line 2 and the id, got %s", r)
	}
	if n := c.count("--all"); n != 1 {
		t.Fatalf("the refused batch left the log with %d events, want the 1 there before", n)
	}
}
