package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/pgtest"
)

// binary is the eventstream command built once for the package's tests:
// the end-to-end tests run the real binary, as a user would.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	widenParallel()
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "^$" {
		os.Exit(m.Run()) // benchmarks only: no binary needed
	}
	dir, err := os.MkdirTemp("", "eventstream-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "eventstream")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/brainhq/eventstream/cmd/eventstream")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build eventstream:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// widenParallel runs up to 8 of the package's parallel tests at once
// unless -parallel was given. They are end-to-end runs of the binary that
// mostly wait (for PostgreSQL, for subprocesses, for signals, for
// servers to answer): with the default, GOMAXPROCS (2 on the CI machine),
// the package took 227 s with the cores 40% busy, and 114 s with 8.
func widenParallel() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", fmt.Sprint(max(8, runtime.GOMAXPROCS(0))))
	}
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the binary against one database schema.
type cli struct {
	t     *testing.T
	url   string
	dir   string
	env   []string
	stdin string
	// limit bounds each run of the binary [2m]: a guard against a hang,
	// which a test whose runs have much work to do widens.
	limit time.Duration
}

// newCLI gives the test a fresh schema and a working directory.
func newCLI(t *testing.T) *cli {
	t.Helper()
	u, _ := pgtest.Schema(t)
	return &cli{t: t, url: u, dir: t.TempDir()}
}

// run runs the binary with --database-url and args, and waits.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runIn(context.Background(), append([]string{"--database-url", c.url}, args...)...)
}

// runIn runs the binary with exactly args.
func (c *cli) runIn(ctx context.Context, args ...string) result {
	c.t.Helper()
	var out bytes.Buffer
	r := c.exec(ctx, &out, args)
	r.stdout = out.String()
	return r
}

// runTo runs the binary with exactly args and its stdout the file out, as
// the shell hands it FILE for > FILE or >> FILE; r.stdout is empty.
func (c *cli) runTo(out *os.File, args ...string) result {
	c.t.Helper()
	return c.exec(context.Background(), out, args)
}

// exec runs the binary with exactly args and stdout, and waits.
func (c *cli) exec(ctx context.Context, stdout io.Writer, args []string) result {
	c.t.Helper()
	limit := 2 * time.Minute
	if c.limit > 0 {
		limit = c.limit
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = c.dir
	cmd.Env = append(cleanEnv(), c.env...)
	cmd.Stdin = strings.NewReader(c.stdin)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run %v: %v", args, err)
	}
	r := result{stderr: errb.String(), code: code}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		c.t.Fatalf("eventstream %v crashed:\n%s", args, r)
	}
	return r
}

// cleanEnv drops variables that would point the binary elsewhere, and
// sets the race detector's exit sleep to 0 (raceOptions).
func cleanEnv() []string {
	var env []string
	race := ""
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "EVENTSTORE_URL=") || strings.HasPrefix(kv, "PG") {
			continue
		}
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			race = v
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GORACE="+raceOptions(race))
}

// raceOptions adds atexit_sleep_ms=0 to the GORACE options given, unless
// they set it. The binary is built with -race, whose runtime otherwise
// sleeps 1 s before every exit (to catch races of goroutines still
// running): the package's tests run the binary hundreds of times, and
// spent as many seconds waiting for nothing. Races are still reported
// (exit code 66 and "WARNING: DATA RACE"), up to the moment main returns.
func raceOptions(given string) string {
	if strings.Contains(given, "atexit_sleep_ms=") {
		return given
	}
	return strings.TrimSpace(given + " atexit_sleep_ms=0")
}

// must runs and fails the test unless the exit code is want.
func (c *cli) must(want int, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != want {
		c.t.Fatalf("eventstream %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// jsonLines decodes NDJSON output.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
