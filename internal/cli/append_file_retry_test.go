package cli_test

import (
	"strings"
	"testing"
)

// TestAppendFileAgainCountsWhatItWrote: append --file of a file whose
// events are all stored already (a retry after a lost reply) writes
// nothing, and says so: it printed the same table as the run that wrote
// them, each stream's lines counted as if appended again. Per stream it
// prints the events of the file, those written now, and those found
// already stored (--json: written, already_present).
func TestAppendFileAgainCountsWhatItWrote(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	first := []string{
		envelope("a", "course.generation.requested", 2, requested()),
		envelope("a", "course.generation.requested", 2, requested()),
		envelope("b", "course.generation.requested", 2, requested()),
	}
	p := writeFile(t, c.dir, "three.ndjson", strings.Join(first, "\n")+"\n")
	check := func(stdout string, want map[string][2]float64) {
		t.Helper()
		got := jsonLines(t, stdout)
		if len(got) != len(want) {
			t.Fatalf("want one object per stream, got %v", got)
		}
		for _, o := range got {
			w, ok := want[o["stream"].(string)]
			if !ok {
				t.Fatalf("unexpected stream in %v", o)
			}
			if o["written"] != w[0] || o["already_present"] != w[1] {
				t.Errorf("stream %s: written %v, already_present %v; want %v, %v", o["stream"], o["written"], o["already_present"], w[0], w[1])
			}
		}
	}
	check(c.must(0, "append", "--file", p, "--json").stdout, map[string][2]float64{"a": {2, 0}, "b": {1, 0}})
	check(c.must(0, "append", "--file", p, "--json").stdout, map[string][2]float64{"a": {0, 2}, "b": {0, 1}})
	if got := c.count("a"); got != 2 {
		t.Fatalf("stream a holds %d events after the retry, want 2", got)
	}
	r := c.must(0, "append", "--file", p)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.Contains(lines[0], "WRITTEN") ||
		strings.Fields(lines[1])[2] != "0" || strings.Fields(lines[2])[2] != "0" {
		t.Fatalf("append --file again: the table does not say 0 written per stream:\n%s", r)
	}
}
