package cli_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// TestExportToADeviceOrAPipe: --output may name something that is not a
// regular file (/dev/stdout piped into gzip, /dev/null for a dry run).
// There is nothing to resume there: the export writes the log and ends,
// instead of reading the device back first (a pipe never ends: the export
// hung, deaf to Ctrl-C) or failing to fsync it after writing everything.
func TestExportToADeviceOrAPipe(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(7)
	// The test's stdout is a pipe.
	r := c.runBounded(15*time.Second, "export", "--output", "/dev/stdout")
	if r.code != 0 {
		t.Fatalf("export --output /dev/stdout: %s", r)
	}
	if got := jsonLines(t, r.stdout); len(got) != 7 {
		t.Fatalf("export --output /dev/stdout wrote %d events, want 7: %s", len(got), r)
	}
	if strings.Contains(r.stderr, "resuming") {
		t.Fatalf("export resumed from a pipe: %s", r)
	}
	if r := c.runBounded(15*time.Second, "export", "--output", "/dev/null"); r.code != 0 {
		t.Fatalf("export --output /dev/null: %s", r)
	}
}

// TestExportCountsTheEventsItWrote: the progress an export reports (its
// last log line off a terminal) counts the events written, not those of
// the pages read: a page runs past --to, and a resumed export skips what
// the file already holds.
func TestExportCountsTheEventsItWrote(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(7)
	r := c.must(0, "export", "--from", "3", "--to", "4")
	if got := jsonLines(t, r.stdout); len(got) != 2 {
		t.Fatalf("export --from 3 --to 4: %d events, want 2", len(got))
	}
	if !strings.Contains(r.stderr, "events=2 ") {
		t.Fatalf("export --from 3 --to 4 reports another count: %s", r.stderr)
	}
	out := filepath.Join(c.dir, "e.ndjson")
	c.must(0, "export", "--to", "5", "--output", out)
	r = c.must(0, "export", "--output", out)
	if got := readLines(t, out); len(got) != 7 {
		t.Fatalf("resumed export: the file has %d lines, want 7", len(got))
	}
	if !strings.Contains(r.stderr, "events=2 ") || !strings.Contains(r.stderr, "total=2") {
		t.Fatalf("resumed export after 5 of 7 events reports another count: %s", r.stderr)
	}
	// A --to past the head: the total is what there is to write.
	if r := c.must(0, "export", "--from", "6", "--to", "18446744073709551615"); !strings.Contains(r.stderr, "events=2 ") || !strings.Contains(r.stderr, "total=2") {
		t.Fatalf("export --from 6 --to past the head reports another count: %s", r.stderr)
	}
}

// TestExportWithFromResumes: an export with --from and --output,
// interrupted, says "run the same command again to resume"; the rerun of
// the same command now does, after the file's last complete line, instead
// of truncating the file and writing the whole range again. It resumes
// only a file that holds the beginning of this very range (its first line
// is the range's first event, its last one is in the range): any other
// export in the file is started over, saying so. Each rerun gives the
// file a one-shot export of the range would, byte for byte. The progress
// line (events=N) shows what the rerun wrote.
func TestExportWithFromResumes(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(12)
	out := filepath.Join(c.dir, "part.ndjson")
	oneShot := func(args ...string) string {
		t.Helper()
		return c.must(0, append([]string{"export"}, args...)...).stdout
	}
	// prefix is the first n lines of an export, and the start of a line
	// cut off in flight, as an interrupted run leaves the file.
	prefix := func(export string, n int) {
		t.Helper()
		lines := strings.SplitAfter(export, "\n")
		if err := os.WriteFile(out, []byte(strings.Join(lines[:n], "")+`{"id":"0000`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rerun := func(want string, wantWritten int, resumed bool, args ...string) {
		t.Helper()
		r := c.must(0, append([]string{"export", "--output", out}, args...)...)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("export %v: the file differs from a one-shot export\ngot:\n%s\nwant:\n%s\n%s", args, got, want, r)
		}
		if !strings.Contains(r.stderr, fmt.Sprintf("events=%d ", wantWritten)) || wantWritten > 0 && !strings.Contains(r.stderr, fmt.Sprintf("total=%d", wantWritten)) {
			t.Fatalf("export %v wrote other than the %d missing events: %s", args, wantWritten, r.stderr)
		}
		if resumed != strings.Contains(r.stderr, "resuming the export") || resumed == strings.Contains(r.stderr, "starting the export over") {
			t.Fatalf("export %v: want resumed=%v, got %s", args, resumed, r.stderr)
		}
	}

	// --from and --to: 3 of the 7 events of 4..10 are in the file.
	bounded := oneShot("--from", "4", "--to", "10")
	prefix(bounded, 3)
	rerun(bounded, 4, true, "--from", "4", "--to", "10")
	// Run again on the complete file: nothing to write.
	rerun(bounded, 0, true, "--from", "4", "--to", "10")

	// --from alone: 5 of the 9 events from 4 to the head.
	open := oneShot("--from", "4")
	prefix(open, 5)
	rerun(open, 4, true, "--from", "4")

	// The file holds another range: it starts at 3, not 4.
	prefix(oneShot("--from", "3"), 3)
	rerun(bounded, 7, false, "--from", "4", "--to", "10")
	// It starts at 4 but runs past --to 10.
	prefix(open, 8)
	rerun(bounded, 7, false, "--from", "4", "--to", "10")
	// Without --from the range starts at the first event, not at 4.
	whole := oneShot()
	prefix(open, 2)
	rerun(whole, 12, false)

	// A file that is no export at all is refused with --from too (before,
	// --from overwrote it), as without: --restart overwrites it.
	if err := os.WriteFile(out, []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := c.run("export", "--from", "4", "--output", out); r.code != 2 || !strings.Contains(r.stderr, "--restart") {
		t.Fatalf("export --from onto a foreign file: %s", r)
	}
	if got, _ := os.ReadFile(out); string(got) != "notes\n" {
		t.Fatalf("the foreign file changed: %q", got)
	}
	c.must(0, "export", "--from", "4", "--output", out, "--restart")
	if got, _ := os.ReadFile(out); string(got) != open {
		t.Fatalf("export --restart: the file differs from a one-shot export:\n%s", got)
	}
}

// TestExportOfAnEventWithHTMLCharactersImports: export writes a payload's
// <, > and & as themselves. Before, encoding/json wrote each as a six-byte
// \u003c escape: a valid event of the log near the size limit became a
// line import refuses as too long (and the line was no longer the payload
// the store holds, byte for byte).
func TestExportOfAnEventWithHTMLCharactersImports(t *testing.T) {
	t.Parallel()
	src, dst := newCLI(t), newCLI(t)
	step := strings.Repeat("<a&b>", 24) // 120 bytes
	steps := make([]string, 6000)
	for i := range steps {
		steps[i] = fmt.Sprintf("%q", fmt.Sprintf("%s%04d", step, i))
	}
	payload := fmt.Sprintf(`{"ir_id":"ir-1","ir_sha256":"%s","steps":[{"step_id":"s1","action":"deploy","tier":2}],"max_tier":2,"escalated_steps":[%s]}`,
		strings.Repeat("0", 64), strings.Join(steps, ","))
	// A second event whose text holds a backslash before u003c: a
	// backslash escape followed by letters, not an escape of <.
	tricky := fmt.Sprintf(`{"id":"%s","type":"course.generation.requested","stream":"c-1","source":"test","payload":{"course_id":"%s","topic":"a\\u003c<&\\\u003e","attempt":1,"language":"en"},"meta":{"schema_version":2,"tenant_id":"acme","note":"\\u0026 & \u2028"}}`,
		uuid.NewString(), uuid.NewString())
	src.must(0, "append", "--file", writeFile(t, src.dir, "big.ndjson", envelope("ir-1", "ir.validated_escalate", 1, payload)+"\n"+tricky+"\n"))
	out := filepath.Join(src.dir, "e.ndjson")
	src.must(0, "export", "--output", out)
	exported, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(exported), step) {
		t.Fatalf("the export escapes the payload's characters: %.300s", exported)
	}
	if r := dst.run("import", out); r.code != 0 {
		t.Fatalf("import of the export: %.2000s", r)
	}
	if got, want := dst.must(0, "read", "ir-1", "--json").stdout, src.must(0, "read", "ir-1", "--json").stdout; jsonLines(t, got)[0]["payload"] == nil ||
		fmt.Sprint(jsonLines(t, got)[0]["payload"]) != fmt.Sprint(jsonLines(t, want)[0]["payload"]) {
		t.Fatal("the imported payload differs from the exported one")
	}
	got, want := jsonLines(t, dst.must(0, "read", "c-1", "--json").stdout)[0], jsonLines(t, src.must(0, "read", "c-1", "--json").stdout)[0]
	for _, k := range []string{"payload", "meta"} {
		if g, w := fmt.Sprint(got[k]), fmt.Sprint(want[k]); g != w || !strings.Contains(g, `\u003c<&\>`) && k == "payload" {
			t.Fatalf("the imported %s differs from the exported one:\n%s\n%s", k, g, w)
		}
	}
}

// TestExportResumesALargeFileWithoutReadingItAll: resuming an export reads
// the first and the last line of the file, not the whole file: before,
// the file was read into memory whole (and split into lines), so resuming
// the export of a large log, the case resuming is for, needed as much
// memory as the file is large.
func TestExportResumesALargeFileWithoutReadingItAll(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(3)
	lines := strings.SplitAfter(c.must(0, "export").stdout, "\n")
	// The first line of the range, filler (resuming looks only at the
	// first and the last line), and the line of position 2: a file an
	// interrupted export of a large log leaves, in size.
	const size = 128 << 20
	out := filepath.Join(c.dir, "big.ndjson")
	fh, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat(`{"filler":"`+strings.Repeat("x", 1000)+`"}`+"\n", 1024)
	fh.WriteString(lines[0])
	for written := 0; written < size; written += len(filler) {
		fh.WriteString(filler)
	}
	fh.WriteString(lines[1])
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	// The memory it takes to look at the file: the export reads it
	// before it connects, so with the database not answering (a stalled
	// proxy) it waits there, past that peak, to be measured. (The
	// rusage of a child is no measure: it counts the memory of the test
	// process it was forked from.)
	if _, err := os.Stat("/proc/self/status"); err == nil {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		proxy, err := faultproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		proxy.SetStall(true)
		u.Host = proxy.Addr()
		b := &background{cmd: exec.Command(binary, "--database-url", u.String(), "export", "--output", out), exited: make(chan error, 1)}
		b.cmd.Env = cleanEnv()
		b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
		if err := b.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { b.exited <- b.cmd.Wait() }()
		// Its socket open, it is connecting (the proxy's Open count is no
		// sign: a stalled proxy holds a new connection before counting it).
		waitSocket(t, b)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
		b.cmd.Process.Kill()
		<-b.exited
		if err != nil {
			t.Fatal(err)
		}
		var peak int64 // KiB
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				fmt.Sscanf(strings.TrimPrefix(l, "VmHWM:"), "%d", &peak)
			}
		}
		t.Logf("looking at a %d MiB file to resume its export took %d MiB of memory", size>>20, peak>>10)
		if peak == 0 || peak<<10 > size {
			t.Fatal("resuming the export took more memory than the file is large")
		}
	}

	r := c.must(0, "export", "--output", out)
	if !strings.Contains(r.stderr, "resuming the export") {
		t.Fatalf("the export did not resume: %s", r)
	}
	tail := make([]byte, 4096)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(tail, st.Size()-int64(len(tail))); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(tail), lines[1]+lines[2]) {
		t.Fatalf("the resumed export does not end with the events at 2 and 3: %q", tail[len(tail)-600:])
	}
}

// TestExportOfAnEventWithLineSeparatorsImports: export writes U+2028 and
// U+2029 (which encoding/json escapes for JavaScript) as the UTF-8 the
// store holds, as it does <, > and &: escaped, each took six bytes for
// three, and a valid event near the size limit made a line import refuses
// as too long. NDJSON lines end at \n alone, so the characters are safe
// in a line.
func TestExportOfAnEventWithLineSeparatorsImports(t *testing.T) {
	t.Parallel()
	src, dst := newCLI(t), newCLI(t)
	step := strings.Repeat("\u2028", 60) + strings.Repeat("\u2029", 60)
	steps := make([]string, 2500)
	for i := range steps {
		steps[i] = fmt.Sprintf(`"%s%04d"`, step, i)
	}
	payload := fmt.Sprintf(`{"ir_id":"ir-2","ir_sha256":"%s","steps":[{"step_id":"s1","action":"deploy","tier":2}],"max_tier":2,"escalated_steps":[%s]}`,
		strings.Repeat("0", 64), strings.Join(steps, ","))
	src.must(0, "append", "--file", writeFile(t, src.dir, "big.ndjson", envelope("ir-2", "ir.validated_escalate", 1, payload)+"\n"))
	out := filepath.Join(src.dir, "e.ndjson")
	src.must(0, "export", "--output", out)
	exported, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(exported), `\u2028`) || strings.Contains(string(exported), `\u2029`) || len(readLines(t, out)) != 1 {
		t.Fatalf("the export escapes the payload's line separators, or splits its line: %.300s", exported)
	}
	if r := dst.run("import", out); r.code != 0 {
		t.Fatalf("import of the export: %.2000s", r)
	}
	got, want := jsonLines(t, dst.must(0, "read", "ir-2", "--json").stdout)[0], jsonLines(t, src.must(0, "read", "ir-2", "--json").stdout)[0]
	if fmt.Sprint(got["payload"]) != fmt.Sprint(want["payload"]) {
		t.Fatal("the imported payload differs from the exported one")
	}
}
