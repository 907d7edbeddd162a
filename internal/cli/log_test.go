package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

const requestedV2 = `{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}`

func requested() string { return fmt.Sprintf(requestedV2, uuid.New()) }

// envelope is one NDJSON line for append --file and import.
func envelope(stream, typ string, schema int, payload string) string {
	return fmt.Sprintf(`{"id":"%s","type":"%s","stream":"%s","source":"test","payload":%s,"meta":{"schema_version":%d,"tenant_id":"acme"}}`,
		uuid.New(), typ, stream, payload, schema)
}

func (c *cli) count(args ...string) int {
	c.t.Helper()
	r := c.must(0, append([]string{"read", "--json"}, args...)...)
	return len(jsonLines(c.t, r.stdout))
}

func TestAppendOnePrintsWhereItWasStored(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.must(0, "append", "--json", "--stream", "course-1", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())
	got := jsonLines(t, r.stdout)
	if len(got) != 1 {
		t.Fatalf("want one JSON object, got %s", r)
	}
	for _, k := range []string{"stream", "version", "position", "id"} {
		if _, ok := got[0][k]; !ok {
			t.Fatalf("--json output lacks %q: %s", k, r.stdout)
		}
	}
	if got[0]["stream"] != "course-1" || got[0]["version"] != float64(1) {
		t.Fatalf("stored at %v", got[0])
	}
	// --data @file and -, an explicit id, and the default schema version.
	p := writeFile(t, c.dir, "payload.json", requested())
	c.must(0, "append", "--stream", "course-1", "--type", "course.generation.requested", "--tenant", "acme", "--data", "@"+p, "--expected-version", "1")
	c.stdin = requested()
	id := uuid.NewString()
	r = c.must(0, "append", "--stream", "course-1", "--type", "course.generation.requested", "--tenant", "acme", "--data", "-", "--id", id, "--expected-version", "exists")
	if !strings.Contains(r.stdout, "version 3") || !strings.Contains(r.stdout, id) {
		t.Fatalf("human output: %s", r)
	}
	// Retrying with the same id and content is idempotent.
	c.must(0, "append", "--stream", "course-1", "--type", "course.generation.requested", "--tenant", "acme", "--data", "-", "--id", id)
	if n := c.count("course-1"); n != 3 {
		t.Fatalf("stream has %d events, want 3", n)
	}
	events := jsonLines(t, c.must(0, "read", "course-1", "--json").stdout)
	if meta := events[0]["meta"].(map[string]any); meta["schema_version"] != float64(2) {
		t.Fatalf("default schema version = %v, want the newest (2)", meta["schema_version"])
	}
}

func TestAppendRefusalsWriteNothing(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	base := []string{"append", "--stream", "s1", "--type", "course.generation.requested", "--tenant", "acme"}
	cases := []struct {
		name    string
		args    []string
		code    int
		pointer string
	}{
		{"payload breaks its schema", []string{"--data", `{"course_id":"` + uuid.NewString() + `","topic":"Go","attempt":1,"language":"English"}`}, 3, "/payload/language"},
		{"missing tenant", []string{"--tenant", "", "--data", requested()}, 3, "/meta/tenant_id"},
		{"malformed JSON", []string{"--data", `{"course_id":`}, 3, ""},
		{"payload not an object", []string{"--data", `[1,2]`}, 3, ""},
		{"unknown schema version", []string{"--schema-version", "9", "--data", requested()}, 3, ""},
		{"bad expected version", []string{"--expected-version", "-5", "--data", requested()}, 2, ""},
		{"bad id", []string{"--id", "nope", "--data", requested()}, 2, ""},
		{"no data", nil, 2, ""},
	}
	for _, tc := range cases {
		r := c.run(append(append([]string{}, base...), tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%s: want exit %d, got %s", tc.name, tc.code, r)
			continue
		}
		if tc.pointer != "" && !strings.Contains(r.stderr, tc.pointer) {
			t.Errorf("%s: error does not name %s: %s", tc.name, tc.pointer, r)
		}
		if tc.code == 3 && !strings.Contains(r.stderr, "nothing was written") {
			t.Errorf("%s: %s", tc.name, r)
		}
	}
	r := c.run("append", "--json", "--stream", "s1", "--type", "no.such.type", "--tenant", "acme", "--data", `{}`)
	if r.code != 3 || !strings.Contains(r.stderr, `"kind":"validation"`) || !strings.Contains(r.stderr, `"rule":`) {
		t.Fatalf("unknown type with --json: %s", r)
	}
	if r := c.run("read", "s1"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("refused appends wrote something: %s", r)
	}

	// A concurrency conflict: exit 4, the stream unchanged.
	c.must(0, append(base, "--data", requested())...)
	r = c.run(append(base, "--data", requested(), "--expected-version", "no-stream")...)
	if r.code != 4 || !strings.Contains(r.stderr, "actual 1") {
		t.Fatalf("want exit 4 naming the actual version, got %s", r)
	}
	r = c.run(append(base, "--json", "--data", requested(), "--expected-version", "7")...)
	if r.code != 4 || !strings.Contains(r.stderr, `"actual_version":1`) {
		t.Fatalf("--json conflict: %s", r)
	}
	if n := c.count("s1"); n != 1 {
		t.Fatalf("stream has %d events after conflicts, want 1", n)
	}
}

func TestAppendFileIsAtomicAndNamesTheLine(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	good := strings.Join([]string{
		envelope("a", "course.generation.requested", 2, requested()),
		envelope("b", "course.generation.requested", 2, requested()),
		envelope("a", "course.generation.requested", 1, fmt.Sprintf(`{"course_id":"%s","topic":"Go","attempt":2}`, uuid.New())),
		"",
	}, "\n")
	p := writeFile(t, c.dir, "good.ndjson", good)
	r := c.must(0, "append", "--file", p, "--json")
	lines := jsonLines(t, r.stdout)
	if len(lines) != 2 || lines[0]["stream"] != "a" || lines[0]["version"] != float64(2) || lines[1]["stream"] != "b" {
		t.Fatalf("per-stream results: %s", r)
	}
	// Appending the same file again writes nothing: ids are idempotent.
	c.must(0, "append", "--file", p)
	if n := c.count("--all"); n != 3 {
		t.Fatalf("log has %d events, want 3", n)
	}

	bad := strings.Join([]string{
		envelope("c", "course.generation.requested", 2, requested()),
		envelope("d", "course.generation.requested", 2, requested()),
		envelope("c", "course.generation.requested", 2, `{"course_id":"not-a-uuid","topic":"Go","attempt":1,"language":"en"}`),
	}, "\n")
	r = c.run("append", "--file", writeFile(t, c.dir, "bad.ndjson", bad))
	if r.code != 3 || !strings.Contains(r.stderr, "bad.ndjson:3:") || !strings.Contains(r.stderr, "/payload/course_id") {
		t.Fatalf("want exit 3 naming line 3, got %s", r)
	}
	r = c.run("append", "--file", writeFile(t, c.dir, "garbage.ndjson", envelope("e", "course.generation.requested", 2, requested())+"\nnot json\n"))
	if r.code != 3 || !strings.Contains(r.stderr, ":2:") {
		t.Fatalf("malformed line: want exit 3 naming line 2, got %s", r)
	}
	r = c.run("append", "--file", writeFile(t, c.dir, "extra.ndjson", `{"type":"course.generation.requested","stream":"f","surprise":1}`+"\n"))
	if r.code != 3 || !strings.Contains(r.stderr, ":1:") {
		t.Fatalf("unknown envelope key: want exit 3 naming line 1, got %s", r)
	}
	if n := c.count("--all"); n != 3 {
		t.Fatalf("refused files wrote events: log has %d, want 3", n)
	}
	// A conflict on the first stream writes nothing.
	r = c.run("append", "--file", writeFile(t, c.dir, "conflict.ndjson", envelope("a", "course.generation.requested", 2, requested())+"\n"), "--expected-version", "no-stream")
	if r.code != 4 || !strings.Contains(r.stderr, ":1:") {
		t.Fatalf("conflict: want exit 4 naming line 1, got %s", r)
	}
	if n := c.count("--all"); n != 3 {
		t.Fatalf("log has %d events, want 3", n)
	}
	if r := c.run("append", "--file", filepath.Join(c.dir, "missing.ndjson")); r.code != 2 {
		t.Fatalf("missing file: want exit 2, got %s", r)
	}
}

func TestReadStreamAndAll(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	var lines []string
	for i := range 5 {
		lines = append(lines, envelope(fmt.Sprintf("s%d", i%2), "course.generation.requested", 2, requested()))
	}
	lines = append(lines, envelope("s0", "course.generation.failed", 1, fmt.Sprintf(`{"course_id":"%s","stage":"outlining","reason":"timeout","attempt":1}`, uuid.New())))
	c.must(0, "append", "--file", writeFile(t, c.dir, "e.ndjson", strings.Join(lines, "\n")))

	if n := c.count("s0"); n != 4 {
		t.Fatalf("s0 has %d events, want 4", n)
	}
	got := jsonLines(t, c.must(0, "read", "s0", "--from", "2", "--limit", "2", "--json").stdout)
	if len(got) != 2 || got[0]["version"] != float64(2) || got[1]["version"] != float64(3) {
		t.Fatalf("read s0 --from 2 --limit 2: %v", got)
	}
	all := jsonLines(t, c.must(0, "read", "--all", "--json").stdout)
	if len(all) != 6 {
		t.Fatalf("read --all: %d events, want 6", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i]["position"].(float64) <= all[i-1]["position"].(float64) {
			t.Fatalf("read --all out of order at %d", i)
		}
	}
	got = jsonLines(t, c.must(0, "read", "--all", "--from", "3", "--limit", "2", "--json").stdout)
	if len(got) != 2 || got[0]["position"] != float64(3) {
		t.Fatalf("read --all --from 3 --limit 2: %v", got)
	}
	got = jsonLines(t, c.must(0, "read", "--all", "--type", "course.generation.failed", "--json").stdout)
	if len(got) != 1 {
		t.Fatalf("--type filter: %v", got)
	}
	if r := c.must(0, "read", "s1", "--payload"); !strings.Contains(r.stdout, "course.generation.requested") || !strings.Contains(r.stdout, "PAYLOAD") {
		t.Fatalf("table: %s", r)
	}
	for _, args := range [][]string{{"read"}, {"read", "s0", "--all"}, {"read", "s0", "--from", "zero"}, {"read", "--all", "--from", "x"}, {"read", "s0", "--limit", "-1"}} {
		if r := c.run(args...); r.code != 2 {
			t.Errorf("%v: want exit 2, got %s", args, r)
		}
	}
	if r := c.run("read", "nope"); r.code != 1 || !strings.Contains(r.stderr, `"nope" not found`) {
		t.Fatalf("missing stream: %s", r)
	}
}

func TestTailFollowsLiveWithAPattern(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "append", "--stream", "old", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "tail", "--type", "course.generation.*")
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Append until tail shows the matching event: tail starts at the head,
	// so events appended before it subscribed are not printed.
	deadline := time.After(30 * time.Second)
	var got string
	for got == "" {
		c.must(0, "append", "--stream", "new", "--type", "distribution.viewed", "--tenant", "acme", "--data", fmt.Sprintf(`{"distribution_id":"%s","course_id":"%s"}`, uuid.New(), uuid.New()))
		c.must(0, "append", "--stream", "new", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())
		select {
		case got = <-lines:
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatalf("tail printed nothing; stderr: %s", stderr.String())
		}
	}
	if !strings.Contains(got, `"type":"course.generation.requested"`) || !strings.Contains(got, `"stream":"new"`) {
		t.Fatalf("tail printed %s", got)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	for l := range lines {
		if strings.Contains(l, "distribution.viewed") {
			t.Fatalf("--type pattern let through %s", l)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail after Ctrl-C: %v; stderr: %s", err, stderr.String())
	}
}

func TestExportImportRoundTripIsIdempotent(t *testing.T) {
	t.Parallel()
	src, dst := newCLI(t), newCLI(t)
	var lines []string
	for i := range 30 {
		lines = append(lines, envelope(fmt.Sprintf("course-%d", i%4), "course.generation.requested", 2, requested()))
	}
	src.must(0, "append", "--file", writeFile(t, src.dir, "e.ndjson", strings.Join(lines, "\n")))
	out := filepath.Join(src.dir, "export.ndjson")
	src.must(0, "export", "--output", out)
	exported := readLines(t, out)
	if len(exported) != 30 {
		t.Fatalf("exported %d lines, want 30", len(exported))
	}
	// Resume: a second export appends only what is new, after dropping
	// the partial line an export killed mid-write leaves.
	fh, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(`{"id":"0000`)
	fh.Close()
	src.must(0, "append", "--stream", "course-0", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())
	src.must(0, "export", "--output", out)
	if got := readLines(t, out); len(got) != 31 || got[0] != exported[0] {
		t.Fatalf("resumed export has %d lines, want 31 with the first unchanged", len(got))
	}
	r := dst.must(0, "import", out, "--json")
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(31) || got["already_present"] != float64(0) {
		t.Fatalf("first import: %s", r)
	}
	r = dst.must(0, "import", out, "--json")
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(0) || got["already_present"] != float64(31) {
		t.Fatalf("second import wrote again: %s", r)
	}
	a := jsonLines(t, src.must(0, "read", "--all", "--json").stdout)
	b := jsonLines(t, dst.must(0, "read", "--all", "--json").stdout)
	if len(a) != len(b) {
		t.Fatalf("source %d events, target %d", len(a), len(b))
	}
	for i := range a {
		if a[i]["id"] != b[i]["id"] || a[i]["stream"] != b[i]["stream"] || a[i]["version"] != b[i]["version"] {
			t.Fatalf("event %d differs: %v vs %v", i, a[i], b[i])
		}
	}
	// stdout export equals the file.
	if got := strings.Split(strings.TrimSpace(src.must(0, "export").stdout), "\n"); len(got) != 31 {
		t.Fatalf("export to stdout: %d lines", len(got))
	}
	if got := strings.Split(strings.TrimSpace(src.must(0, "export", "--from", "5", "--to", "9").stdout), "\n"); len(got) != 5 {
		t.Fatalf("export --from 5 --to 9: %d lines, want 5", len(got))
	}
}

func TestImportRefusesBadFilesAndConflicts(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	bad := envelope("x", "course.generation.requested", 2, requested()) + "\n" +
		envelope("y", "course.generation.requested", 2, `{"course_id":"`+uuid.NewString()+`","topic":"","attempt":1,"language":"en"}`) + "\n"
	r := c.run("import", writeFile(t, c.dir, "bad.ndjson", bad))
	if r.code != 3 || !strings.Contains(r.stderr, "bad.ndjson:2:") || !strings.Contains(r.stderr, "/payload/topic") {
		t.Fatalf("want exit 3 naming line 2, got %s", r)
	}
	r = c.run("import", writeFile(t, c.dir, "nostream.ndjson", `{"type":"course.generation.requested","source":"t","payload":{},"meta":{"schema_version":2,"tenant_id":"a"}}`+"\n"))
	if r.code != 3 || !strings.Contains(r.stderr, "/stream") {
		t.Fatalf("line without stream: %s", r)
	}
	if r := c.run("import", writeFile(t, c.dir, "empty.ndjson", "\n")); r.code != 3 {
		t.Fatalf("empty file: %s", r)
	}
	if r := c.run("import", "--batch", "0", "x"); r.code != 2 {
		t.Fatalf("--batch 0: %s", r)
	}
	if r := c.run("read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("refused imports wrote: %s", r)
	}
	// The file's versions are kept: a stream that already has other
	// events is a conflict, not a silent renumbering.
	c.must(0, "append", "--stream", "x", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())
	exported := `{"id":"` + uuid.NewString() + `","type":"course.generation.requested","stream":"x","version":1,"source":"t","payload":` + requested() + `,"meta":{"schema_version":2,"tenant_id":"acme"}}`
	p := writeFile(t, c.dir, "conflict.ndjson", exported+"\n")
	if r := c.run("import", p); r.code != 4 {
		t.Fatalf("want exit 4, got %s", r)
	}
	c.must(0, "import", p, "--expected-versions", "any")
	if n := c.count("x"); n != 2 {
		t.Fatalf("x has %d events, want 2", n)
	}
}

// versioned is an export line: an envelope with its stream version.
func versioned(stream string, version int) string {
	return fmt.Sprintf(`{"id":"%s","type":"course.generation.requested","stream":"%s","version":%d,"source":"test","payload":%s,"meta":{"schema_version":2,"tenant_id":"acme"}}`,
		uuid.New(), stream, version, requested())
}

// TestImportRefusesANegativeVersion: a line whose version is negative is
// refused before anything is written, naming the line and /version. (It
// was read as "no version" and appended after what the stream held.)
func TestImportRefusesANegativeVersion(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	p := writeFile(t, c.dir, "negative.ndjson", versioned("n", 1)+"\n"+versioned("n", -1)+"\n")
	for _, args := range [][]string{{"import", p}, {"import", p, "--expected-versions", "any"}} {
		r := c.run(args...)
		if r.code != 3 || !strings.Contains(r.stderr, "negative.ndjson:2:") || !strings.Contains(r.stderr, "/version") {
			t.Fatalf("%v: want exit 3 naming line 2 and /version, got %s", args, r)
		}
	}
	if r := c.run("read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("a refused import wrote: %s", r)
	}
}

// TestImportOverAPartlyImportedHistory: an import whose runs overlap what
// an earlier import stored (here the first lines of the same file, in
// other batches) appends the overlapping run one event at a time, counts
// each stored event as present and each new one as written, and keeps the
// file's ids and versions.
func TestImportOverAPartlyImportedHistory(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	var lines []string
	for v := 1; v <= 6; v++ {
		lines = append(lines, versioned("p", v))
	}
	for v := 1; v <= 3; v++ {
		lines = append(lines, versioned("q", v))
	}
	part := writeFile(t, c.dir, "part.ndjson", strings.Join(lines[:4], "\n")+"\n")
	whole := writeFile(t, c.dir, "whole.ndjson", strings.Join(lines, "\n")+"\n")
	r := c.must(0, "import", part, "--batch", "3", "--json")
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(4) || got["already_present"] != float64(0) {
		t.Fatalf("first import: %s", r)
	}
	r = c.must(0, "import", whole, "--json")
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(5) || got["already_present"] != float64(4) {
		t.Fatalf("import over the first 4 events: %s", r)
	}
	stored := jsonLines(t, c.must(0, "read", "--all", "--json").stdout)
	if len(stored) != len(lines) {
		t.Fatalf("the log holds %d events, want %d", len(stored), len(lines))
	}
	for i, line := range lines {
		want := jsonLines(t, line)[0]
		if stored[i]["id"] != want["id"] || stored[i]["stream"] != want["stream"] || stored[i]["version"] != want["version"] {
			t.Fatalf("event %d: stored %v %v v%v, the file has %v %v v%v", i, stored[i]["id"], stored[i]["stream"], stored[i]["version"], want["id"], want["stream"], want["version"])
		}
	}
}

// TestImportRefusesAFileThatSkipsAVersion: keeping the file's versions
// means each event at its own version, not a run renumbered from its first
// one. The events before the gap are in, and the error names the line of
// the event after it.
func TestImportRefusesAFileThatSkipsAVersion(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	p := writeFile(t, c.dir, "gap.ndjson", versioned("g", 1)+"\n"+versioned("g", 2)+"\n"+versioned("g", 4)+"\n")
	r := c.run("import", p)
	if r.code != 4 || !strings.Contains(r.stderr, "gap.ndjson:3:") || !strings.Contains(r.stderr, "the 2 events before this line are imported") {
		t.Fatalf("want exit 4 naming line 3, got %s", r)
	}
	if n := c.count("g"); n != 2 {
		t.Fatalf("g has %d events, want the 2 before the gap", n)
	}
	r = c.must(0, "import", p, "--expected-versions", "any", "--json")
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(1) || got["already_present"] != float64(2) {
		t.Fatalf("import --expected-versions any: %s", r)
	}
	if n := c.count("g"); n != 3 {
		t.Fatalf("g has %d events, want 3", n)
	}
}

// TestImportResumesAfterCtrlC interrupts an import once its checkpoint
// exists, then runs it again: every event ends up stored exactly once.
func TestImportResumesAfterCtrlC(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const n = 1500
	p, stderr := interruptedImport(t, c, n)
	if !strings.Contains(stderr, "run the same command again to resume") {
		t.Fatalf("interrupted import: %s", stderr)
	}
	partial := c.count("--all")
	if partial == 0 || partial >= n {
		t.Fatalf("after the interruption the log has %d events; want some but not all %d", partial, n)
	}
	r := c.must(0, "import", p, "--json")
	if !strings.Contains(r.stderr, "resuming an interrupted import") {
		t.Fatalf("second run did not resume from the checkpoint: %s", r)
	}
	if got := c.count("--all"); got != n {
		t.Fatalf("after resuming the log has %d events, want %d", got, n)
	}
	checkSameEvents(t, "after resuming the log", c.logRows(), importedFrom(t, readFileT(t, p)))
	// The summary of the resumed run is of the whole import: every event
	// of the file is either written or already present. Before, the events
	// the interrupted run had imported were counted in neither.
	var sum struct {
		Events  int `json:"events"`
		Written int `json:"written"`
		Present int `json:"already_present"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, r)
	}
	if sum.Events != n || sum.Written+sum.Present != n {
		t.Fatalf("resumed import summary %+v: want %d events, written + already present = %d", sum, n, n)
	}
	if m, _ := filepath.Glob(filepath.Join(c.dir, ".eventstream", "checkpoints", "import-*.json")); len(m) != 0 {
		t.Fatalf("checkpoint left behind after a complete import: %v", m)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestTailAndExportRefuseBadInput(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, args := range [][]string{
		{"tail", "--type", "[abc"},
		{"tail", "--from", "x"},
		{"tail", "extra"},
		{"export", "--from", "9", "--to", "3"},
		{"export", "--to", "z"},
	} {
		if r := c.run(args...); r.code != 2 {
			t.Errorf("%v: want exit 2, got %s", args, r)
		}
	}
	// A file that is not an export is not silently extended.
	notExport := writeFile(t, c.dir, "notes.txt", "hello\n")
	if r := c.run("export", "--output", notExport); r.code != 2 || !strings.Contains(r.stderr, "--restart") {
		t.Fatalf("export onto a foreign file: %s", r)
	}
	if got := readLines(t, notExport); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("the foreign file changed: %v", got)
	}
	noNewline := writeFile(t, c.dir, "partial.txt", "no newline at all")
	c.must(2, "export", "--output", noNewline)
	if got := readLines(t, noNewline); got[0] != "no newline at all" {
		t.Fatalf("a file without a complete line was truncated: %v", got)
	}
}

// interruptedImport writes a file of n events, imports it one event per
// batch, and interrupts the import (SIGINT) once its checkpoint exists,
// which must end it with exit 130. It returns the file and the
// interrupted run's stderr.
func interruptedImport(t *testing.T, c *cli, n int) (path, stderr string) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(envelope(fmt.Sprintf("s-%d", i%7), "course.generation.requested", 2, requested()))
		b.WriteByte('\n')
	}
	path = writeFile(t, c.dir, "big.ndjson", b.String())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The checkpoint is kept under the working directory: the command
	// runs in the test's, as c.run does.
	bg := &background{exited: make(chan error, 1)}
	bg.cmd = exec.CommandContext(ctx, binary, "--database-url", c.url, "import", path, "--batch", "1")
	bg.cmd.Env, bg.cmd.Dir = cleanEnv(), c.dir
	bg.cmd.Stdout, bg.cmd.Stderr = &bg.stdout, &bg.stderr
	if err := bg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { bg.exited <- bg.cmd.Wait() }()
	cps := filepath.Join(c.dir, ".eventstream", "checkpoints")
	for {
		if m, _ := filepath.Glob(filepath.Join(cps, "import-*.json")); len(m) > 0 {
			break
		}
		select {
		case err := <-bg.exited:
			t.Fatalf("import ended (%v) before it checkpointed; stderr: %s", err, bg.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	if err, ok := (<-bg.exited).(*exec.ExitError); !ok || err.ExitCode() != 130 {
		t.Fatalf("interrupted import: %v; stderr: %s", err, bg.stderr.String())
	}
	return path, bg.stderr.String()
}
