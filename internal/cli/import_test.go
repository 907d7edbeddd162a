package cli_test

import (
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

// TestImportCtrlCDuringValidation: Ctrl-C while import validates a big
// file (before anything is written) ends it at once with exit 130, having
// written nothing; before, the whole file was validated first, every
// further Ctrl-C ignored too, minutes on a big file.
func TestImportCtrlCDuringValidation(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	var b strings.Builder
	for i := range 300_000 {
		b.WriteString(line(uuid.NewString(), fmt.Sprintf("s-%d", i%7), uuid.NewString()))
		b.WriteByte('\n')
	}
	p := writeFile(t, c.dir, "big.ndjson", b.String())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bg := c.startWithStdin(ctx, "import", p)
	bg.stdin.Close()
	waitOpened(t, bg.background, "big.ndjson") // validating it
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-bg.exited:
	case <-time.After(3 * time.Second):
		t.Fatalf("import still running 3s after Ctrl-C; stderr: %s", bg.stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(bg.stderr.String(), "nothing was written") {
		t.Fatalf("import interrupted while validating: %v; stderr: %s", err, bg.stderr.String())
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("an import interrupted while validating wrote: %s", r)
	}
}

// TestImportCtrlCWhileReadingStdin: import - reads stdin to its end before
// validating; Ctrl-C while stdin is still open ends it with exit 130.
func TestImportCtrlCWhileReadingStdin(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bg := c.startWithStdin(ctx, "import", "-")
	bg.stdin.Write([]byte(line(uuid.NewString(), "s", uuid.NewString()) + "\n"))
	waitOpened(t, bg.background, "eventstream-import-") // the spool of stdin
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-bg.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("import - still running 5s after Ctrl-C; stderr: %s", bg.stderr.String())
	}
	bg.stdin.Close()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("import - interrupted while reading stdin: %v; stderr: %s", err, bg.stderr.String())
	}
	if r := c.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("an import interrupted while reading stdin wrote: %s", r)
	}
}

// stdinBackground is the binary in the background with its stdin a pipe
// the test writes to.
type stdinBackground struct {
	*background
	stdin io.WriteCloser
}

// waitOpened waits until the process b runs has a file whose path
// contains name open: it is past its start-up (the signal handler is set
// at the start of main), so a Ctrl-C sent now tests the command, not a
// process that a loaded machine has not started yet (which dies of the
// signal). Without /proc it waits half a second.
func waitOpened(t *testing.T, b *background, name string) {
	t.Helper()
	waitFD(t, b, name, func(target string) bool { return strings.Contains(target, name) })
}

// waitFD waits until one of the open files of the process b runs has a
// target (as /proc/PID/fd reads it) that match accepts; what names it in
// the failure. Without /proc it waits half a second.
func waitFD(t *testing.T, b *background, what string, match func(target string) bool) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", b.cmd.Process.Pid)
	if _, err := os.Stat(dir); err != nil {
		time.Sleep(500 * time.Millisecond)
		return
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && match(target) {
				return
			}
		}
		select {
		case err := <-b.exited:
			t.Fatalf("the command exited (%v) before it opened %s; stderr: %s", err, what, b.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the command did not open %s within a minute; stderr: %s", what, b.stderr.String())
}

func (c *cli) startWithStdin(ctx context.Context, args ...string) stdinBackground {
	c.t.Helper()
	b := &background{exited: make(chan error, 1)}
	b.cmd = exec.CommandContext(ctx, binary, append([]string{"--database-url", c.url}, args...)...)
	b.cmd.Env = cleanEnv()
	b.cmd.Dir = c.dir
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	in, err := b.cmd.StdinPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	return stdinBackground{background: b, stdin: in}
}

// TestImportIgnoresAByteOrderMarkAtTheStart: a file saved with a UTF-8
// byte order mark (EF BB BF, as editors on Windows write it) imports
// exactly like the same file without one, from a file or from stdin;
// RFC 8259 lets a parser ignore it. Before, line 1 was refused with
// "unexpected character 'ï'". A mark anywhere else is still refused,
// naming its line, with exit 3 and nothing written.
func TestImportIgnoresAByteOrderMarkAtTheStart(t *testing.T) {
	t.Parallel()
	const bom = "\xEF\xBB\xBF"
	var lines []string
	for i := range 5 {
		lines = append(lines, line(uuid.NewString(), fmt.Sprintf("bom-%d", i%2), uuid.NewString()))
	}
	plain := strings.Join(lines, "\n") + "\n"
	type event struct{ id, stream, typ, payload string }
	events := func(c *cli) []event {
		t.Helper()
		var out []event
		for _, e := range jsonLines(t, c.must(0, "read", "--all", "--json").stdout) {
			p, _ := json.Marshal(e["payload"])
			out = append(out, event{fmt.Sprint(e["id"]), fmt.Sprint(e["stream"]), fmt.Sprint(e["type"]), string(p)})
		}
		return out
	}
	imported := func(r result) string {
		t.Helper()
		got := jsonLines(t, r.stdout)[0]
		return fmt.Sprintf("events=%v written=%v present=%v", got["events"], got["written"], got["already_present"])
	}

	ref := newCLI(t)
	want := imported(ref.must(0, "import", writeFile(t, ref.dir, "plain.ndjson", plain), "--json"))
	wantEvents := events(ref)
	if len(wantEvents) != 5 {
		t.Fatalf("the plain file imported %d events, want 5", len(wantEvents))
	}

	file := newCLI(t)
	r := file.run("import", writeFile(t, file.dir, "bom.ndjson", bom+plain), "--json")
	if r.code != 0 {
		t.Fatalf("import of the file with a BOM: %s", r)
	}
	if got := imported(r); got != want {
		t.Fatalf("import of the file with a BOM: %s, the plain file: %s", got, want)
	}
	if got := events(file); fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Fatalf("the file with a BOM imported\n%v\nthe plain file\n%v", got, wantEvents)
	}

	stdin := newCLI(t)
	stdin.stdin = bom + plain
	r = stdin.run("import", "-", "--json")
	if r.code != 0 {
		t.Fatalf("import - of input with a BOM: %s", r)
	}
	if got := imported(r); got != want {
		t.Fatalf("import - of input with a BOM: %s, the plain file: %s", got, want)
	}
	if got := events(stdin); fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Fatalf("stdin with a BOM imported\n%v\nthe plain file\n%v", got, wantEvents)
	}

	// Only at the very start: on line 2 the mark is refused, named.
	late := newCLI(t)
	r = late.run("import", writeFile(t, late.dir, "late.ndjson", lines[0]+"\n"+bom+lines[1]+"\n"))
	if r.code != 3 || !strings.Contains(r.stderr, "late.ndjson:2:") || !strings.Contains(r.stderr, "byte order mark") ||
		!strings.Contains(r.stderr, "nothing was written") {
		t.Fatalf("a BOM on line 2: want exit 3 naming line 2 and the mark, got %s", r)
	}
	if r := late.must(0, "read", "--all", "--json"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("the refused import wrote: %s", r)
	}
}

// TestAppendFileIgnoresAByteOrderMarkAtTheStart: append --file reads a
// file saved with a UTF-8 byte order mark as import does, like the same
// file without one; before, import took it and append --file refused line
// 1 with "unexpected character 'ï'". A mark on a later line is refused,
// named, with nothing written.
func TestAppendFileIgnoresAByteOrderMarkAtTheStart(t *testing.T) {
	t.Parallel()
	const bom = "\xEF\xBB\xBF"
	var lines []string
	for i := range 3 {
		lines = append(lines, envelope(fmt.Sprintf("bom-%d", i%2), "course.generation.requested", 2, requested()))
	}
	c := newCLI(t)
	c.must(0, "append", "--file", writeFile(t, c.dir, "bom.ndjson", bom+strings.Join(lines, "\n")+"\n"))
	if got := c.count("--all"); got != 3 {
		t.Fatalf("append --file of a file with a BOM wrote %d events, want 3", got)
	}

	late := newCLI(t)
	r := late.run("append", "--file", writeFile(t, late.dir, "late.ndjson", lines[0]+"\n"+bom+lines[1]+"\n"))
	if r.code != 3 || !strings.Contains(r.stderr, "late.ndjson:2:") || !strings.Contains(r.stderr, "byte order mark") {
		t.Fatalf("a BOM on line 2: want exit 3 naming line 2 and the mark, got %s", r)
	}
	if got := late.count("--all"); got != 0 {
		t.Fatalf("the refused append wrote %d events", got)
	}
}

// TestImportResumedReportsOnlyItsOwnProgress: an import resumed after
// Ctrl-C reports, as backfill and export do, the events this run has to
// write: its total is what the checkpoint left, and its rate is of its
// own work. Before, the events of the interrupted run counted as done at
// the first instant, which showed a rate far above the real one and an
// ETA far too short.
func TestImportResumedReportsOnlyItsOwnProgress(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const n = 600
	p, _ := interruptedImport(t, c, n)
	r := c.must(0, "import", p)
	if !strings.Contains(r.stderr, "resuming an interrupted import") {
		t.Fatalf("the second run did not resume: %s", r)
	}
	var events, total int
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, `msg="import done"`) {
			if _, err := fmt.Sscanf(l[strings.Index(l, " events="):], " events=%d", &events); err != nil {
				t.Fatalf("import done line %q: %v", l, err)
			}
			if _, err := fmt.Sscanf(l[strings.Index(l, " total="):], " total=%d", &total); err != nil {
				t.Fatalf("import done line %q: %v", l, err)
			}
		}
	}
	if events != total || total <= 0 || total >= n {
		t.Fatalf("resumed import reports events=%d total=%d; want both the events left after the checkpoint (fewer than %d): %s", events, total, n, r.stderr)
	}
	checkSameEvents(t, "after the resumed import the log", c.logRows(), importedFrom(t, readFileT(t, p)))
}

// TestImportFromAPipe: import reads its input twice (validates every line,
// then writes), which a pipe given as a path cannot give: import
// <(gunzip -c events.ndjson.gz) read it to the end to validate it, then
// found nothing left to write, and reported success with every event
// counted and none stored. It now reads such an input once, as it does
// stdin, and imports it.
func TestImportFromAPipe(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	var b strings.Builder
	for i := range 5 {
		b.WriteString(line(uuid.NewString(), fmt.Sprintf("pipe-%d", i%2), uuid.NewString()) + "\n")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString(b.String())
		w.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// As the shell runs import <(…): the pipe is a descriptor the
	// command inherits, named by its /dev/fd path.
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "import", "/dev/fd/3", "--json")
	cmd.Env, cmd.Dir = cleanEnv(), c.dir
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.Output()
	r.Close()
	if err != nil {
		t.Fatalf("import /dev/fd/3: %v\n%s", err, out)
	}
	if got := jsonLines(t, string(out))[0]; got["events"] != float64(5) || got["written"] != float64(5) {
		t.Fatalf("import from a pipe: %s", out)
	}
	if n := c.count("--all"); n != 5 {
		t.Fatalf("import from a pipe stored %d events, want 5", n)
	}
}
