package cli_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestAppendFileJSONPrintsNoEmptyID: append --file --json prints one
// object per stream, and a stream of the file is one or many events, with
// no one id to print: the object had an "id" key all the same, always ""
// (the single append's output type, with the id left unset). Its keys are
// stream, events, written, already_present, version and
// position.
func TestAppendFileJSONPrintsNoEmptyID(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	p := writeFile(t, c.dir, "two.ndjson", strings.Join([]string{
		envelope("a", "course.generation.requested", 2, requested()),
		envelope("b", "course.generation.requested", 2, requested()),
		envelope("a", "course.generation.requested", 2, requested()),
	}, "\n")+"\n")
	got := jsonLines(t, c.must(0, "append", "--file", p, "--json").stdout)
	if len(got) != 2 {
		t.Fatalf("want one object per stream, got %v", got)
	}
	for i, want := range []map[string]any{
		{"stream": "a", "events": float64(2), "version": float64(2), "position": float64(2)},
		{"stream": "b", "events": float64(1), "version": float64(1), "position": float64(3)},
	} {
		if keys := slices.Sorted(maps.Keys(got[i])); !slices.Equal(keys, []string{"already_present", "events", "position", "stream", "version", "written"}) {
			t.Errorf("stream %s: keys %v, want already_present, events, position, stream, version, written (no id)", want["stream"], keys)
		}
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("stream %s: %s = %v, want %v", want["stream"], k, got[i][k], v)
			}
		}
	}
}
