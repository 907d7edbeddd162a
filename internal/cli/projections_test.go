package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/migrate"
)

// appendMany appends n course requests over a few streams.
func (c *cli) appendMany(n int) {
	c.t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(envelope(fmt.Sprintf("course-%d", i%5), "course.generation.requested", 2, requested()))
		b.WriteByte('\n')
	}
	c.must(0, "append", "--file", writeFile(c.t, c.dir, fmt.Sprintf("many-%d.ndjson", time.Now().UnixNano()), b.String()))
}

// query runs one SQL statement on the test's schema.
func (c *cli) queryInt(sql string, args ...any) int {
	c.t.Helper()
	conn, err := pgx.Connect(context.Background(), c.url)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

type lagJSON struct {
	Projection string `json:"projection"`
	Generation int    `json:"generation"`
	Position   int64  `json:"position"`
	Head       int64  `json:"head"`
	LagEvents  int64  `json:"lag_events"`
	Parked     int64  `json:"parked"`
	Held       bool   `json:"held"`
}

func (c *cli) status() map[string]lagJSON {
	c.t.Helper()
	var lags []lagJSON
	r := c.must(0, "projections", "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &lags); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, r)
	}
	out := map[string]lagJSON{}
	for _, l := range lags {
		out[l.Projection] = l
	}
	return out
}

func TestProjectionsListStatusRun(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	if r := c.must(0, "projections", "list"); !strings.Contains(r.stdout, "course_catalog") || !strings.Contains(r.stdout, "audit_events") {
		t.Fatalf("list: %s", r)
	}
	if r := c.run("projections", "status"); r.code != 1 || !strings.Contains(r.stderr, "eventstream migrate") {
		t.Fatalf("status before migrate: want a hint to migrate, got %s", r)
	}
	c.must(0, "migrate")
	c.appendMany(20)
	if st := c.status(); st["audit"].LagEvents != 20 || st["audit"].Head != 20 {
		t.Fatalf("status before run: %+v", st["audit"])
	}
	if r := c.must(0, "projections", "status"); !strings.Contains(r.stdout, "LAG(s)") || !strings.Contains(r.stdout, "PARKED") {
		t.Fatalf("status table: %s", r)
	}
	c.must(2, "projections", "run", "nope")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "projections", "run", "audit", "analytics")
	cmd.Env = cleanEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for {
		st := c.status()
		if st["audit"].LagEvents == 0 && st["analytics"].LagEvents == 0 {
			if st["catalog"].LagEvents != 20 {
				t.Fatalf("catalog ran though not named: %+v", st["catalog"])
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("projections did not catch up: %s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("projections run after SIGTERM: %v\n%s", err, stderr.String())
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 20 {
		t.Fatalf("audit_events has %d rows, want 20", n)
	}
}

func TestReplayRebuildsAndResumesAfterCtrlC(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(300)
	c.must(0, "backfill", "audit")
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 300 {
		t.Fatalf("audit_events has %d rows after backfill, want 300", n)
	}
	var res struct {
		Generation int   `json:"generation"`
		Previous   int   `json:"previous_generation"`
		Events     int64 `json:"events"`
	}
	r := c.must(0, "replay", "audit", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("replay --json: %v\n%s", err, r)
	}
	if res.Generation != 2 || res.Previous != 1 || res.Events != 300 {
		t.Fatalf("replay result %+v", res)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 300 {
		t.Fatalf("audit_events has %d rows after replay, want 300", n)
	}

	// Interrupt a slow replay, then resume it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "replay", "audit", "--max-rate", "150", "--batch", "10")
	cmd.Env = cleanEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for c.queryInt(`SELECT count(*) FROM projection_state WHERE projection = 'audit' AND building_generation IS NOT NULL`) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the rebuild never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "run the same command again to resume") {
		t.Fatalf("interrupted replay: %v\n%s", err, stderr.String())
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 300 {
		t.Fatalf("readers saw %d rows during the interrupted rebuild, want the old 300", n)
	}
	r = c.must(0, "replay", "audit")
	if !strings.Contains(r.stdout, "resumed") || !strings.Contains(r.stdout, "generation 3") {
		t.Fatalf("second replay did not resume: %s", r)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 300 {
		t.Fatalf("audit_events has %d rows after the resumed replay, want 300", n)
	}
	c.must(2, "replay", "nope")
	c.must(2, "replay", "audit", "--max-rate", "-1")
}

func TestBackfillFromAPosition(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(10)
	r := c.must(0, "backfill", "audit", "--json")
	if !strings.Contains(r.stdout, `"lag_events":0`) {
		t.Fatalf("backfill: %s", r)
	}
	// Damage a row before and a row after the position: reprocessing from
	// 4 rewrites 5 and leaves 2 as it is.
	if n := c.queryInt(`WITH u AS (UPDATE audit_events SET type = 'corrupted' WHERE position IN (2, 5) RETURNING 1) SELECT count(*) FROM u`); n != 2 {
		t.Fatalf("damaged %d rows, want 2", n)
	}
	c.must(0, "backfill", "audit", "--from", "4")
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 10 {
		t.Fatalf("audit_events has %d rows after reprocessing, want 10", n)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events WHERE position = 5 AND type = 'course.generation.requested'`); n != 1 {
		t.Fatal("the row at position 5 was not reprocessed")
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events WHERE position = 2 AND type = 'corrupted'`); n != 1 {
		t.Fatal("the row at position 2, before --from, was reprocessed")
	}
	r = c.run("backfill", "catalog", "--from", "4")
	if r.code != 1 || !strings.Contains(r.stderr, "eventstream replay catalog") {
		t.Fatalf("backfill of a projection without rewind: %s", r)
	}
	c.must(2, "backfill", "nope")
	c.must(2, "backfill", "audit", "--from", "x")
}

// TestBackfillInterruptedSaysWhereItStopped interrupts a slow backfill
// after its first committed batch: it exits 130 naming the position it
// reached (read although Ctrl-C cancelled the command's context), and
// running it again finishes.
func TestBackfillInterruptedSaysWhereItStopped(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	stderr := c.interruptedBackfill("300", func() {})
	m := regexp.MustCompile(`backfill of audit interrupted at position (\d+); run the same command again to continue`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("interrupted backfill did not say where it stopped:\n%s", stderr)
	}
	at, _ := strconv.Atoi(m[1])
	if at <= 0 || at >= 1500 {
		t.Fatalf("interrupted at position %d, want after the first batch and before the end", at)
	}
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != at {
		t.Fatalf("audit_events has %d rows, want the %d the reported position covers", n, at)
	}
	c.must(0, "backfill", "audit")
	if n := c.queryInt(`SELECT count(*) FROM audit_events`); n != 1500 {
		t.Fatalf("audit_events has %d rows after the second backfill, want 1500", n)
	}
}

// TestBackfillWaitsForTheProcessThatRunsIt: while another process holds
// the projection's run lock, backfill waits (it does not give up and call
// itself done); once the lock is free it catches up and exits 0 at the
// head.
func TestBackfillWaitsForTheProcessThatRunsIt(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	c.appendMany(50)

	// Hold the run lock of audit as a runner in another process would.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release := holdRunLock(ctx, t, c.url, "audit")

	b := c.start(ctx, "backfill", "audit", "--json")
	stdout, stderr, exited := &b.stdout, &b.stderr, b.exited
	// The lock is released once backfill says it waits for it, not after
	// a fixed time: under load the race-built binary can take longer than
	// any such time to reach the lock, find it free, and never wait.
	b.waitSaying(ctx, t, "another process runs this projection", "backfill ended while another process held the projection, behind the head")
	release()
	if err := <-exited; err != nil {
		t.Fatalf("backfill after the lock was freed: %v\n%s", err, stderr.String())
	}
	var lag lagJSON
	if err := json.Unmarshal([]byte(stdout.String()), &lag); err != nil {
		t.Fatalf("backfill --json: %v\n%s", err, stdout.String())
	}
	if lag.Position != 50 || lag.Head != 50 {
		t.Fatalf("backfill exited 0 but not at the head: %+v", lag)
	}
}

// TestDeadLetters parks a reaction that an invariant refuses (a course
// deployed before it completed), then fixes the cause and retries it.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	park := func() string {
		course := uuid.NewString()
		c.must(0, "append", "--stream", "course-"+course, "--type", "course.generation.completed", "--tenant", "acme",
			"--data", fmt.Sprintf(`{"course_id":"%s","title":"T","lesson_count":1,"attempt":1}`, course))
		return course
	}
	first := park()
	c.settle("reactions")
	r := c.must(0, "dlq", "list", "--json")
	parked := jsonLines(t, r.stdout)
	if len(parked) != 1 || parked[0]["projection"] != "reactions" || parked[0]["type"] != "distribution.created" {
		t.Fatalf("dlq list: %s", r)
	}
	id := fmt.Sprint(parked[0]["id"])
	if r := c.must(0, "dlq", "list"); !strings.Contains(r.stdout, "deploy-after-completion") {
		t.Fatalf("dlq list table: %s", r)
	}
	r = c.must(0, "dlq", "show", id, "--json")
	if !strings.Contains(r.stdout, `"event":{`) || !strings.Contains(r.stdout, "deploy-after-completion") {
		t.Fatalf("dlq show: %s", r)
	}
	if st := c.status(); st["reactions"].Parked != 1 {
		t.Fatalf("status parked = %d, want 1", st["reactions"].Parked)
	}

	// Retrying before the cause is fixed fails and keeps the entry.
	if r := c.run("dlq", "retry", id); r.code != 1 || !strings.Contains(r.stderr, "stays parked") {
		t.Fatalf("retry before the fix: %s", r)
	}
	// Fix: the course completes. The retry then deploys it, once.
	c.must(0, "append", "--stream", "course-"+first, "--type", "course.workflow.transitioned", "--tenant", "acme",
		"--data", fmt.Sprintf(`{"course_id":"%s","from":"review","to":"completed"}`, first))
	c.must(0, "dlq", "retry", id)
	if r := c.must(0, "dlq", "list"); !strings.Contains(r.stdout, "no parked events") {
		t.Fatalf("after a successful retry: %s", r)
	}
	deployed := jsonLines(t, c.must(0, "read", "course-"+first, "--json").stdout)
	if got := deployed[len(deployed)-2]["type"]; got != "course.deployed.staging" {
		t.Fatalf("the retried reaction did not deploy the course: last events %v", deployed[len(deployed)-2:])
	}
	c.must(2, "dlq", "retry", id)
	c.must(2, "dlq", "show", id)

	// Skip, and retry --all.
	park()
	park()
	c.settle("reactions")
	parked = jsonLines(t, c.must(0, "dlq", "list", "--projection", "reactions", "--json").stdout)
	if len(parked) != 2 {
		t.Fatalf("want 2 parked, got %v", parked)
	}
	c.must(0, "dlq", "skip", fmt.Sprint(parked[0]["id"]))
	c.must(2, "dlq", "skip", fmt.Sprint(parked[0]["id"]))
	r = c.run("dlq", "retry", "--all", "--json")
	if r.code != 1 || !strings.Contains(r.stdout, `"failed":1`) {
		t.Fatalf("retry --all with one still failing: %s", r)
	}
	for _, args := range [][]string{{"dlq", "retry"}, {"dlq", "retry", "1", "--all"}, {"dlq", "show", "x"}, {"dlq", "skip", "-3"}, {"dlq", "list", "--projection", "nope"}, {"dlq", "retry", "1", "--projection", "audit"}} {
		if r := c.run(args...); r.code != 2 {
			t.Errorf("%v: want exit 2, got %s", args, r)
		}
	}
}

// holdRunLock holds a projection's run lock, as a runner in another
// process would, on a connection of its own until release (or the test's
// end).
func holdRunLock(ctx context.Context, t *testing.T, url, projection string) (release func()) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	key := migrate.LockKey("projection-run/"+projection, schema)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReactionForAMissingAggregateIsParkedAtOnce: a distribution created
// for a course that does not exist (appended raw, as the API allows) asks
// the course to deploy; the course is not there, and handling the event
// again cannot change that, so the reactions park it after one attempt
// instead of retrying it MaxAttempts times first.
func TestReactionForAMissingAggregateIsParkedAtOnce(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	dist, course := uuid.NewString(), uuid.NewString()
	c.must(0, "append", "--stream", "distribution-"+dist, "--type", "distribution.created", "--tenant", "acme",
		"--data", fmt.Sprintf(`{"distribution_id":"%s","course_id":"%s","channel":"web","title":"T","version":"1.0.0"}`, dist, course))
	c.settle("reactions")
	parked := jsonLines(t, c.must(0, "dlq", "list", "--projection", "reactions", "--json").stdout)
	if len(parked) != 1 || parked[0]["type"] != "distribution.created" {
		t.Fatalf("dlq list: %v, want the distribution.created parked", parked)
	}
	if parked[0]["attempts"] != float64(1) {
		t.Fatalf("parked after %v attempts, want 1: %v", parked[0]["attempts"], parked[0])
	}
	if r := c.must(0, "dlq", "show", fmt.Sprint(parked[0]["id"])); !strings.Contains(r.stdout, "not found") {
		t.Fatalf("dlq show does not say the course was not found: %s", r)
	}
}

// TestReplayCancelRefusesTheRebuildsFlags: --cancel only drops an
// unfinished rebuild, so a rebuild's flag given with it (--restart,
// --keep-old, --max-rate, --batch) is refused (exit 2) rather than
// accepted and ignored; before, each exited 0 having done nothing of it.
func TestReplayCancelRefusesTheRebuildsFlags(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, f := range [][]string{{"--restart"}, {"--keep-old"}, {"--max-rate", "5"}, {"--batch", "10"}} {
		r := c.run(append([]string{"replay", "audit", "--cancel"}, f...)...)
		if r.code != 2 || !strings.Contains(r.stderr, f[0]+" does nothing with --cancel") {
			t.Fatalf("replay --cancel %v: want exit 2 naming the flag, got %s", f, r)
		}
	}
	c.must(0, "replay", "audit", "--cancel")
}

// TestProjectionsResumeSaysWhetherItWasStopped: projections resume says
// whether the projection was stopped ("resumed": false and "was not
// stopped" when it was running), as replay --cancel says whether there
// was a rebuild to drop. Before, it printed "resumed": true whatever it
// found, so a script (or an operator who named the wrong projection)
// could not tell a stopped projection started again from nothing done.
func TestProjectionsResumeSaysWhetherItWasStopped(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(0, "migrate")
	if r := c.must(0, "projections", "resume", "audit"); !strings.Contains(r.stdout, "audit was not stopped: nothing to resume") {
		t.Fatalf("resume of a running projection: %s", r)
	}
	if got := onlyJSON(t, "projections resume", c.must(0, "projections", "resume", "audit", "--json").stdout); got["resumed"] != false {
		t.Fatalf("resume --json of a running projection: %v, want resumed false", got)
	}
	stop := `WITH s AS (UPDATE projection_state SET stopped = true, last_error = 'boom' WHERE projection = 'audit' RETURNING 1) SELECT count(*) FROM s`
	if n := c.queryInt(stop); n != 1 {
		t.Fatalf("stopping audit updated %d rows", n)
	}
	if r := c.must(0, "projections", "resume", "audit"); !strings.Contains(r.stdout, "resumed audit") {
		t.Fatalf("resume of a stopped projection: %s", r)
	}
	if n := c.queryInt(`SELECT count(*) FROM projection_state WHERE projection = 'audit' AND (stopped OR last_error IS NOT NULL)`); n != 0 {
		t.Fatal("audit still stopped after resume")
	}
	c.queryInt(stop)
	if got := onlyJSON(t, "projections resume", c.must(0, "projections", "resume", "audit", "--json").stdout); got["resumed"] != true {
		t.Fatalf("resume --json of a stopped projection: %v, want resumed true", got)
	}
}
