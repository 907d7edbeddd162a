package cli_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestLineErrorsNameNoBatchIndexInText: a refused line of append --file or
// import is named by its line, in the message as in the --json report's
// keys. The message said "event N" too, the event's index in the batch it
// was checked in: "event 1" from append --file for the second line of its
// stream, "event 0" from import for the same line, which checks each line
// alone. Neither names an event a user can find; the type, the pointer
// and the rule stay. A single append still says "event 0".
func TestLineErrorsNameNoBatchIndexInText(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	bad := strings.Replace(line(uuid.NewString(), "y", uuid.NewString()), `"language":"en"`, `"language":"english"`, 1)
	file := writeFile(t, c.dir, "bad.ndjson", strings.Join([]string{
		line(uuid.NewString(), "x", uuid.NewString()),
		line(uuid.NewString(), "y", uuid.NewString()),
		bad,
	}, "\n")+"\n")
	index := regexp.MustCompile(`event \d`)
	for _, args := range [][]string{{"append", "--file", file}, {"import", file}} {
		r := c.run(args...)
		if r.code != 3 || !strings.Contains(r.stderr, "bad.ndjson:3: ") || !strings.Contains(r.stderr, "(course.generation.requested v2): /payload/language: ") || !strings.Contains(r.stderr, "[pattern]") {
			t.Errorf("%v: want exit 3 naming line 3, the type, the pointer and the rule; got %s", args, r)
		}
		if m := index.FindString(r.stderr); m != "" {
			t.Errorf("%v: the message names %q beside line 3, an index in a batch: %s", args, m, r)
		}
		r = c.run(append(args, "--json")...)
		msg, _ := errorJSON(t, args[0], r)["error"].(string)
		if r.code != 3 || !strings.Contains(msg, "bad.ndjson:3: ") {
			t.Errorf("%v --json: want exit 3 and an error naming line 3; got %s", args, r)
		}
		if m := index.FindString(msg); m != "" {
			t.Errorf("%v --json: the error names %q beside line 3: %q", args, m, msg)
		}
	}
	r := c.run("append", "--stream", "x", "--type", "course.generation.requested", "--tenant", "acme",
		"--data", `{"course_id":"`+uuid.NewString()+`","topic":"Go","attempt":1,"language":"english"}`)
	if r.code != 3 || !strings.Contains(r.stderr, "event 0 (course.generation.requested v2)") {
		t.Errorf("a single append refused: want exit 3 naming event 0; got %s", r)
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("the refusals wrote events: %s", r)
	}
}
