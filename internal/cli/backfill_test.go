package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/syncbuf"
	"github.com/brainhq/eventstream/schemas"
)

// keepAppending appends course requests, batch events per append, one
// append after another (pause apart), as a live service would, until the
// returned stop is called (also at the end of the test). stop returns how
// many events it appended. The log must be migrated.
func (c *cli) keepAppending(batch int, pause time.Duration) (stop func() int64) {
	c.t.Helper()
	reg, err := schemas.Default()
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	store, err := postgres.Open(ctx, c.url, reg, postgres.Options{SkipMigrate: true})
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			evs := make([]eventstore.Event, batch)
			for j := range evs {
				evs[j] = eventstore.Event{ID: uuid.New(), Type: "course.generation.requested", Source: "test",
					Payload: json.RawMessage(requested()), Meta: eventstore.Meta{SchemaVersion: 2, TenantID: "acme"}}
			}
			if _, err := store.Append(ctx, fmt.Sprintf("course-live-%d", i%7), eventstore.Any, evs...); err != nil {
				if ctx.Err() == nil {
					c.t.Errorf("live append: %v", err)
				}
				return
			}
			n.Add(int64(batch))
			if pause > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}
	}()
	var once sync.Once
	stop = func() int64 {
		once.Do(func() {
			cancel()
			<-done
			store.Close()
		})
		return n.Load()
	}
	c.t.Cleanup(func() { stop() })
	// Wait for the first append: the log is growing from here on.
	for n.Load() == 0 {
		select {
		case <-done:
			c.t.Fatal("the live appender stopped before its first append")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stop
}

// head is the position of the last event in the log.
func (c *cli) head() int {
	c.t.Helper()
	return c.queryInt(`SELECT coalesce(max(position), 0) FROM events`)
}

// checkpoint is the committed position of the active generation of a
// projection, read from the database.
func (c *cli) checkpoint(projection string) int {
	c.t.Helper()
	return c.queryInt(`SELECT c.commit_position FROM projection_checkpoints c
		JOIN projection_state s ON s.projection = c.projection AND s.active_generation = c.generation
		WHERE c.projection = $1`, projection)
}

// background is the binary running in the background (cli.start).
type background struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer // read while the command still writes them
	exited         chan error     // cmd.Wait's result, once
}

// start runs the binary against the test's database in the background,
// until it exits or ctx ends.
func (c *cli) start(ctx context.Context, args ...string) *background {
	c.t.Helper()
	b := &background{exited: make(chan error, 1)}
	b.cmd = exec.CommandContext(ctx, binary, append([]string{"--database-url", c.url}, args...)...)
	b.cmd.Env = cleanEnv()
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	return b
}

// waitSaying waits until the command has written text to stderr. It fails
// the test if the command exits first (its failure names what, for the
// message) or ctx ends first.
func (b *background) waitSaying(ctx context.Context, t *testing.T, text, ended string) {
	t.Helper()
	for !strings.Contains(b.stderr.String(), text) {
		select {
		case err := <-b.exited:
			t.Fatalf("%s: %v\n%s\n%s", ended, err, b.stdout.String(), b.stderr.String())
		case <-ctx.Done():
			t.Fatalf("the command did not say %q:\n%s", text, b.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// backfillJSON is what backfill --json prints.
type backfillJSON struct {
	lagJSON
	StartHead int64 `json:"start_head"`
}

// settle runs backfill of a reaction projection again until its own
// appends no longer grow the log: each run stops at the head it read when
// it started, before the events its reactions appended meanwhile.
func (c *cli) settle(projection string) {
	c.t.Helper()
	for range 10 {
		var res backfillJSON
		r := c.must(0, "backfill", projection, "--json")
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			c.t.Fatalf("backfill --json: %v\n%s", err, r)
		}
		if res.Head == res.StartHead && res.Position == res.Head {
			return
		}
	}
	c.t.Fatalf("%s did not settle in 10 backfills", projection)
}

// runBounded runs the binary with args, killed after limit so that a
// command that should end on its own fails the test instead of hanging it.
func (c *cli) runBounded(limit time.Duration, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r := c.runIn(ctx, append([]string{"--database-url", c.url}, args...)...)
	if ctx.Err() != nil {
		c.t.Fatalf("eventstream %s did not end on its own within %s:\n%s", strings.Join(args, " "), limit, r)
	}
	return r
}

// TestBackfillStopsAtTheHeadItSawWhileTheLogGrows runs backfill while
// events keep being appended: it ends on its own, with the checkpoint at
// or past the head it read when it started, every event up to that head
// applied, and it says where it stopped and the head then. Below the
// append rate with --max-rate, a single catch-up pass would never reach
// the head, so backfill must stop at the start head within the pass.
func TestBackfillStopsAtTheHeadItSawWhileTheLogGrows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		batch int           // events per live append
		pause time.Duration // between live appends
		flags []string
	}{
		{name: "unlimited", batch: 5},
		// A batch is 1000 events: with a backlog above that, every page is
		// full and a catch-up pass never reads to the head.
		{name: "max-rate below the append rate", batch: 20, pause: 20 * time.Millisecond, flags: []string{"--max-rate", "300"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCLI(t)
			c.must(0, "migrate")
			c.appendMany(1500)
			stop := c.keepAppending(tc.batch, tc.pause)
			// A backfill that finds the log still is no test of this: on a
			// loaded machine the live appends can stall for the second an
			// unlimited backfill takes. Then it runs again, from its
			// checkpoint, with the appends going on.
			var res backfillJSON
			var r result
			for attempt := 1; ; attempt++ {
				before := c.head()
				r = c.runBounded(time.Minute, append([]string{"backfill", "audit", "--json"}, tc.flags...)...)
				after := c.head()
				if r.code != 0 {
					t.Fatalf("backfill under live appends: %s", r)
				}
				res = backfillJSON{}
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
					t.Fatalf("backfill --json: %v\n%s", err, r)
				}
				if start := int(res.StartHead); start < before || start > after {
					t.Fatalf("start head %d: want the head when backfill started, between %d and %d", start, before, after)
				}
				if res.Head > res.StartHead {
					break
				}
				if attempt == 3 {
					t.Fatalf("the log did not grow while backfill ran, %d times (head %d at the start and at the end)", attempt, res.Head)
				}
				t.Logf("the log did not grow while backfill ran (head %d); again", res.Head)
			}
			appended := stop()
			start := int(res.StartHead)
			if res.Position < res.StartHead || res.Head < res.Position {
				t.Fatalf("backfill ended at position %d, head %d, started with head %d: want start head <= position <= head", res.Position, res.Head, res.StartHead)
			}
			cp := c.checkpoint("audit")
			if cp < start {
				t.Fatalf("checkpoint %d after backfill: want at or past the start head %d", cp, start)
			}
			if cp < int(res.Position) {
				t.Fatalf("checkpoint %d is before the position %d backfill reported", cp, res.Position)
			}
			if n := c.queryInt(`SELECT count(*) FROM audit_events WHERE position <= $1`, start); n != start {
				t.Fatalf("audit_events has %d rows up to the start head %d, want %d", n, start, start)
			}
			if !strings.Contains(r.stderr, "backfill reached the head it read at the start") || !strings.Contains(r.stderr, fmt.Sprintf("start_head=%d", start)) {
				t.Fatalf("backfill did not log where it stopped and the heads:\n%s", r.stderr)
			}
			t.Logf("start head %d, stopped at %d (head %d then); %d events appended meanwhile", start, res.Position, res.Head, appended)
		})
	}
}

// TestBackfillFollowKeepsGoingUntilInterrupted: with --follow, backfill
// does not stop at the head it started with: it applies what is appended
// afterwards, until Ctrl-C, which ends it with exit 0 and the position it
// reached (the checkpoint in the database).
func TestBackfillFollowKeepsGoingUntilInterrupted(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	c.appendMany(100)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := c.start(ctx, "backfill", "audit", "--follow", "--json")
	cmd, stdout, stderr, exited := b.cmd, &b.stdout, &b.stderr, b.exited
	waitCheckpoint := func(at int) {
		t.Helper()
		for c.checkpoint("audit") < at {
			select {
			case err := <-exited:
				t.Fatalf("backfill --follow ended on its own: %v\n%s\n%s", err, stdout.String(), stderr.String())
			case <-ctx.Done():
				t.Fatalf("backfill --follow did not reach position %d:\n%s", at, stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// The head it starts with; then it is still running.
	waitCheckpoint(100)
	select {
	case err := <-exited:
		t.Fatalf("backfill --follow ended at the head it started with: %v\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(time.Second):
	}
	// Events appended afterwards are applied too, live.
	stop := c.keepAppending(5, 0)
	time.Sleep(time.Second)
	stop()
	end := c.head()
	waitCheckpoint(end)

	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := <-exited; err != nil {
		t.Fatalf("backfill --follow after Ctrl-C: want exit 0, got %v\n%s", err, stderr.String())
	}
	var res backfillJSON
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("backfill --follow --json: %v\n%s", err, stdout.String())
	}
	if res.StartHead != 100 || int(res.Position) != end || int(res.Head) != end {
		t.Fatalf("backfill --follow reported %+v, want start head 100, position and head %d", res, end)
	}
	if cp := c.checkpoint("audit"); cp != end {
		t.Fatalf("checkpoint %d, want %d", cp, end)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != end {
		t.Fatalf("audit_events has %d rows, want %d", n, end)
	}
	if !strings.Contains(stderr.String(), "backfill --follow stopped") {
		t.Fatalf("backfill --follow did not log where it stopped:\n%s", stderr.String())
	}
}

// TestBackfillOfAProjectionRunElsewhereStopsAtTheStartHead: while another
// process runs the projection live, behind the head, and events keep
// coming, backfill waits for that process's checkpoint to pass the head
// backfill read when it started, then ends on its own.
func TestBackfillOfAProjectionRunElsewhereStopsAtTheStartHead(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	c.appendMany(1000)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runner := exec.CommandContext(ctx, binary, "--database-url", c.url, "projections", "run", "audit")
	runner.Env = cleanEnv()
	var runLog syncbuf.Buffer
	runner.Stderr = &runLog
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = runner.Process.Signal(syscall.SIGTERM)
		_ = runner.Wait()
	}()
	for c.checkpoint("audit") < 1000 || !c.status()["audit"].Held {
		if ctx.Err() != nil {
			t.Fatalf("the runner never caught up:\n%s", runLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Keep the runner behind: stopped, it still holds the projection (its
	// connection, with the run lock, stays open) but applies nothing.
	if err := runner.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = runner.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	c.keepAppending(5, 0) // stopped at the end of the test
	before := c.head()

	bctx, bcancel := context.WithTimeout(ctx, time.Minute)
	defer bcancel()
	b := c.start(bctx, "backfill", "audit", "--json")
	stdout, stderr, exited := &b.stdout, &b.stderr, b.exited
	b.waitSaying(bctx, t, "another process runs this projection; waiting for its checkpoint to reach the head read at the start",
		"backfill ended while the process that runs the projection was behind")
	select {
	case err := <-exited:
		t.Fatalf("backfill ended while the process that runs the projection was behind: %v\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(time.Second):
	}
	if cp := c.checkpoint("audit"); cp != 1000 {
		t.Fatalf("the runner moved to %d while held back", cp)
	}
	resume()

	err := <-exited
	after := c.head()
	if bctx.Err() != nil {
		t.Fatalf("backfill did not end on its own once the other process passed its start head:\n%s\nthe runner's log:\n%s", stderr.String(), runLog.String())
	}
	if err != nil {
		t.Fatalf("backfill of a projection run elsewhere: %v\n%s", err, stderr.String())
	}
	var res backfillJSON
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("backfill --json: %v\n%s", err, stdout.String())
	}
	start := int(res.StartHead)
	if start < before || start > after {
		t.Fatalf("start head %d: want the head when backfill started, between %d and %d", start, before, after)
	}
	if res.Position < res.StartHead {
		t.Fatalf("backfill ended at position %d, before its start head %d", res.Position, res.StartHead)
	}
	if cp := c.checkpoint("audit"); cp < start {
		t.Fatalf("checkpoint %d: want at or past the start head %d", cp, start)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events WHERE position <= $1`, start); n != start {
		t.Fatalf("audit_events has %d rows up to the start head %d, want %d", n, start, start)
	}
	if res.Head <= res.StartHead {
		t.Fatalf("the log did not grow while backfill waited (head %d at the start and at the end)", res.Head)
	}
}

// ownDatabase creates a database of the test's own on the test server,
// dropped when the test ends, and returns its URL and name. Per-database
// counters (pg_stat_database) then count only what the test does.
func ownDatabase(t *testing.T) (dbURL, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := pgtest.BaseURL()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	name = "es_testdb_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create a database for the test (the test role needs CREATEDB): %v", err)
	}
	t.Cleanup(func() {
		// DROP DATABASE waits for a checkpoint; under a loaded CI machine
		// with many dirty buffers that took more than 30 s once.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// TestBackfillWaitingForAnotherProcessOpensNoConnections: while another
// process holds the projection's run lock, backfill waits by reading the
// checkpoint on its pool; it does not open a connection (to try the lock)
// at every poll. Once the lock is free it takes the projection over and
// ends at the head. The connections are counted by the server, in a
// database only this test uses (pg_stat_database.sessions).
func TestBackfillWaitingForAnotherProcessOpensNoConnections(t *testing.T) {
	t.Parallel()
	dbURL, db := ownDatabase(t)
	c := &cli{t: t, url: dbURL, dir: t.TempDir()}
	c.must(0, "migrate")
	c.appendMany(50)

	// Hold the run lock of audit as a runner in another process would.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release := holdRunLock(ctx, t, c.url, "audit")
	// The counter is read from another database, so that reading it
	// opens no session in the one counted.
	stats, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close(context.Background())
	sessions := func() int64 {
		t.Helper()
		var n int64
		if err := stats.QueryRow(ctx, `SELECT sessions FROM pg_stat_database WHERE datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	b := c.start(ctx, "backfill", "audit", "--json")
	stdout, stderr, exited := &b.stdout, &b.stderr, b.exited
	b.waitSaying(ctx, t, "another process runs this projection; waiting for its checkpoint to reach the head read at the start",
		"backfill ended while another process held the projection, behind the head")
	// A backend reports its session when it ends or, open, within a
	// second or so: let those of backfill's pool be counted first.
	time.Sleep(1500 * time.Millisecond)
	before := sessions()
	const window = 3 * time.Second
	select {
	case err := <-exited:
		t.Fatalf("backfill ended while another process held the projection, behind the head: %v\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(window):
	}
	// Each try of the lock is a session of its own (polling with one
	// every 100 ms opened some 25 here); backfill's pool may open a few.
	opened := sessions() - before
	if opened > 4 {
		t.Fatalf("backfill opened %d connections in %s while it waited for the process that holds the projection, want at most 4", opened, window)
	}
	t.Logf("backfill opened %d connections in %s while it waited", opened, window)

	release()
	if err := <-exited; err != nil {
		t.Fatalf("backfill after the lock was freed: %v\n%s", err, stderr.String())
	}
	var res backfillJSON
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("backfill --json: %v\n%s", err, stdout.String())
	}
	if res.Position != 50 || res.StartHead != 50 {
		t.Fatalf("backfill exited 0 but not at its start head 50: %+v", res)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 50 {
		t.Fatalf("audit_events has %d rows, want 50", n)
	}
}

// interruptedBackfill migrates, appends 1,500 events, starts a backfill
// of audit at rate events/s (paced within a page: slices of 0.1 s worth
// of events, each committed with its checkpoint, so at 100/s the 1,500
// take 15 s), runs meanwhile once the first slice is committed, then
// sends Ctrl-C and checks the exit 130: the backfill is then part way.
// It returns what the backfill wrote on stderr.
func (c *cli) interruptedBackfill(rate string, meanwhile func()) string {
	c.t.Helper()
	c.must(0, "migrate")
	c.appendMany(1500)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := c.start(ctx, "backfill", "audit", "--max-rate", rate)
	for c.queryInt(`SELECT coalesce(max(commit_position), 0) FROM projection_checkpoints WHERE projection = 'audit'`) == 0 {
		select {
		case err := <-b.exited:
			c.t.Fatalf("backfill ended before its first batch was committed: %v\n%s", err, b.stderr.String())
		case <-ctx.Done():
			c.t.Fatalf("the backfill never committed a batch: %s", b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	meanwhile()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	err := <-b.exited
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		c.t.Fatalf("interrupted backfill: want exit 130, got %v\n%s", err, b.stderr.String())
	}
	return b.stderr.String()
}

// TestBackfillInterruptedSaysHowFarItWas: Ctrl-C during a backfill names,
// beside the position it stopped at, the head it was going to (the one it
// read when it started, not the head the log has grown to since) and how
// many events were left to it.
func TestBackfillInterruptedSaysHowFarItWas(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// The head moves on from the one backfill started with.
	stderr := c.interruptedBackfill("100", func() { c.appendMany(100) })
	m := regexp.MustCompile(`backfill of audit interrupted at position (\d+); run the same command again to continue to position (\d+), the head when it started: (\d+) events remain`).
		FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("interrupted backfill did not say where it stopped, where it was going and how much was left:\n%s", stderr)
	}
	at, _ := strconv.Atoi(m[1])
	head, _ := strconv.Atoi(m[2])
	left, _ := strconv.Atoi(m[3])
	if cp := c.checkpoint("audit"); at != cp || at <= 0 || at >= 1500 {
		t.Fatalf("interrupted at position %d, checkpoint %d: want the checkpoint, after the first batch and before the end", at, cp)
	}
	if head != 1500 {
		t.Fatalf("interrupted on the way to position %d, want 1500, the head when it started (the log is at %d now)", head, c.head())
	}
	if left != head-at {
		t.Fatalf("%d events remain from position %d to %d, want %d", left, at, head, head-at)
	}
}

// TestBackfillResumedReportsOnlyItsOwnProgress: a backfill of a projection
// that has applied part of the log already reports progress (the plain
// lines of a run without a terminal; a terminal's bar counts the same)
// over what is left, not over the whole log: what earlier runs applied
// would count in its rate and ETA as done in no time. Its job names the
// position it started from.
func TestBackfillResumedReportsOnlyItsOwnProgress(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	c.appendMany(1000)
	c.must(0, "backfill", "audit")
	c.appendMany(1500)
	// At 1000 events/s the 1,500 take 1.5 s (paced in slices of 100):
	// progress lines come while it runs, not only at the end.
	c.env = []string{"EVENTSTREAM_PROGRESS_INTERVAL=100ms"}
	r := c.must(0, "backfill", "audit", "--max-rate", "1000")

	line := regexp.MustCompile(`msg="?(progress|backfill done)"? job="([^"]*)" events=(\d+) .*total=(\d+)`)
	var done int
	for _, l := range strings.Split(r.stderr, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		events, _ := strconv.Atoi(m[3])
		total, _ := strconv.Atoi(m[4])
		if total != 1500 || events > total {
			t.Fatalf("progress counts %d of %d events, want up to the 1500 this run had to apply:\n%s", events, total, l)
		}
		if m[2] != "backfill audit after position 1000" {
			t.Fatalf("progress of job %q, want it to name where this run started:\n%s", m[2], l)
		}
		if m[1] == "backfill done" {
			done = events
		}
	}
	if done != 1500 {
		t.Fatalf("backfill done after %d events, want the 1500 it applied:\n%s", done, r.stderr)
	}
	if cp := c.checkpoint("audit"); cp != 2500 {
		t.Fatalf("checkpoint %d, want 2500", cp)
	}
	checkSameEvents(t, "audit_events after the resumed backfill", c.auditRows(), c.logRows())
}

// TestReplayAndBackfillRefuseAMaxRateThatIsNoNumber: --max-rate NaN is
// no rate (it compares false with everything, so it ran unlimited, the
// opposite of what a limit asks for): refused as a bad value, exit 2,
// before anything runs.
func TestReplayAndBackfillRefuseAMaxRateThatIsNoNumber(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, cmd := range []string{"replay", "backfill"} {
		r := c.run(cmd, "audit", "--max-rate", "NaN")
		if r.code != 2 || !strings.Contains(r.stderr, "--max-rate") {
			t.Errorf("%s --max-rate NaN: want exit 2 naming --max-rate, got %s", cmd, r)
		}
	}
}
