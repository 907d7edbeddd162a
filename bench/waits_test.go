package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/pgtest"
)

func TestWaitCountsAddUpAndBecomeShares(t *testing.T) {
	t.Parallel()
	a := &waitCounts{interval: 5 * time.Millisecond, samples: 4, held: 2,
		states: map[string]int64{"CPU": 4, "Lock:advisory": 2}, holder: map[string]int64{"CPU": 2}}
	b := &waitCounts{interval: 5 * time.Millisecond, samples: 6, held: 3,
		states: map[string]int64{"CPU": 2, "IO:WALSync": 3}, holder: map[string]int64{"IO:WALSync": 3}}
	w := a.add(b).waits()
	if w.Samples != 10 || w.IntervalMs != 5 {
		t.Fatalf("samples %d every %v ms, want 10 every 5", w.Samples, w.IntervalMs)
	}
	for k, want := range map[string]float64{"CPU": 0.6, "Lock:advisory": 0.2, "IO:WALSync": 0.3} {
		if got := w.Backends[k]; got != want {
			t.Errorf("backends %s: got %v, want %v", k, got, want)
		}
	}
	if w.LockHeld != 0.5 || w.Holder["CPU"] != 0.4 || w.Holder["IO:WALSync"] != 0.6 {
		t.Errorf("lock held %v, holder %v; want 0.5, CPU 0.4, IO:WALSync 0.6", w.LockHeld, w.Holder)
	}
	// Adding does not change its operands (rounds keep their own counts).
	if a.samples != 4 || a.states["CPU"] != 4 || a.holder["IO:WALSync"] != 0 {
		t.Errorf("add changed its receiver: %+v", a)
	}
	if (*waitCounts)(nil).add(nil).waits() != nil || (&waitCounts{}).waits() != nil {
		t.Error("no samples must give no Waits")
	}
	line := describeWaits("ours", w)
	for _, want := range []string{"ours waits", "10 samples every 5.00 ms", "CPU 0.60", "held 50% of the time", "IO:WALSync 60%"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

// The sampler reads the states of the run's own backends: one holds an
// advisory lock while it sleeps, another waits for that lock, and a
// backend of another application is not counted. The sleepers sleep until
// the sampler has been seen to take its samples (not for a fixed time): on
// a loaded machine a sampler can take far fewer than one sample per
// interval, and a fixed sleep could end before the sampling does.
func TestSampleWaitsSeesTheLockHolderAndItsWaiter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// application_name keeps 63 bytes: the run's own names are short.
	app := fmt.Sprintf("eventstream-bench-wt%x", time.Now().UnixNano())
	connect := func(name string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(pgtest.BaseURL())
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = name
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	holder, waiter, other := connect(app), connect(app+"-2"), connect("someone-else")
	probe := connect("probe")
	// The holder and the other application sleep until the sampling is
	// done, then are cancelled (an error they are expected to return).
	sleeping, wake := context.WithCancel(ctx)
	defer wake()
	key := time.Now().UnixNano()
	held := make(chan error, 1)
	go func() {
		_, err := holder.Exec(sleeping, `SELECT pg_advisory_xact_lock($1), pg_sleep(600)`, key)
		held <- err
	}()
	// The waiter queues behind the holder once the holder has the lock.
	waitFor(t, ctx, probe, "the holder to take the lock and sleep",
		`SELECT count(*) FROM pg_stat_activity a WHERE a.pid = $1 AND a.wait_event = 'PgSleep'
			AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)`,
		holder.PgConn().PID())
	waited := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
		waited <- err
	}()
	slept := make(chan error, 1)
	go func() {
		_, err := other.Exec(sleeping, `SELECT pg_sleep(600)`)
		slept <- err
	}()
	waitFor(t, ctx, probe, "the waiter to queue for the lock and the other application to sleep",
		`SELECT (count(*) = 2)::int FROM pg_stat_activity WHERE (pid = $1 AND wait_event_type = 'Lock') OR (pid = $2 AND wait_event = 'PgSleep')`,
		waiter.PgConn().PID(), other.PgConn().PID())

	// The sampler's own backends are named so that the probe can watch
	// them (not after app: the sampler leaves its own backend out anyway).
	sampler := "sampler-" + app
	pool, err := pgxpool.New(ctx, pgtest.BaseURL()+"&application_name="+sampler)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stop := sampleWaits(ctx, pool, app, 5*time.Millisecond)
	watchSamples(t, ctx, probe, sampler, nil, 10)
	w := stop().waits()
	wake()
	for name, ch := range map[string]chan error{"holder": held, "other application": slept} {
		if err := <-ch; err == nil {
			t.Fatalf("the %s's sleep was not cancelled", name)
		}
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if w == nil || w.Samples < 10 {
		t.Fatalf("too few samples: %+v", w)
	}
	if w.LockHeld < 0.9 || w.Holder["Timeout:PgSleep"] < 0.9 {
		t.Errorf("lock held %v, holder %v; want nearly always, sleeping", w.LockHeld, w.Holder)
	}
	if got := w.Backends["Lock:advisory"]; got < 0.9 || got > 1 {
		t.Errorf("backends waiting for the lock: %v, want about 1", got)
	}
	// The other application's sleeper is not ours: only the holder sleeps.
	if got := w.Backends["Timeout:PgSleep"]; got > 1 {
		t.Errorf("backends sleeping: %v, want at most 1 (another application's counted)", got)
	}
}

// waitFor polls query (a count) on probe until it is at least 1.
func waitFor(t *testing.T, ctx context.Context, probe *pgx.Conn, what, query string, args ...any) {
	t.Helper()
	for {
		var n int
		if err := probe.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchSamples waits until the sampler has surely finished n samples on
// its backends (those named sampler, but for the pids in skip). Each
// sample is a statement of its own, whose start pg_stat_activity shows;
// but one sample can show more than one start (its Parse on a new
// connection, and the extended protocol's messages after it, which can
// each set query_start anew), and the last start seen may be of a sample
// still in flight. Counting at most two starts a sample and one more for
// a Parse, it waits for 2n+3 distinct starts: at least n+1 samples begun,
// n of them finished. (Waiting for n+1 starts, a CI run saw 11 starts and
// 9 samples, and runs under load 12 starts and 8.)
// Polled faster than the sampler's interval, it may still miss some on a
// loaded machine: it then waits for more.
func watchSamples(t *testing.T, ctx context.Context, probe *pgx.Conn, sampler string, skip []uint32, n int) {
	t.Helper()
	if skip == nil {
		skip = []uint32{}
	}
	seen := map[string]bool{}
	for len(seen) < 2*n+3 {
		var pid uint32
		var start time.Time
		err := probe.QueryRow(ctx, `SELECT pid, query_start FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> ALL($2) AND query = $3 AND query_start IS NOT NULL
			ORDER BY query_start DESC LIMIT 1`, sampler, skip, waitQuery).Scan(&pid, &start)
		switch {
		case err == nil:
			seen[fmt.Sprint(pid, start.UnixMicro())] = true
		case !errors.Is(err, pgx.ErrNoRows):
			t.Fatalf("watching the sampler (%d of %d sample starts seen): %v", len(seen), 2*n+3, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSampleWaitsInARun(t *testing.T) {
	t.Parallel()
	c := small("batch")
	c.Events, c.SampleWaits, c.Rounds = 6_000, time.Millisecond, 2
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	for side, w := range map[string]*Waits{"ours": rep.Ours.Waits, "raw": rep.Raw.Waits} {
		if w == nil || w.Samples == 0 {
			t.Fatalf("%s: no samples", side)
		}
		var sum float64
		for k, v := range w.Backends {
			if v < 0 || math.IsNaN(v) {
				t.Errorf("%s: %s = %v", side, k, v)
			}
			sum += v
		}
		if w.LockHeld > 0 {
			var hs float64
			for _, v := range w.Holder {
				hs += v
			}
			if math.Abs(hs-1) > 0.01 {
				t.Errorf("%s: the holder's shares add up to %v, want 1", side, hs)
			}
		}
	}
	if rep.Raw.Waits.LockHeld != 0 {
		t.Errorf("raw takes no lock, but it was held %v of the time", rep.Raw.Waits.LockHeld)
	}
	var out bytes.Buffer
	if err := WriteTable(&out, []Report{rep}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ours waits (mean active backends") || !strings.Contains(out.String(), "raw waits") {
		t.Errorf("the text report lacks the waits:\n%s", out.String())
	}
	// Without the setting nothing is sampled.
	c.SampleWaits = 0
	c.Events = 1_000
	rep, err = Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ours.Waits != nil || rep.Raw.Waits != nil {
		t.Errorf("waits sampled without SampleWaits: %+v %+v", rep.Ours.Waits, rep.Raw.Waits)
	}
}

func TestSampleWaitsIntervalIsChecked(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{-time.Millisecond, 500 * time.Microsecond, 2 * time.Second} {
		err := Check(Config{Scenario: "batch", SampleWaits: d})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "wait sampling interval") {
			t.Errorf("%s: got %v, want ErrConfig about the interval", d, err)
		}
	}
	if err := Check(Config{Scenario: "batch", SampleWaits: 5 * time.Millisecond}); err != nil {
		t.Errorf("5ms: %v", err)
	}
}

// A sampler that cannot connect takes no sample, and says so: its failures
// are counted and reported instead of the waits silently missing.
func TestSampleWaitsThatCannotConnectReportsTheFailures(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Nothing listens on port 1.
	cfg, err := pgxpool.ParseConfig("postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stop := sampleWaits(ctx, pool, "eventstream-bench-nowhere", 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	c := stop()
	if c.samples != 0 || c.failed == 0 || c.err == nil || !strings.Contains(c.err.Error(), "connect") {
		t.Fatalf("samples %d, failed %d, err %v; want none taken, failures counted, a connect error", c.samples, c.failed, c.err)
	}
	w := c.waits()
	if w == nil || w.Samples != 0 || w.Failed != c.failed || w.LockHeld != 0 || len(w.Backends) != 0 {
		t.Fatalf("waits %+v, want no figures and %d failed", w, c.failed)
	}
	if line := describeWaits("ours", w); !strings.Contains(line, fmt.Sprintf("0 samples every 5.00 ms, %d failed", c.failed)) {
		t.Errorf("the report line hides the failures: %s", line)
	}
}

// A sampler whose connection breaks mid-phase counts the failed samples,
// keeps them out of the figures, and samples again on a new connection.
// The test watches the sampler's statements rather than sleeping: it
// breaks the connection once the sampler has one, and stops the sampler
// once it has been seen to sample again after the break.
func TestSampleWaitsRecoversFromABrokenConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := fmt.Sprintf("eventstream-bench-wb%x", time.Now().UnixNano())
	sampler := "eventstream-waits-" + app
	pool, err := pgxpool.New(ctx, pgtest.BaseURL()+"&application_name="+sampler)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	probe, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(context.Background())
	stop := sampleWaits(ctx, pool, app, 5*time.Millisecond)
	defer stop()
	watchSamples(t, ctx, probe, sampler, nil, 1)
	// End the sampler's backend, as an operator's pg_terminate_backend or
	// a server restart would (the probe is the only other backend, and it
	// is of another application).
	var killed []uint32
	if err := probe.QueryRow(ctx, `SELECT coalesce(array_agg(pid), '{}') FROM (SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t`,
		sampler).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 {
		t.Fatalf("terminated %d sampler backends, want 1", len(killed))
	}
	before := time.Now()
	// Samples keep coming after the break, on another backend.
	const after = 10
	watchSamples(t, ctx, probe, sampler, killed, after)
	c := stop()
	if c.failed == 0 || c.err == nil {
		t.Fatalf("failed %d, err %v: the broken connection's sample was not counted as failed", c.failed, c.err)
	}
	if c.samples < after {
		t.Errorf("%d samples in all (%v after the break), want at least the %d seen after it", c.samples, time.Since(before), after)
	}
	w := c.waits()
	if w.Failed != c.failed || w.Samples != c.samples {
		t.Errorf("waits %+v, want %d samples and %d failed", w, c.samples, c.failed)
	}
}
