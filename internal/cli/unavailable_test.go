package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// checkReport checks the --json error report on stderr: its code and kind.
func checkReport(t *testing.T, what string, r result, code int, kind string) {
	t.Helper()
	var rep struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
		Kind  string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stderr)), &rep); err != nil {
		t.Errorf("%s --json: the error report is not one JSON object: %v\n%s", what, err, r)
		return
	}
	if r.code != code || rep.Code != code || rep.Kind != kind {
		t.Errorf("%s --json: want exit %d and a report of code %d, kind %q; got %s", what, code, code, kind, r)
	}
}

// TestNoServerExitsUnavailable: when no server answers, every command
// that needs the database ends with exit 75 (EX_TEMPFAIL: try again
// later), kind "unavailable" in the --json report, so that a script or a
// cron job can tell an outage from a real failure (exit 1). The message
// stays one line, without the password or the store's prefix, telling how
// to point at a server.
func TestNoServerExitsUnavailable(t *testing.T) {
	t.Parallel()
	c := &cli{t: t, dir: t.TempDir()}
	nowhere := "postgres://root:s3cretpw@" + deadAddr(t) + "/eventstream?sslmode=disable&connect_timeout=5"
	file := writeFile(t, c.dir, "in.ndjson", line(uuid.NewString(), "s", uuid.NewString())+"\n")
	for _, args := range [][]string{
		{"migrate"},
		{"read", "--all"},
		{"read", "some-stream"},
		{"append", "--stream", "s", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested()},
		{"import", file},
		{"export", "--output", filepath.Join(c.dir, "out.ndjson")},
		{"tail"},
		{"projections", "status"},
		{"replay", "audit"},
		{"backfill", "audit"},
		{"dlq", "list"},
		{"tokens", "list"},
		{"serve", "--addr", "127.0.0.1:0"},
	} {
		what := strings.Join(args, " ")
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere}, args...)...)
		if r.code != 75 {
			t.Errorf("%s with no server: want exit 75 (unavailable), got %s", what, r)
			continue
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "eventstream: cannot connect to PostgreSQL at ") ||
			!strings.Contains(lines[0], "--database-url") || strings.Contains(r.stderr, "s3cretpw") || strings.Contains(r.stderr, "eventstore:") {
			t.Errorf("%s with no server: want one line telling how to point at a server, without the password; got %s", what, r)
		}
		checkReport(t, what, c.runIn(context.Background(), append([]string{"--json", "--database-url", nowhere}, args...)...), 75, "unavailable")
	}
	// The default address, when nothing answers there and the command
	// starts no private cluster.
	r := c.runIn(context.Background(), "--default-database-url", nowhere, "read", "--all")
	if r.code != 75 || strings.Contains(r.stderr, "s3cretpw") {
		t.Errorf("read --all with no server at the default address: want exit 75, got %s", r)
	}
	// EventStoreDB: no node answers.
	esdbURL := "esdb://admin:s3cretpw@" + deadAddr(t) + "?tls=false&maxDiscoverAttempts=1"
	for _, args := range [][]string{{"read", "--all"}, {"export"}} {
		r := c.runIn(context.Background(), append([]string{"--store", "esdb", "--eventstore-url", esdbURL}, args...)...)
		if r.code != 75 || strings.Contains(r.stderr, "s3cretpw") || !strings.Contains(r.stderr, "--eventstore-url") {
			t.Errorf("--store esdb %s with no node answering: want exit 75 naming --eventstore-url, got %s", strings.Join(args, " "), r)
		}
		checkReport(t, "--store esdb "+strings.Join(args, " "),
			c.runIn(context.Background(), append([]string{"--json", "--store", "esdb", "--eventstore-url", esdbURL}, args...)...), 75, "unavailable")
	}
}

// TestServerRefusalIsAFailure: a server that answers and refuses the
// connection (a role that does not exist, a database that does not exist)
// is no outage: retrying will not help, so the exit code stays 1.
func TestServerRefusalIsAFailure(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	u, err := url.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	noRole := *u
	noRole.User = url.UserPassword("no_such_role_"+strings.ReplaceAll(uuid.NewString()[:8], "-", ""), "s3cretpw")
	noDB := *u
	noDB.Path = "/no_such_database_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	for name, target := range map[string]string{"a missing role": noRole.String(), "a missing database": noDB.String()} {
		for _, args := range [][]string{{"migrate"}, {"read", "--all"}, {"projections", "status"}} {
			what := fmt.Sprintf("%s with %s", strings.Join(args, " "), name)
			r := c.runIn(context.Background(), append([]string{"--database-url", target}, args...)...)
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 1 || len(lines) != 1 ||
				!strings.Contains(lines[0], "cannot connect to PostgreSQL") || strings.Contains(r.stderr, "s3cretpw") ||
				strings.Contains(r.stderr, "start PostgreSQL") || !strings.Contains(r.stderr, "--database-url") {
				// The server runs: "start PostgreSQL" (the hint for one
				// that does not answer) sent the user the wrong way.
				t.Errorf("%s: want exit 1 and one line without the password, pointing at --database-url and not at starting PostgreSQL, got %s", what, r)
			}
			checkReport(t, what, c.runIn(context.Background(), append([]string{"--json", "--database-url", target}, args...)...), 1, "failure")
		}
	}
}

// cutAndRefuse makes the proxy cut the first connection whose traffic in
// direction dir holds marker, and refuse every connection from then on: the
// database went away in the middle of the command. It returns whether the
// cut happened.
func cutAndRefuse(proxy *faultproxy.Proxy, dir faultproxy.Direction, marker string) *atomic.Bool {
	var cut atomic.Bool
	proxy.SetCut(func(ch faultproxy.Chunk) bool {
		if cut.Load() {
			return true
		}
		if ch.Dir == dir && strings.Contains(string(ch.Data), marker) {
			proxy.SetRefuse(true)
			cut.Store(true)
			return true
		}
		return false
	})
	return &cut
}

// heal lets the proxy carry traffic again.
func heal(proxy *faultproxy.Proxy) {
	proxy.SetCut(nil)
	proxy.SetRefuse(false)
}

// TestOutageMidImportExitsUnavailable: the database going away in the
// middle of an import ends it with exit 75 and the hint to run it again,
// which resumes it from its checkpoint.
func TestOutageMidImportExitsUnavailable(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	var lines []string
	for _, s := range []string{"outage-a", "outage-b", "outage-c"} {
		for range 5 {
			lines = append(lines, line(uuid.NewString(), s, uuid.NewString()))
		}
	}
	content := strings.Join(lines, "\n") + "\n"
	p := writeFile(t, c.dir, "outage.ndjson", content)
	cut := cutAndRefuse(proxy, faultproxy.ToServer, "outage-b")
	r := c.runIn(context.Background(), "--database-url", proxied, "import", p)
	if !cut.Load() {
		t.Fatalf("the import's traffic never named outage-b: %s", r)
	}
	if r.code != 75 || !strings.Contains(r.stderr, "run the same command again to resume") {
		t.Fatalf("import that lost the database: want exit 75 and the hint to run it again, got %s", r)
	}
	heal(proxy)
	r = c.runIn(context.Background(), "--database-url", proxied, "import", p)
	if r.code != 0 || !strings.Contains(r.stderr, "resuming an interrupted import") {
		t.Fatalf("the import run again: want exit 0, resumed; got %s", r)
	}
	if n := c.count("--all"); n != 15 {
		t.Fatalf("after the resumed import the log has %d events, want 15", n)
	}
	checkSameEvents(t, "after the resumed import the log", c.logRows(), importedFrom(t, content))
}

// TestOutageMidExportExitsUnavailable: the database going away while an
// export to a file reads the log ends it with exit 75 and the hint to run
// it again; run again, it completes the file.
func TestOutageMidExportExitsUnavailable(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)
	c.appendMany(30)
	out := filepath.Join(c.dir, "out.ndjson")
	cut := cutAndRefuse(proxy, faultproxy.ToClient, "course.generation.requested")
	r := c.runIn(context.Background(), "--database-url", proxied, "export", "--output", out)
	if !cut.Load() {
		t.Fatalf("no event of the export went through the proxy: %s", r)
	}
	if r.code != 75 || !strings.Contains(r.stderr, "run the same command again to resume") {
		t.Fatalf("export that lost the database: want exit 75 and the hint to run it again, got %s", r)
	}
	heal(proxy)
	c.must(0, "--database-url", proxied, "export", "--output", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(jsonLines(t, string(b))); n != 30 {
		t.Fatalf("the export run again holds %d events, want 30", n)
	}
	checkSameEvents(t, "the export run again", exportedRows(t, string(b)), c.logRows())
}

// TestOutageMidCommandExitsUnavailable: a read, a replay and a backfill
// that lose the database once they are under way end with exit 75 (the
// long jobs with the hint to run them again), not 1.
func TestOutageMidCommandExitsUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"read", "--all"}, ""},
		{[]string{"replay", "audit"}, "run the same command again"},
		{[]string{"backfill", "audit"}, "run the same command again"},
	} {
		c, proxy, proxied := proxiedCLI(t)
		c.appendMany(30)
		cut := cutAndRefuse(proxy, faultproxy.ToClient, "course.generation.requested")
		what := strings.Join(tc.args, " ")
		r := c.runIn(context.Background(), append([]string{"--database-url", proxied}, tc.args...)...)
		if !cut.Load() {
			t.Errorf("%s: no event went through the proxy: %s", what, r)
			continue
		}
		if r.code != 75 || !strings.Contains(r.stderr, tc.hint) {
			t.Errorf("%s that lost the database: want exit 75 (with %q), got %s", what, tc.hint, r)
		}
		heal(proxy)
		c.must(0, append([]string{"--database-url", proxied}, tc.args...)...)
		if tc.args[0] != "read" {
			// The audit log run again holds every event of the log once.
			checkSameEvents(t, what+" run again: audit_events",
				c.auditRows(), c.logRows())
		}
	}
}
