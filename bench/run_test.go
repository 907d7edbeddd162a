package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/pgschema"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// Each scenario runs briefly against the real server so the bench cannot
// rot. Nothing here asserts on speed: only on what a report must say and
// on what a run must leave behind (nothing).

func small(scenario string) Config {
	c := Config{Scenario: scenario, DatabaseURL: pgtest.BaseURL(), Writers: 4}
	switch scenario {
	case "single":
		c.Events = 200
	case "batch":
		c.Events, c.EventsPerAppend = 1_000, 50
	case "hot":
		c.Events, c.Streams = 300, 3
	case "project":
		c.Duration, c.Rate = time.Second, 400
	case "replay":
		c.LogEvents = 2_000
	case "read":
		c.LogEvents, c.StreamEvents, c.Duration = 2_000, 500, 200*time.Millisecond
	}
	return c
}

func schemaExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1 OR starts_with(nspname, $1 || '__')`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func checkReport(t *testing.T, rep Report) {
	t.Helper()
	if !rep.Verified || rep.VerifiedEvents == 0 {
		t.Errorf("not verified: %+v", rep)
	}
	if rep.Raw == nil || rep.RawEventsPerSec <= 0 || rep.Ratio <= 0 {
		t.Errorf("no raw ceiling: raw %v, ratio %v", rep.RawEventsPerSec, rep.Ratio)
	}
	if rep.EventsPerSec <= 0 || rep.Ours.Events == 0 || rep.Ours.Ops == 0 {
		t.Errorf("no events measured: %+v", rep.Ours)
	}
	if !(rep.P50Ms > 0 && rep.P50Ms <= rep.P95Ms && rep.P95Ms <= rep.P99Ms && rep.P99Ms <= rep.MaxMs) {
		t.Errorf("latencies out of order: p50 %v p95 %v p99 %v max %v", rep.P50Ms, rep.P95Ms, rep.P99Ms, rep.MaxMs)
	}
	if rep.PeakRSSBytes <= 0 || rep.CPUSec <= 0 {
		t.Errorf("no resource figures: rss %d cpu %v", rep.PeakRSSBytes, rep.CPUSec)
	}
	var inTimeline int64
	for _, b := range rep.Ours.Timeline {
		inTimeline += b.Events
	}
	if inTimeline != rep.Ours.Events {
		t.Errorf("timeline sums to %d, phase has %d events", inTimeline, rep.Ours.Events)
	}
	if len(rep.Ours.Latency) == 0 {
		t.Error("no latency spectrum")
	}
	if rep.Schema == "" || schemaExists(t, rep.Schema) {
		t.Errorf("schema %q left behind", rep.Schema)
	}
}

func TestScenarioSingle(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("single"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if got, want := rep.Ours.Events, int64(200); got != want {
		t.Errorf("events: got %d, want %d", got, want)
	}
	if got, want := rep.Raw.Events, int64(200); got != want {
		t.Errorf("raw events: got %d, want %d", got, want)
	}
	if rep.GroupCommit == nil || rep.GroupCommit.Events != 200 {
		t.Errorf("group commit counters: %+v", rep.GroupCommit)
	}
	if rep.Ours.Rounds != 5 || rep.Raw.Rounds != 5 {
		t.Errorf("rounds: ours %d, raw %d, want the preset's 5", rep.Ours.Rounds, rep.Raw.Rounds)
	}
	if rep.AppendsPerSec != rep.EventsPerSec {
		t.Errorf("single events: appends/s %v != events/s %v", rep.AppendsPerSec, rep.EventsPerSec)
	}
}

func TestScenarioBatch(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("batch"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Events != 1_000 || rep.Ours.Ops != 20 {
		t.Errorf("got %d events in %d appends, want 1000 in 20", rep.Ours.Events, rep.Ours.Ops)
	}
}

func TestScenarioHot(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("hot"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Events != 300 {
		t.Errorf("events: %d, want 300 (every retried append lands)", rep.Ours.Events)
	}
	if rep.RetriedLanded == nil || !*rep.RetriedLanded {
		t.Error("retried_landed not reported true")
	}
	if rep.ConflictRate < 0 || rep.ConflictRate >= 1 {
		t.Errorf("conflict rate %v", rep.ConflictRate)
	}
}

func TestScenarioDuration(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Events, c.Duration = 0, 500*time.Millisecond
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Seconds < 0.5 || rep.Ours.Seconds > 5 {
		t.Errorf("a 500ms phase took %vs", rep.Ours.Seconds)
	}
}

// Rounds share the count exactly: no append is made twice or skipped,
// and the phases' figures add the rounds up.
func TestRoundsSplitTheCountExactly(t *testing.T) {
	t.Parallel()
	c := small("batch")
	c.Events, c.EventsPerAppend, c.Rounds = 23*10, 10, 4
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Ops != 23 || rep.Raw.Ops != 23 || rep.VerifiedEvents != 230 || rep.Ours.Rounds != 4 {
		t.Errorf("ours %d appends, raw %d, verified %d events in %d rounds; want 23, 23, 230, 4",
			rep.Ours.Ops, rep.Raw.Ops, rep.VerifiedEvents, rep.Ours.Rounds)
	}
	var last float64
	for _, b := range rep.Ours.Timeline {
		if b.At < last {
			t.Errorf("timeline goes back in time: %+v", rep.Ours.Timeline)
		}
		last = b.At
	}
}

func TestScenarioProject(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("project"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Lag == nil || rep.Lag.Events != rep.Ours.Events || rep.Lag.MaxMs < rep.Lag.P50Ms {
		t.Errorf("lag: %+v for %d events", rep.Lag, rep.Ours.Events)
	}
	if rep.RawLag == nil || rep.RawLag.Events == 0 {
		t.Errorf("raw lag: %+v", rep.RawLag)
	}
	// At 400 events/s for 1 s the paced writers send about 400 events.
	if rep.Ours.Events < 300 || rep.Ours.Events > 401 {
		t.Errorf("paced phase wrote %d events, want about 400", rep.Ours.Events)
	}
}

func TestScenarioReplay(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("replay"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Events != 2_000 || rep.Raw.Events != 2_000 || rep.LoadedEvents != 2_000 {
		t.Errorf("replayed %d (raw %d) of %d loaded, want 2000", rep.Ours.Events, rep.Raw.Events, rep.LoadedEvents)
	}
}

func TestScenarioRead(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), small("read"))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Ours.Events%2_000 != 0 || rep.OursExtra == nil || rep.OursExtra.Events%500 != 0 || rep.OursExtra.Events == 0 {
		t.Errorf("read passes should be whole: log %d, stream %+v", rep.Ours.Events, rep.OursExtra)
	}
	if rep.StreamRatio <= 0 || rep.RawExtra == nil {
		t.Errorf("no raw stream figure: %v", rep.StreamRatio)
	}
}

// The bench cannot lie: a row that goes missing between the appends and
// the check fails the run, loudly and with the id.
func TestVerificationFailsWhenAnEventIsMissing(t *testing.T) {
	t.Parallel()
	c := small("single")
	var deleted uuid.UUID
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `DELETE FROM events WHERE position = (SELECT max(position) FROM events) RETURNING id`).Scan(&deleted)
	}
	rep, err := Run(context.Background(), c)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want ErrVerify", err)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%T is not a *VerifyError", err)
	}
	if ve.Missing != 1 || ve.Claimed != 200 || ve.Stored != 199 || len(ve.SampleMissing) != 1 || ve.SampleMissing[0] != deleted {
		t.Errorf("verify error: %+v (deleted %s)", ve, deleted)
	}
	if !strings.Contains(err.Error(), deleted.String()) {
		t.Errorf("error does not name the missing id: %v", err)
	}
	wantFailedRun(t, rep)
}

// Verify also catches rows nobody claimed, ids stored twice, and gaps.
func TestVerifyCatchesEveryKindOfLie(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE events (position bigint, id uuid, stream text, version bigint)`); err != nil {
		t.Fatal(err)
	}
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	insert := func(pos int64, id uuid.UUID, stream string, version int64) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO events VALUES ($1, $2, $3, $4)`, pos, id, stream, version); err != nil {
			t.Fatal(err)
		}
	}
	insert(1, a, "s", 1)
	insert(2, b, "s", 2)
	if n, err := Verify(ctx, pool, "events", "id", []uuid.UUID{a, b}, true); err != nil || n != 2 {
		t.Fatalf("clean log: %d, %v", n, err)
	}
	check := func(name string, claimed []uuid.UUID, want func(*VerifyError) bool) {
		t.Helper()
		_, err := Verify(ctx, pool, "events", "id", claimed, true)
		var ve *VerifyError
		if !errors.As(err, &ve) || !want(ve) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	check("claimed twice", []uuid.UUID{a, b, b}, func(v *VerifyError) bool { return v.ClaimedTwice == 1 })
	check("unclaimed row", []uuid.UUID{a}, func(v *VerifyError) bool { return v.Unexpected == 1 })
	check("missing", []uuid.UUID{a, b, c}, func(v *VerifyError) bool { return v.Missing == 1 && v.SampleMissing[0] == c })
	insert(4, c, "t", 2)
	check("gap and bad stream", []uuid.UUID{a, b, c}, func(v *VerifyError) bool { return v.PositionGaps == 1 && v.BadStreams == 1 })
	insert(3, c, "t", 1)
	check("stored twice", []uuid.UUID{a, b, c}, func(v *VerifyError) bool { return v.Duplicated == 1 })
}

func TestKeepLeavesTheSchema(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Events, c.Keep, c.SkipRaw = 20, true, true
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.SchemaKept || !schemaExists(t, rep.Schema) {
		t.Fatalf("schema %q not kept", rep.Schema)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{rep.Schema, "events"}.Sanitize()).Scan(&n); err != nil || n != 20 {
		t.Errorf("kept schema holds %d events (%v), want 20", n, err)
	}
	if err := pgschema.Drop(ctx, conn, rep.Schema); err != nil {
		t.Fatal(err)
	}
	if rep.Raw != nil || rep.Ratio != 0 {
		t.Error("SkipRaw ran the raw phase")
	}
}

func TestRunRefusesBadConfigWithoutTouchingTheDatabase(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Config{Scenario: "single", Writers: -3, DatabaseURL: "postgres://nobody@127.0.0.1:1/none"})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
}

// The server CPU meter reads /proc/<pid>/stat; on this process it must
// see the CPU just burnt.
func TestProcessCPU(t *testing.T) {
	t.Parallel()
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	d, ok := processCPU(os.Getpid())
	if !ok || d <= 0 {
		t.Fatalf("processCPU(self) = %v, %v (x=%d)", d, ok, x)
	}
	if _, ok := processCPU(-1); ok {
		t.Error("processCPU of no process succeeded")
	}
}

func TestWriters(t *testing.T) {
	t.Parallel()
	yes := true
	reps := []Report{{
		Scenario: "hot", Op: "append", EventsPerSec: 1000, RawEventsPerSec: 2000, Ratio: 0.5, P50Ms: 1, P99Ms: 5, MaxMs: 9,
		PeakRSSBytes: 1 << 20, Verified: true, Conflicts: 3, ConflictRate: 0.01, RetriedLanded: &yes,
		Config: Summary{ExactVersions: true},
		Ours: Phase{Events: 1000, EventsPerSec: 1000, Timeline: []Bucket{{0, 1, 600}, {1, 0.5, 400}}, Seconds: 1.5,
			Latency: []Percentile{{0, 1}, {50, 1}, {99, 5}, {100, 9}}},
		Raw:   &Phase{Events: 2000, EventsPerSec: 2000, Timeline: []Bucket{{0, 1, 2000}}, Seconds: 1, Latency: []Percentile{{0, 0.5}, {100, 2}}},
		Notes: []string{"a <note>"},
	}}
	var js bytes.Buffer
	if err := WriteJSON(&js, reps); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Reports []map[string]any `json:"reports"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil || len(doc.Reports) != 1 {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	for _, k := range []string{"scenario", "events_per_sec", "raw_events_per_sec", "ratio", "p50_ms", "p99_ms", "max_ms", "peak_rss_bytes"} {
		if _, ok := doc.Reports[0][k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	var tbl bytes.Buffer
	if err := WriteTable(&tbl, reps); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hot", "1000", "2000", "0.50", "conflicts 3", "landed: yes"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, reps); err != nil {
		t.Fatal(err)
	}
	h := page.String()
	if strings.Count(h, "<svg") != 2 || strings.Contains(h, "<script") || !strings.Contains(h, "a &lt;note&gt;") {
		t.Errorf("HTML: want two inline SVG charts, no script, escaped notes:\n%s", h)
	}
	if !strings.Contains(h, oursColor) || !strings.Contains(h, rawColor) {
		t.Error("HTML charts lack one of the two series")
	}
}

// wantFailedRun checks what a run that failed verification leaves: a report
// that does not say verified, and no schema behind.
func wantFailedRun(t *testing.T, rep Report) {
	t.Helper()
	if rep.Verified {
		t.Error("report says verified, but the run failed verification")
	}
	if schemaExists(t, rep.Schema) {
		t.Errorf("schema %s left behind after a failure", rep.Schema)
	}
}

func TestProfileDirIsMadeAndFilled(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "profiles", "today")
	c := small("batch")
	c.ProfileDir = dir
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"ours", "raw"} {
		// One profile per round (the preset's 5): batch-ours-r1.cpu.pprof, ...
		for round := 1; round <= 5; round++ {
			name := filepath.Join(dir, fmt.Sprintf("batch-%s-r%d.cpu.pprof", side, round))
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatalf("the %s profile of round %d: %v", side, round, err)
			}
			if fi.Size() == 0 {
				t.Errorf("%s is empty", name)
			}
		}
	}
}

func TestProfileDirThatCannotBeMadeStopsTheRunFirst(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := small("batch")
	c.ProfileDir = filepath.Join(file, "profiles")
	rep, err := Run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "profile folder") {
		t.Fatalf("got %v, want the profile folder's error", err)
	}
	if rep.Schema != "" || rep.Ours.Events != 0 {
		t.Errorf("the run started: schema %q, %d events", rep.Schema, rep.Ours.Events)
	}
}
