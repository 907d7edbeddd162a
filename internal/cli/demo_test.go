package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemoRunsTwiceAndShowsTheRefusal(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for run := 1; run <= 2; run++ {
		r := c.must(0, "demo")
		for _, want := range []string{
			"/payload/language", "[pattern]", "event 1", "actual 15",
			"reaction/course-completed.create-distribution", "course.deployed.staging", "mission.approval_granted",
			"ir.dag_diff_failed", "critical", "dag_tampering", "SELECT", "FROM course_catalog", "deployed",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("run %d: demo output lacks %q:\n%s", run, want, r)
			}
		}
		if strings.Contains(r.stderr, "level=INFO") {
			t.Fatalf("run %d: demo logs chatter on stderr: %s", run, r.stderr)
		}
	}
}

// demoJSON is the part of demo --json the tests check.
type demoJSON struct {
	Store string `json:"store"`
	Flow  []struct {
		Type string `json:"type"`
		By   string `json:"by"`
	} `json:"flow"`
	Refused struct {
		Code    int    `json:"code"`
		Index   *int   `json:"index"`
		Pointer string `json:"pointer"`
		Rule    string `json:"rule"`
	} `json:"refused"`
	Conflict struct {
		Code   int    `json:"code"`
		Actual *int64 `json:"actual_version"`
	} `json:"conflict"`
	Stream      []json.RawMessage `json:"course_stream"`
	Projections []struct {
		Projection string `json:"projection"`
		LagEvents  int64  `json:"lag_events"`
	} `json:"projections"`
	Queries []struct {
		Title string     `json:"title"`
		SQL   string     `json:"sql"`
		Cols  []string   `json:"columns"`
		Rows  [][]string `json:"rows"`
	} `json:"queries"`
}

func checkDemoJSON(t *testing.T, r result) demoJSON {
	t.Helper()
	var rep demoJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("demo --json is not one JSON document: %v\n%s", err, r)
	}
	if rep.Refused.Code != 3 || rep.Refused.Index == nil || *rep.Refused.Index != 1 || rep.Refused.Pointer != "/payload/language" || rep.Refused.Rule != "pattern" {
		t.Fatalf("refusal = %+v, want code 3, index 1, /payload/language, pattern", rep.Refused)
	}
	if rep.Conflict.Code != 4 || rep.Conflict.Actual == nil || *rep.Conflict.Actual != int64(len(rep.Stream)) {
		t.Fatalf("conflict = %+v, want code 4 and the stream's version %d", rep.Conflict, len(rep.Stream))
	}
	by := map[string]string{}
	for _, e := range rep.Flow {
		by[e.Type] = e.By
	}
	for typ, who := range map[string]string{
		"course.generation.completed": "command",
		"distribution.created":        "reaction/course-completed.create-distribution",
		"course.deployed.staging":     "reaction/distribution-created.deploy-staging",
		"ir.validated_escalate":       "reaction/mission-created.validate-ir",
		"mission.approval_granted":    "reaction/approval-consumed.grant-mission-approval",
		"mission.completed":           "command",
		"ir.dag_diff_failed":          "command",
		"ir.approval_invalid":         "command",
	} {
		if by[typ] != who {
			t.Errorf("%s by %q, want %q", typ, by[typ], who)
		}
	}
	if len(rep.Projections) != 5 {
		t.Fatalf("projections: %+v", rep.Projections)
	}
	for _, p := range rep.Projections {
		if p.LagEvents != 0 {
			t.Errorf("projection %s lags %d events after the demo", p.Projection, p.LagEvents)
		}
	}
	if len(rep.Queries) != 4 {
		t.Fatalf("queries: %+v", rep.Queries)
	}
	catalog, alerts := rep.Queries[0], rep.Queries[1]
	if len(catalog.Rows) != 1 || catalog.Rows[0][1] != "deployed" || catalog.Rows[0][3] != "published" || catalog.Rows[0][4] != "3" {
		t.Fatalf("catalog query: %+v", catalog)
	}
	if len(alerts.Rows) != 2 || alerts.Rows[0][0] != "critical" || alerts.Rows[0][1] != "dag_tampering" {
		t.Fatalf("alerts query: %+v", alerts)
	}
	return rep
}

func TestDemoJSON(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	if rep := checkDemoJSON(t, c.must(0, "demo", "--json")); rep.Store != "postgres" {
		t.Fatalf("store = %q", rep.Store)
	}
}

func TestDemoOnMemoryAndTheEventStoreDBStandIn(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, store := range []string{"memory", "esdb"} {
		r := c.must(0, "demo", "--json", "--store", store)
		if rep := checkDemoJSON(t, r); rep.Store != store {
			t.Fatalf("store = %q, want %s", rep.Store, store)
		}
		if store == "esdb" && !strings.Contains(r.stderr, "protocol stand-in") {
			t.Fatalf("demo --store esdb did not say it runs on the stand-in: %s", r.stderr)
		}
	}
	if r := c.run("demo", "--store", "oracle"); r.code != 2 {
		t.Fatalf("--store oracle: %s", r)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	type comp struct {
		Component string   `json:"component"`
		Version   int      `json:"version"`
		Applied   []string `json:"applied"`
	}
	var first, second []comp
	if err := json.Unmarshal([]byte(c.must(0, "migrate", "--json").stdout), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.must(0, "migrate", "--json").stdout), &second); err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || first[0].Component != "eventstore" || len(first[0].Applied) == 0 {
		t.Fatalf("first migrate = %+v, want the eventstore migrations applied", first)
	}
	for _, c := range second {
		if len(c.Applied) != 0 {
			t.Fatalf("second migrate applied %v for %s; want nothing", c.Applied, c.Component)
		}
	}
	if r := c.must(0, "migrate"); !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("human output: %s", r)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, args := range [][]string{
		{"no-such-command"},
		{"migrate", "--no-such-flag"},
		{"migrate", "extra-arg"},
		{"demo", "--log-level", "loud"},
		{"append", "--type", "x"},
	} {
		r := c.run(args...)
		if r.code != 2 {
			t.Errorf("eventstream %v: want exit 2, got %s", args, r)
		}
		if strings.Count(strings.TrimSpace(r.stderr), "\n") > 2 {
			t.Errorf("eventstream %v: want a short message, got %s", args, r)
		}
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.runIn(t.Context(), "--help")
	for _, want := range []string{"Exit codes:", "3  input refused by validation", "4  conflict with what is stored", "75  unavailable"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("--help lacks %q:\n%s", want, r)
		}
	}
}

func TestUnreachableServerIsOneLineWithoutPassword(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.runIn(t.Context(), "--database-url", "postgres://root:s3cretpw@127.0.0.1:1/eventstream?sslmode=disable&connect_timeout=2", "migrate")
	if r.code != 75 {
		t.Fatalf("want exit 75 (unavailable), got %s", r)
	}
	if strings.Contains(r.stderr, "s3cretpw") || strings.Contains(r.stdout, "s3cretpw") {
		t.Fatalf("the password leaked: %s", r)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--database-url") {
		t.Fatalf("want one line telling how to point at a server, got %s", r)
	}
}

// TestDemoStartsAPrivateCluster: with nothing answering at the default
// address, demo starts a private cluster under ./.eventstream/pg, says so,
// and stops it afterwards; a second run reuses its data.
func TestDemoStartsAPrivateCluster(t *testing.T) {
	if !serverProgramsInstalled() {
		t.Skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
	}
	t.Parallel()
	c := newCLI(t)
	reachableByServer(t, c.dir)
	args := []string{"--default-database-url", "postgres://root@127.0.0.1:1/eventstream?sslmode=disable&connect_timeout=2", "demo"}
	for run := 1; run <= 2; run++ {
		r := c.runIn(t.Context(), args...)
		if r.code != 0 {
			t.Fatalf("run %d: %s", run, r)
		}
		if !strings.Contains(r.stderr, "private PostgreSQL cluster in ./.eventstream/pg") {
			t.Fatalf("run %d: demo did not say it started a private cluster: %s", run, r)
		}
		if _, err := os.Stat(filepath.Join(c.dir, ".eventstream", "pg", "postmaster.pid")); err == nil {
			t.Fatalf("run %d: the private cluster is still running after demo ended", run)
		}
	}
}

// The commands a demo suggests next work. On the memory log (and the
// in-process EventStoreDB stand-in) the log is gone when the demo ends and
// its read models are in a schema of their own, so the demo suggested
// reading a course stream that no later command can find (exit 1,
// "not found"): it says the log ended instead, and suggests only what
// works.
func TestDemoOnAnInProcessLogSuggestsOnlyWhatWorks(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.must(0, "demo", "--store", "memory")
	if !strings.Contains(r.stdout, "The memory log ended with this run") {
		t.Fatalf("demo --store memory does not say its log ended:\n%s", r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "eventstream read ")
		if !ok {
			continue
		}
		args := append([]string{"read"}, strings.Fields(strings.SplitN(cmd, "#", 2)[0])...)
		if got := c.run(args...); got.code != 0 {
			t.Errorf("the demo suggests %q, which fails: %s", strings.TrimSpace(line), got)
		}
	}
}
