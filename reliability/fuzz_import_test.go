package reliability_test

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/cli"
)

var importedLine = regexp.MustCompile(`^imported stdin: (\d+) events, (\d+) written, (\d+) already present`)

// FuzzImportNDJSON runs "eventstream --store memory import -" on fuzzed
// NDJSON: the command must end with success, a refusal (exit 3, naming
// the line) or a conflict (exit 4), never a crash or a failure; a success
// must account for every non-blank line.
func FuzzImportNDJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, ndjson []byte) {
		var out, errOut bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- cli.Main(context.Background(), []string{"--store", "memory", "--log-level", "error", "import", "-"},
				cli.IO{In: bytes.NewReader(ndjson), Out: &out, Err: &errOut})
		}()
		var code int
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			// The fuzzer only notices a hang at the test timeout; name it.
			buf := make([]byte, 1<<20)
			t.Fatalf("import hung for 10s on %q; goroutines:\n%s", ndjson, buf[:runtime.Stack(buf, true)])
		}
		stderr := errOut.String()
		if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
			t.Fatalf("import crashed: %s", stderr)
		}
		switch code {
		case cli.ExitOK:
			m := importedLine.FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("import succeeded without its summary: %q", out.String())
			}
			n, _ := strconv.Atoi(m[1])
			written, _ := strconv.Atoi(m[2])
			present, _ := strconv.Atoi(m[3])
			lines := 0
			for _, l := range bytes.Split(ndjson, []byte("\n")) {
				if len(bytes.TrimSpace(l)) > 0 {
					lines++
				}
			}
			if n != lines || written+present != n {
				t.Fatalf("import of %d lines reported %d events, %d written, %d present", lines, n, written, present)
			}
		case cli.ExitInvalid, cli.ExitConflict:
			if !strings.HasPrefix(stderr, "refused: stdin:") && !strings.HasPrefix(stderr, "conflict") {
				t.Fatalf("exit %d without naming the line: %q", code, stderr)
			}
		default:
			t.Fatalf("exit %d on input %q: %s", code, ndjson, stderr)
		}
	})
}
