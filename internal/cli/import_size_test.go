package cli_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// writeHeavyStream writes n lines of one stream whose events are each
// near the 1 MiB limit (a meta key of pad bytes), with versions 1..n when
// versioned: together they pass the 64 MiB one append may carry, while
// every line on its own is valid.
func writeHeavyStream(t *testing.T, dir, name, stream string, n, pad int, versioned bool) string {
	t.Helper()
	p := filepath.Join(dir, name)
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(fh)
	padding := strings.Repeat("x", pad)
	for i := range n {
		version := ""
		if versioned {
			version = fmt.Sprintf(`"version":%d,`, i+1)
		}
		fmt.Fprintf(w, `{"id":"%s","type":"course.generation.requested","stream":"%s",%s"source":"test","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"},"meta":{"schema_version":2,"tenant_id":"acme","pad":"%s"}}`+"\n",
			uuid.NewString(), stream, version, uuid.NewString(), padding)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportAndAppendFileOfAStreamPastOneAppendsBytes: a stream of valid
// events that together weigh more than one append may carry (64 MiB) is
// imported and appended whole, in several appends. Before, import
// --expected-versions any sent up to --batch events in one append, which
// the store refused (exit 3, "batch-bytes", naming the run's first line)
// after the validation pass had accepted every line; append --file
// refused the whole file the same way.
func TestImportAndAppendFileOfAStreamPastOneAppendsBytes(t *testing.T) {
	t.Parallel()
	const n, pad = 68, 1_000_000 // 68 MB of metas: past 64 MiB
	// The two commands are independent (each on a schema of its own) and
	// run side by side: one after the other they were the package's
	// longest test by far.
	heavy := func(t *testing.T) *cli {
		t.Parallel()
		c := newCLI(t)
		// Each run validates and writes 68 MB with the race detector on
		// (and, in CI, two schema checkers): about a minute on an idle
		// machine, past the usual 2-minute guard when CI's other tests
		// share the cores.
		c.limit = 10 * time.Minute
		return c
	}
	t.Run("import", func(t *testing.T) {
		c := heavy(t)
		p := writeHeavyStream(t, c.dir, "heavy.ndjson", "heavy", n, pad, false)
		r := c.run("import", "--expected-versions", "any", p)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d events, %d written", n, n)) {
			t.Fatalf("import --expected-versions any of %d events of 1 MB: want all written, got %s", n, r)
		}
		if got := c.queryInt(`SELECT count(*) FROM events WHERE stream = $1`, "heavy"); got != n {
			t.Fatalf("heavy has %d events, want %d", got, n)
		}
	})
	t.Run("append-file", func(t *testing.T) {
		c := heavy(t)
		q := writeHeavyStream(t, c.dir, "heavy2.ndjson", "heavy2", n, pad, false)
		if r := c.run("append", "--file", q); r.code != 0 {
			t.Fatalf("append --file of %d events of 1 MB: %s", n, r)
		}
		if got := c.queryInt(`SELECT count(*) FROM events WHERE stream = $1`, "heavy2"); got != n {
			t.Fatalf("heavy2 has %d events, want %d", got, n)
		}
	})
}
