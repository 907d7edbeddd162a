package cli_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// grownLine is one line of a file that append --file is run on twice.
type grownLine struct{ id, stream, course string }

func (l grownLine) String() string { return line(l.id, l.stream, l.course) }

func newGrownLine(stream string) grownLine {
	return grownLine{uuid.NewString(), stream, uuid.NewString()}
}

func ndjson(lines []grownLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String() + "\n")
	}
	return b.String()
}

// TestAppendFileGrownWritesOnlyItsNewLines: append --file run again on a
// file that has grown since (lines added to its streams, and a new
// stream) writes the new lines and counts the stored ones as already
// present. Before, a stream's batch held its stored lines and its new
// ones together, which the store refuses as a duplicate: exit 4, saying
// an id was stored "with different content", which was not so.
func TestAppendFileGrownWritesOnlyItsNewLines(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	first := []grownLine{newGrownLine("a"), newGrownLine("b"), newGrownLine("a"), newGrownLine("b"), newGrownLine("a")}
	p := writeFile(t, c.dir, "grown.ndjson", ndjson(first))
	c.must(0, "append", "--file", p)

	grown := append(slices.Clone(first), newGrownLine("b"), newGrownLine("c"), newGrownLine("a"), newGrownLine("c"), newGrownLine("a"))
	p = writeFile(t, c.dir, "grown.ndjson", ndjson(grown))
	r := c.must(0, "append", "--file", p, "--json")
	want := map[string][3]float64{"a": {5, 2, 3}, "b": {3, 1, 2}, "c": {2, 2, 0}} // events, written, already_present
	got := jsonLines(t, r.stdout)
	if len(got) != len(want) {
		t.Fatalf("want one object per stream (a, b, c), got %s", r)
	}
	for _, o := range got {
		w := want[o["stream"].(string)]
		if o["events"] != w[0] || o["written"] != w[1] || o["already_present"] != w[2] {
			t.Errorf("stream %v: events %v, written %v, already_present %v; want %v", o["stream"], o["events"], o["written"], o["already_present"], w)
		}
	}

	// Each event is stored once, each stream's in file order, and the new
	// ones after the stored ones.
	for _, s := range []string{"a", "b", "c"} {
		var wantIDs []string
		for _, l := range grown {
			if l.stream == s {
				wantIDs = append(wantIDs, l.id)
			}
		}
		var ids []string
		for i, e := range jsonLines(t, c.must(0, "read", s, "--json").stdout) {
			ids = append(ids, e["id"].(string))
			if e["version"] != float64(i+1) {
				t.Errorf("stream %s: event %d at version %v", s, i, e["version"])
			}
		}
		if !slices.Equal(ids, wantIDs) {
			t.Errorf("stream %s holds %v, want %v", s, ids, wantIDs)
		}
	}
	if n := c.count("--all"); n != len(grown) {
		t.Errorf("the log holds %d events, want %d", n, len(grown))
	}
	// And once more: nothing left to write.
	for _, o := range jsonLines(t, c.must(0, "append", "--file", p, "--json").stdout) {
		if o["written"] != 0.0 || o["already_present"] != o["events"] {
			t.Errorf("third run: stream %v wrote %v of %v", o["stream"], o["written"], o["events"])
		}
	}
}

// TestAppendFileGrownWithAChangedLineIsAConflict: a grown file one of whose
// stored lines was changed since is a conflict (exit 4) naming that line,
// its id stored with other content, and nothing of its stream is written.
func TestAppendFileGrownWithAChangedLineIsAConflict(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	first := []grownLine{newGrownLine("a"), newGrownLine("b"), newGrownLine("a"), newGrownLine("a")}
	p := writeFile(t, c.dir, "changed.ndjson", ndjson(first))
	c.must(0, "append", "--file", p)

	grown := append(slices.Clone(first), newGrownLine("a"), newGrownLine("b"))
	grown[2].course = uuid.NewString() // line 3, a's second: other content
	p = writeFile(t, c.dir, "changed.ndjson", ndjson(grown))
	r := c.run("append", "--file", p)
	if r.code != 4 || !strings.Contains(r.stderr, "changed.ndjson:3: ") || !strings.Contains(r.stderr, fmt.Sprintf("event id %s already stored", grown[2].id)) ||
		!strings.Contains(r.stderr, "different content") || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("want exit 4 naming line 3, its id stored with different content, nothing written; got %s", r)
	}
	rep := errorJSON(t, "append --file", c.run("append", "--file", p, "--json"))
	if rep["code"] != 4.0 || rep["kind"] != "duplicate" || rep["line"] != 3.0 || rep["id"] != grown[2].id {
		t.Errorf("--json: want code 4, kind duplicate, line 3, id %s; got %v", grown[2].id, rep)
	}
	if n := c.count("a"); n != 3 {
		t.Errorf("stream a holds %d events, want its 3 stored before", n)
	}
	if n := c.count("--all"); n != len(first) {
		t.Errorf("the log holds %d events, want the %d stored before", n, len(first))
	}
}

// TestAppendFileLineBeforeStoredOnesIsRefused: a line added before the
// stored lines of its stream cannot go in file order (the stored ones
// hold the versions it would come before): exit 4 naming the first stored
// line, which is not said to have other content, and nothing is written.
func TestAppendFileLineBeforeStoredOnesIsRefused(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	first := []grownLine{newGrownLine("a"), newGrownLine("a")}
	p := writeFile(t, c.dir, "inserted.ndjson", ndjson(first))
	c.must(0, "append", "--file", p)

	grown := append([]grownLine{newGrownLine("a")}, first...)
	p = writeFile(t, c.dir, "inserted.ndjson", ndjson(grown))
	r := c.run("append", "--file", p)
	if r.code != 4 || !strings.Contains(r.stderr, "inserted.ndjson:2: ") || !strings.Contains(r.stderr, "same content") ||
		strings.Contains(r.stderr, "different content") || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("want exit 4 naming line 2, stored with the same content, nothing written; got %s", r)
	}
	if n := c.count("--all"); n != len(first) {
		t.Errorf("the log holds %d events, want the %d stored before", n, len(first))
	}
}
