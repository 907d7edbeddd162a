package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemoRunsTwiceAndShowsTheRefusal(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for run := 1; run <= 2; run++ {
		r := c.must(0, "demo")
		for _, want := range []string{"/payload/language", "[pattern]", "event 1", "expected version 1, actual 5", "course.generation.completed", "SELECT"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("run %d: demo output lacks %q:\n%s", run, want, r)
			}
		}
	}
}

func TestDemoJSON(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.must(0, "demo", "--json")
	var rep struct {
		Appended []struct {
			Stream   string `json:"stream"`
			Version  int64  `json:"version"`
			Position int64  `json:"position"`
			ID       string `json:"id"`
		} `json:"appended"`
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
		Stream []json.RawMessage `json:"stream"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("demo --json is not one JSON document: %v\n%s", err, r)
	}
	if got, want := rep.Refused.Code, 3; got != want {
		t.Fatalf("refused code = %d, want %d", got, want)
	}
	if rep.Refused.Index == nil || *rep.Refused.Index != 1 || rep.Refused.Pointer != "/payload/language" || rep.Refused.Rule != "pattern" {
		t.Fatalf("refusal = %+v, want index 1, /payload/language, pattern", rep.Refused)
	}
	if rep.Conflict.Code != 4 || rep.Conflict.Actual == nil || *rep.Conflict.Actual != 5 {
		t.Fatalf("conflict = %+v, want code 4 and actual version 5", rep.Conflict)
	}
	if len(rep.Stream) != len(rep.Appended) || len(rep.Appended) == 0 {
		t.Fatalf("read back %d events, appended %d: the refused ones must not be stored", len(rep.Stream), len(rep.Appended))
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
	for _, want := range []string{"Exit codes:", "3  input refused by validation", "4  concurrency conflict"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("--help lacks %q:\n%s", want, r)
		}
	}
}

func TestUnreachableServerIsOneLineWithoutPassword(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.runIn(t.Context(), "--database-url", "postgres://root:s3cretpw@127.0.0.1:1/eventstream?sslmode=disable&connect_timeout=2", "migrate")
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
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
	if _, err := exec.LookPath("initdb"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
			t.Skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
		}
	}
	t.Parallel()
	c := newCLI(t)
	// The server may run as the postgres user, which must reach the folder.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(c.dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, st.Mode().Perm()|0o001)
		}
	}
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
