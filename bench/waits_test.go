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
// backend of another application is not counted.
func TestSampleWaitsSeesTheLockHolderAndItsWaiter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
	key := time.Now().UnixNano()
	held := make(chan error, 1)
	go func() {
		_, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1), pg_sleep(1.5)`, key)
		held <- err
	}()
	// The waiter queues behind the holder once the holder has the lock.
	probe := connect("probe")
	for {
		var n int
		if err := probe.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1`, holder.PgConn().PID()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
		waited <- err
	}()
	slept := make(chan error, 1)
	go func() {
		_, err := other.Exec(ctx, `SELECT pg_sleep(1)`)
		slept <- err
	}()
	time.Sleep(100 * time.Millisecond)

	pool, err := pgxpool.New(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stop := sampleWaits(ctx, pool, app, 5*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	w := stop().waits()
	for _, ch := range []chan error{held, waited, slept} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
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
func TestSampleWaitsRecoversFromABrokenConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := fmt.Sprintf("eventstream-bench-wb%x", time.Now().UnixNano())
	pool, err := pgxpool.New(ctx, pgtest.BaseURL()+"&application_name=eventstream-waits-"+app)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stop := sampleWaits(ctx, pool, app, 5*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	// End the sampler's backend, as an operator's pg_terminate_backend or
	// a server restart would.
	var killed int
	if err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
		"eventstream-waits-"+app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d sampler backends, want 1", killed)
	}
	before := time.Now()
	time.Sleep(300 * time.Millisecond)
	c := stop()
	if c.failed == 0 || c.err == nil {
		t.Fatalf("failed %d, err %v: the broken connection's sample was not counted as failed", c.failed, c.err)
	}
	// Samples kept coming after the break: about 60 ticks in 300 ms,
	// against at most 6 before it.
	if c.samples < 30 {
		t.Errorf("%d samples in all (%v after the break): the sampler did not reconnect", c.samples, time.Since(before))
	}
	w := c.waits()
	if w.Failed != c.failed || w.Samples != c.samples {
		t.Errorf("waits %+v, want %d samples and %d failed", w, c.samples, c.failed)
	}
}
