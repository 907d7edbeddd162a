package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// line is an import line with a given id, stream and course id.
func line(id, stream, course string) string {
	return fmt.Sprintf(`{"id":"%s","type":"course.generation.requested","stream":"%s","source":"test","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"},"meta":{"schema_version":2,"tenant_id":"acme"}}`,
		id, stream, course)
}

// TestImportRefusesAFileWithAnIDTwice: an id is one event of the log, so a
// file that gives it to two lines cannot be imported. The refusal comes
// from the validation pass, names the second line and the first, exits 3
// and writes nothing; before, the lines before it were written and the
// import failed half way (exit 1 when the two lines were in different
// streams; exit 3 naming the wrong line, the first of its batch, when they
// were in one).
func TestImportRefusesAFileWithAnIDTwice(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	id := uuid.NewString()
	for name, lines := range map[string][]string{
		"streams.ndjson": {
			line(uuid.NewString(), "a", uuid.NewString()),
			line(id, "a", uuid.NewString()),
			line(id, "b", uuid.NewString()),
		},
		"batch.ndjson": {
			line(uuid.NewString(), "a", uuid.NewString()),
			line(id, "a", uuid.NewString()),
			line(id, "a", uuid.NewString()),
		},
	} {
		r := c.run("import", writeFile(t, c.dir, name, strings.Join(lines, "\n")+"\n"))
		if r.code != 3 || !strings.Contains(r.stderr, name+":3:") || !strings.Contains(r.stderr, "line 2") ||
			!strings.Contains(r.stderr, "/id") || !strings.Contains(r.stderr, "nothing was written") {
			t.Errorf("%s: want exit 3 naming lines 3 and 2, got %s", name, r)
		}
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("refused imports wrote: %s", r)
	}
}

// TestImportRefusesALineWithoutAnID: import is idempotent by event id and
// resumes by it, so a line without one would be written again by every
// run (and by a run resumed after an append cut off in flight). It is
// refused, naming the line; append --file takes such lines.
func TestImportRefusesALineWithoutAnID(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	noID := strings.Replace(line(uuid.Nil.String(), "n", uuid.NewString()), `"id":"`+uuid.Nil.String()+`",`, "", 1)
	p := writeFile(t, c.dir, "noid.ndjson", line(uuid.NewString(), "n", uuid.NewString())+"\n"+noID+"\n")
	for range 2 {
		r := c.run("import", p)
		if r.code != 3 || !strings.Contains(r.stderr, "noid.ndjson:2:") || !strings.Contains(r.stderr, "/id") {
			t.Fatalf("want exit 3 naming line 2, got %s", r)
		}
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("refused imports wrote: %s", r)
	}
	c.must(0, "append", "--file", p)
	if n := c.count("n"); n != 2 {
		t.Fatalf("append --file of the same lines: n has %d events, want 2", n)
	}
}
