package bench

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The raw ceiling's figure is half of every ratio: a raw row lost and
// another written twice (the count unchanged) must fail the run as a
// lost event of ours does.
func TestVerificationChecksTheRawIDs(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Rounds = 1
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `WITH gone AS (DELETE FROM raw_events WHERE position = (SELECT max(position) FROM raw_events) RETURNING 1)
			INSERT INTO raw_events SELECT * FROM raw_events WHERE position = 1 AND (SELECT count(*) FROM gone) = 1`)
		return err
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError on raw_events", err)
	}
	if ve.Table != "raw_events" || ve.Missing != 1 || ve.Duplicated != 1 || ve.Stored != 200 {
		t.Errorf("verify error: %+v", ve)
	}
	wantFailedRun(t, rep)
}

// Our projection commits its read model with the runtime's
// synchronous_commit (off by default: its checkpoint commits with it, and
// the log stays durable), so the raw consumer, which stands for it, must
// commit the same way: a WAL flush per raw page and none per ours would
// flatter replay's ratio and project's lag. The raw appends, like ours,
// stay durable.
func TestRawReadModelCommitsAsOursDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openSmall(t, "replay")
	show := func(p *pgxpool.Pool) string {
		t.Helper()
		var s string
		if err := p.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	consumer, err := r.consumerPool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(consumer), readModelCommit; got != want {
		t.Errorf("raw consumer commits with synchronous_commit %s, ours with %s", got, want)
	}
	writers, err := r.pool(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(writers), r.syncCommit; got != want {
		t.Errorf("raw writers commit with synchronous_commit %s, want the server's %s as our appends", got, want)
	}
}

// A connection that opens and closes within a phase (a rebuild's own)
// must count in the server CPU up to its last statement, not up to the
// meter's last tick: replay's rebuild runs on such a connection, and the
// raw consumer's stays open to the end, so missing it flatters ours.
func TestServerMeterCountsAConnectionClosedWithinThePhase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openSmall(t, "replay")
	p, err := r.tracedPool(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var burnt time.Duration
	tm, err := r.measured(ctx, p, "ours", func() (timed, error) {
		// As projections.Runtime.connect does: the pool's config, a name
		// of its own under the run's.
		cc := p.Config().ConnConfig.Copy()
		cc.RuntimeParams["application_name"] = r.app + ":burn"
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			return timed{}, err
		}
		defer conn.Close(ctx)
		var sum int64
		if err := conn.QueryRow(ctx, `SELECT sum(i) FROM generate_series(1, 400000) i`).Scan(&sum); err != nil {
			return timed{}, err
		}
		d, ok := processCPU(int(conn.PgConn().PID()))
		if !ok {
			t.Skip("the server's processes are not readable here")
		}
		burnt = d
		return timed{}, conn.Close(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if burnt < 20*time.Millisecond {
		t.Skipf("the backend burnt only %v: too little to tell", burnt)
	}
	// The backend is idle between its last statement and its close, so
	// a meter that saw that statement end has all of it.
	if tm.server < burnt {
		t.Errorf("server CPU %v, but the closed connection's backend alone burnt %v", tm.server, burnt)
	}
}

// project's claim that the read model holds every event once is checked:
// a row that goes missing from it fails the run.
func TestProjectVerificationFailsWhenTheReadModelLosesARow(t *testing.T) {
	t.Parallel()
	c := small("project")
	c.Duration, c.SkipRaw = 300*time.Millisecond, true
	var deleted uuid.UUID
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `DELETE FROM audit_events WHERE position = (SELECT max(position) FROM audit_events) RETURNING event_id`).Scan(&deleted)
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError on audit_events", err)
	}
	if ve.Table != "audit_events" || ve.Missing != 1 || len(ve.SampleMissing) != 1 || ve.SampleMissing[0] != deleted {
		t.Errorf("verify error: %+v (deleted %s)", ve, deleted)
	}
	wantFailedRun(t, rep)
}

// Opening connections is warm-up, not work: each side's connections are
// open before its clock first starts, or the raw side (one connection per
// writer) pays for 64 connections inside its first round, while our store
// (8) has opened most of its own before.
func TestConnectionsAreOpenBeforeTheClockStarts(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Rounds = 2
	c.Writers = 6
	seen := map[string]int32{}
	c.beforePhase = func(side string, pool *pgxpool.Pool) {
		seen[side] = pool.Stat().TotalConns()
	}
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := seen["raw-r1"]; got < int32(c.Writers) {
		t.Errorf("raw's first round started with %d connections open, want its %d writers'", got, c.Writers)
	}
	if got := seen["ours-r1"]; got < 8 {
		t.Errorf("our first round started with %d connections open, want the store pool's 8", got)
	}
}

// read's timed passes do the same work on both sides: each reads the whole
// log and nothing else. The check that our read path returns every claimed
// event (a set of ids built and looked up) is verification, not reading:
// inside our first timed pass it made ours look slower than it is. It runs
// in a pass of its own, outside every timed phase, and reads each claimed
// event there exactly once.
func TestReadChecksTheLogOutsideTheTimedPasses(t *testing.T) {
	t.Parallel()
	c := small("read")
	c.Rounds = 2
	var mu sync.Mutex
	checked := 0
	timedChecks := map[string]int{} // events the check took per timed phase
	windows := map[string]int{}
	c.beforePhase = func(side string, _ *pgxpool.Pool) {
		mu.Lock()
		defer mu.Unlock()
		windows[side]++
	}
	c.readChecked = func(window string, n int) {
		mu.Lock()
		defer mu.Unlock()
		checked += n
		if window != "" {
			timedChecks[window] += n
		}
	}
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	mu.Lock()
	defer mu.Unlock()
	for _, side := range []string{"ours-r1", "raw-r1", "ours-r2", "raw-r2"} {
		if windows[side] != 1 {
			t.Errorf("timed phases: %v, want each of ours and raw once per round", windows)
			break
		}
	}
	// Per pass, each side's timed phase takes the log's 2,000 events from
	// its read path, and ours nothing more.
	if len(timedChecks) != 0 {
		t.Errorf("the check took events inside timed phases: %v; ours must do per pass what raw does", timedChecks)
	}
	if checked != c.LogEvents {
		t.Errorf("the check read %d events through the store's read path, want each of the %d claimed once", checked, c.LogEvents)
	}
	if rep.Ours.Events == 0 || rep.Ours.Events%int64(c.LogEvents) != 0 || rep.Raw.Events%int64(c.LogEvents) != 0 {
		t.Errorf("timed passes not whole: ours %d, raw %d events", rep.Ours.Events, rep.Raw.Events)
	}
}

// read's check through the store's read path still fails the run, loudly
// and with the id, when an event is gone by the time it runs (after the
// SQL check of the load, so only the read path's check can see it).
func TestReadCheckFailsWhenAnEventIsMissing(t *testing.T) {
	t.Parallel()
	c := small("read")
	c.Rounds, c.SkipRaw = 1, true
	var deleted uuid.UUID
	c.beforeReadCheck = func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `DELETE FROM events WHERE position = (SELECT max(position) FROM events) RETURNING id`).Scan(&deleted)
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError from the ReadAll check", err)
	}
	if ve.Table != "ReadAll" || ve.Missing != 1 || ve.Claimed != int64(c.LogEvents) || ve.Stored != int64(c.LogEvents)-1 ||
		ve.Unexpected != 0 || ve.Duplicated != 0 || len(ve.SampleMissing) != 1 || ve.SampleMissing[0] != deleted {
		t.Errorf("verify error: %+v (deleted %s)", ve, deleted)
	}
	if !strings.Contains(err.Error(), deleted.String()) {
		t.Errorf("error does not name the missing id: %v", err)
	}
	if rep.Ours.Events == 0 {
		t.Error("the timed passes did not run before the check")
	}
	wantFailedRun(t, rep)
}

// A timed pass that reads fewer events than the log holds fails the run
// with a *VerifyError, the report keeping the figures so far, even when
// the parts after it never ran.
func TestReadPassFailsWhenAnEventGoesMissingBeforeIt(t *testing.T) {
	t.Parallel()
	c := small("read")
	c.Rounds = 1
	c.beforePhase = func(side string, pool *pgxpool.Pool) {
		if side == "ours" {
			if _, err := pool.Exec(context.Background(), `DELETE FROM events WHERE position = (SELECT max(position) FROM events)`); err != nil {
				t.Error(err)
			}
		}
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Table != "read pass" || ve.Missing != 1 || ve.Stored != int64(c.LogEvents)-1 {
		t.Fatalf("got %v, want a *VerifyError of the timed read pass", err)
	}
	if rep.Ours.Events != int64(c.LogEvents)-1 {
		t.Errorf("report of the failed pass: %d events, want %d", rep.Ours.Events, c.LogEvents-1)
	}
	wantFailedRun(t, rep)
}

// openSmall opens a run of the small preset of scenario, closed when the
// test ends.
func openSmall(t *testing.T, scenario string) *run {
	t.Helper()
	cfg, err := small(scenario).resolve()
	if err != nil {
		t.Fatal(err)
	}
	r, err := open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// An event the bench appended to one stream and that the log holds in
// another is not the event it claimed: the id is there once, positions and
// versions still run 1..n (a single-event stream moved to a new stream),
// and the run must fail all the same.
func TestVerificationFailsWhenAnEventIsInAnotherStream(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Rounds, c.SkipRaw = 1, true
	var moved uuid.UUID
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `UPDATE events SET stream = stream || '-elsewhere'
			WHERE position = (SELECT max(position) FROM events) RETURNING id`).Scan(&moved)
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError on events", err)
	}
	if ve.Table != "events" || ve.WrongStream != 1 || ve.Missing != 0 || ve.Stored != 200 {
		t.Errorf("verify error: %+v (moved %s)", ve, moved)
	}
	if !strings.Contains(err.Error(), "in another stream") {
		t.Errorf("error does not say what is wrong: %v", err)
	}
	wantFailedRun(t, rep)
}

// The server's CPU is that of PostgreSQL's processes only. A backend pid
// from pg_stat_activity names a process of this host only when the server
// shares its process namespace: under a container's, the same number is
// another process here (the bench itself, a daemon), whose CPU must not be
// reported as the server's.
func TestServerMeterCountsOnlyPostgresProcesses(t *testing.T) {
	t.Parallel()
	m := &serverMeter{start: map[int]time.Duration{}, latest: map[int]time.Duration{}}
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	self := os.Getpid()
	if d, ok := processCPU(self); !ok || d <= 0 {
		t.Fatalf("processCPU(self) = %v, %v (x=%d)", d, ok, x)
	}
	m.observe(self)
	if got := m.latest[self]; got != 0 {
		t.Errorf("the meter counted %v of this process (not PostgreSQL) as server CPU", got)
	}
}

// read's check through the store's read path fails the run when an event
// comes back from another stream than the one it was appended to.
func TestReadCheckFailsWhenAnEventIsInAnotherStream(t *testing.T) {
	t.Parallel()
	c := small("read")
	c.Rounds, c.SkipRaw = 1, true
	c.beforeReadCheck = func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `UPDATE events SET stream = stream || '-elsewhere' WHERE position = (SELECT max(position) FROM events)`)
		return err
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Table != "ReadAll" || ve.WrongStream != 1 || ve.Missing != 0 {
		t.Fatalf("got %v, want a *VerifyError from the ReadAll check with one event in another stream", err)
	}
	wantFailedRun(t, rep)
}

// The server's background processes are measured apart from the run's
// backends: the checkpointer's work for a phase's writes shows in
// ServerBackgroundCPUSec, and not in the backends' figure.
func TestServerMeterCountsTheBackgroundProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openSmall(t, "batch")
	p, err := r.tracedPool(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var checkpointer int
	if err := p.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`).Scan(&checkpointer); err != nil {
		t.Fatal(err)
	}
	before, ok := backendCPU(checkpointer)
	if !ok {
		t.Skip("the server's processes are not readable here")
	}
	var burnt time.Duration
	tm, err := r.measured(ctx, p, "ours", func() (timed, error) {
		// Dirty buffers for the checkpointer to write out.
		if _, err := p.Exec(ctx, `CREATE TABLE meter_bg AS SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 600000) i`); err != nil {
			return timed{}, err
		}
		if _, err := p.Exec(ctx, `CHECKPOINT`); err != nil {
			return timed{}, err
		}
		after, _ := backendCPU(checkpointer)
		burnt = after - before
		return timed{rec: newRecorder(time.Now())}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if burnt <= 0 {
		// /proc counts in 10 ms ticks.
		t.Skip("the checkpointer burnt less than a clock tick: nothing to tell")
	}
	if tm.serverBG < burnt {
		t.Errorf("background CPU %v, but the checkpointer alone burnt %v", tm.serverBG, burnt)
	}
	ph := phase(tm)
	if ph.ServerBackgroundCPUSec < burnt.Seconds()-0.001 {
		t.Errorf("Phase.ServerBackgroundCPUSec = %v, want at least %v", ph.ServerBackgroundCPUSec, burnt.Seconds())
	}
	// The backends' figure is the run's connections only: the checkpointer
	// is not in it twice.
	if tm.server <= 0 {
		t.Errorf("the backends' CPU is %v after a 600,000-row CREATE TABLE AS", tm.server)
	}
}

// project takes --exact-versions like hot, and its conflicts are retried
// the same way: its report must count them and say that the retried
// appends landed, as hot's does. It reported none, and the table said
// "conflicts 0 (rate 0.00%), every retried append landed: no" of a run
// whose appends conflicted and all landed.
func TestProjectWithExactVersionsReportsItsConflicts(t *testing.T) {
	t.Parallel()
	c := small("project")
	// Eight writers on one stream, each append to it a millisecond
	// apart: they conflict.
	c.Streams, c.ExactVersions, c.Writers, c.Rate, c.Duration, c.SkipRaw = 1, true, 8, 1000, 400*time.Millisecond, true
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RetriedLanded == nil || !*rep.RetriedLanded {
		t.Errorf("retried_landed %v, want true: the log check passed", rep.RetriedLanded)
	}
	if rep.Conflicts == 0 {
		t.Errorf("no conflicts reported of %d appends by %d writers to one stream with exact versions", rep.Ours.Ops, c.Writers)
	}
	// Each append is one attempt that landed plus one per conflict.
	if want := round(float64(rep.Conflicts)/float64(rep.Ours.Ops+rep.Conflicts), 4); rep.ConflictRate != want {
		t.Errorf("conflict rate %v of %d conflicts in %d appends, want %v", rep.ConflictRate, rep.Conflicts, rep.Ours.Ops, want)
	}
	var b strings.Builder
	if err := WriteTable(&b, []Report{rep}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "every retried append landed: yes") {
		t.Errorf("the table does not say the retried appends landed:\n%s", b.String())
	}
}
