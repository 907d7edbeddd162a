package cli_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// errorJSON decodes the --json error report on stderr, keeping every key.
func errorJSON(t *testing.T, what string, r result) map[string]any {
	t.Helper()
	var rep map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stderr)), &rep); err != nil {
		t.Fatalf("%s --json: the error report is not one JSON object: %v\n%s", what, err, r)
	}
	return rep
}

// TestIDStoredWithOtherContentIsAConflict: an event whose id is already
// stored with other content is a conflict with what is stored, as a wrong
// expected version is (the API answers 409 for both): exit 4, "conflict:
// … nothing was written", kind "duplicate" with the stream and id, from
// append, append --file and import alike, each naming the line of that id
// in a file. Before, each exited 1 (failure) with kind "failure", and
// append --file named no line. Nothing is written by any of them.
func TestIDStoredWithOtherContentIsAConflict(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	stored, course := uuid.NewString(), uuid.NewString()
	data := func(topic string) string {
		return fmt.Sprintf(`{"course_id":"%s","topic":"%s","attempt":1,"language":"en"}`, course, topic)
	}
	appendOne := []string{"append", "--stream", "course-1", "--type", "course.generation.requested", "--tenant", "acme", "--id", stored}
	c.must(0, append(appendOne, "--data", data("Go"))...)
	// The same content again is an idempotent retry, not a conflict.
	c.must(0, append(appendOne, "--data", data("Go"))...)

	r := c.run(append(appendOne, "--data", data("Rust"))...)
	if r.code != 4 || !strings.Contains(r.stderr, "conflict: ") || !strings.Contains(r.stderr, stored) || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("append of a stored id with other content: want exit 4, a conflict naming the id, nothing written; got %s", r)
	}
	checkDuplicate := func(what string, r result, line int) {
		t.Helper()
		rep := errorJSON(t, what, r)
		if r.code != 4 || rep["code"] != 4.0 || rep["kind"] != "duplicate" || rep["id"] != stored || rep["stream"] != "course-1" {
			t.Errorf("%s --json: want exit 4, code 4, kind duplicate, id %s, stream course-1; got %s", what, stored, r)
		}
		if got, _ := rep["line"].(float64); int(got) != line {
			t.Errorf("%s --json: line %v, want %d", what, rep["line"], line)
		}
	}
	checkDuplicate("append", c.run(append(appendOne, "--data", data("Rust"), "--json")...), 0)

	// A file whose second line reuses the id, in another stream, with other
	// content: refused at that line, the first line not written either.
	file := writeFile(t, c.dir, "reuse.ndjson", line(uuid.NewString(), "course-2", uuid.NewString())+"\n"+line(stored, "course-2", uuid.NewString())+"\n")
	for _, args := range [][]string{{"append", "--file", file}, {"import", file}} {
		what := strings.Join(args[:len(args)-1], " ")
		r := c.run(args...)
		if r.code != 4 || !strings.Contains(r.stderr, "conflict: ") || !strings.Contains(r.stderr, "nothing was written") {
			t.Errorf("%s of a file reusing a stored id: want exit 4, a conflict, nothing written; got %s", what, r)
		}
		checkDuplicate(what, c.run(append(args, "--json")...), 2)
	}

	all := jsonLines(t, c.must(0, "read", "--all", "--json").stdout)
	if len(all) != 1 || all[0]["id"] != stored || !strings.Contains(fmt.Sprint(all[0]["payload"]), "topic:Go") {
		t.Fatalf("the log after the refusals: want only the first event, as appended; got %v", all)
	}

	// append --file after an earlier stream of the file is appended: the
	// refusal names the reused id's line, 3, and says the refused stream
	// is not appended from its first line, 2, on; stream a stays appended.
	first := uuid.NewString()
	file = writeFile(t, c.dir, "later.ndjson", line(first, "a", uuid.NewString())+"\n"+line(uuid.NewString(), "b", uuid.NewString())+"\n"+line(stored, "b", uuid.NewString())+"\n")
	r = c.run("append", "--file", file, "--json")
	checkDuplicate("append --file after a stream", r, 3)
	if msg, _ := errorJSON(t, "append --file", r)["error"].(string); !strings.Contains(msg, "streams before b are appended; b from line 2 on is not") {
		t.Errorf("append --file refused in its second stream: the message does not say what is appended: %q", msg)
	}
	all = jsonLines(t, c.must(0, "read", "--all", "--json").stdout)
	if len(all) != 2 || all[1]["id"] != first || all[1]["stream"] != "a" {
		t.Fatalf("the log after a refusal in the file's second stream: want the first event and stream a's; got %v", all)
	}
}

// TestLineErrorsNameNoBatchIndex: a refused line of append --file or import
// is named by its line; the --json report gave "index" too, the event's
// index in the batch it was checked in (import checks each line alone:
// always 0; append --file, per stream: its place among its stream's
// lines), which named no event a user could find. A single append still
// gives its index (0, the event).
func TestLineErrorsNameNoBatchIndex(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	bad := strings.Replace(line(uuid.NewString(), "x", uuid.NewString()), `"language":"en"`, `"language":"english"`, 1)
	file := writeFile(t, c.dir, "bad.ndjson", strings.Join([]string{
		line(uuid.NewString(), "x", uuid.NewString()),
		line(uuid.NewString(), "y", uuid.NewString()),
		bad,
	}, "\n")+"\n")
	for _, args := range [][]string{{"append", "--file", file, "--json"}, {"import", file, "--json"}} {
		r := c.run(args...)
		rep := errorJSON(t, args[0], r)
		if r.code != 3 || rep["line"] != 3.0 || rep["pointer"] != "/payload/language" {
			t.Errorf("%v: want exit 3 naming line 3 and /payload/language; got %s", args, r)
		}
		if idx, ok := rep["index"]; ok {
			t.Errorf("%v: the report gives index %v beside line 3: an index in a batch, naming no event", args, idx)
		}
	}
	r := c.run("append", "--stream", "x", "--type", "course.generation.requested", "--tenant", "acme", "--json",
		"--data", fmt.Sprintf(`{"course_id":"%s","topic":"Go","attempt":1,"language":"english"}`, uuid.NewString()))
	if rep := errorJSON(t, "append", r); r.code != 3 || rep["index"] != 0.0 {
		t.Errorf("a single append refused: want exit 3 and index 0; got %s", r)
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("the refusals wrote events: %s", r)
	}
}

// TestUnknownNamesAreUsageErrors: a token name, a parked event id or an
// analyst role that names nothing is a usage error (exit 2, kind "usage"),
// as tenants revoke-analyst already said of a role: the argument is what
// is wrong, and running the command again will not help. tokens revoke
// and dlq show, retry and skip exited 1, the code of I/O and server
// errors.
func TestUnknownNamesAreUsageErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	for _, args := range [][]string{
		{"tokens", "revoke", "nobody"},
		{"dlq", "show", "999"},
		{"dlq", "retry", "999"},
		{"dlq", "skip", "999"},
		{"tenants", "revoke-analyst", "nobody"},
	} {
		what := strings.Join(args, " ")
		r := c.run(args...)
		if r.code != 2 || !strings.Contains(r.stderr, args[len(args)-1]) || !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("%s: want exit 2 naming %s; got %s", what, args[len(args)-1], r)
		}
		checkReport(t, what, c.run(append(args, "--json")...), 2, "usage")
	}
}

// TestEmptyListsInJSON: a list printed as one JSON array is [] when
// empty (tokens list printed null, which a reader iterating over it
// takes for an error or chokes on); a list printed as one object per line
// (dlq list) is no line at all.
func TestEmptyListsInJSON(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	if r := c.must(0, "tokens", "list", "--json"); r.stdout != "[]\n" {
		t.Errorf("tokens list --json with no tokens: want [], got %q", r.stdout)
	}
	if r := c.must(0, "tenants", "analysts", "--json"); r.stdout != "[]\n" {
		t.Errorf("tenants analysts --json with no analysts: want [], got %q", r.stdout)
	}
	if r := c.must(0, "dlq", "list", "--json"); r.stdout != "" {
		t.Errorf("dlq list --json with nothing parked: want no line, got %q", r.stdout)
	}
}
