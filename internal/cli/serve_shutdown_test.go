package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// lockedLog is a server's stderr, read by the test while the server
// still writes it.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is an "eventstream serve" started with exactly the given args.
type running struct {
	url  string
	cmd  *exec.Cmd
	log  *lockedLog
	done chan error
}

// startServe runs the binary with args (which must include serve and an
// --addr on port 0) and waits until it logs the URL it serves.
func startServe(t *testing.T, c *cli, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = c.dir
	cmd.Env = append(cleanEnv(), c.env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &running{cmd: cmd, log: &lockedLog{}, done: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		re := regexp.MustCompile(`msg=serving url=(http://\S+)`)
		for sc.Scan() {
			s.log.add(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case s.url = <-urls:
	case err := <-s.done:
		t.Fatalf("serve exited: %v\n%s", err, s.log)
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not start:\n%s", s.log)
	}
	return s
}

// stop sends SIGTERM and fails the test unless the process exits 0
// within a generous bound.
func (s *running) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	s.wait(t)
}

func (s *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, s.log)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("serve did not stop within 90s of SIGTERM:\n%s", s.log)
	}
}

func (s *running) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitAuditAtHead polls GET /projections until the audit projection has
// no lag.
func (s *running) waitAuditAtHead(t *testing.T, token string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body := s.do(t, "GET", "/projections", token, "")
		var st struct {
			Projections []lagJSON `json:"projections"`
		}
		_ = json.Unmarshal([]byte(body), &st)
		for _, p := range st.Projections {
			if code == 200 && p.Projection == "audit" && p.LagEvents == 0 && p.Head > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit projection did not reach the head: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outcome is what one append request came back with.
type outcome struct {
	id     uuid.UUID
	status int // 0: no response
	err    error
}

// TestServeSIGTERMFinishesAppendsInFlight: SIGTERM while appends are in
// flight. Every append answered 2xx is in the log exactly once, none that
// got no answer is written (an append in flight is finished, not cut), no
// client hangs, serve exits 0, and the audit
// projection's checkpoint matches the rows it wrote; after a restart it
// reaches the head with one row per event.
func TestServeSIGTERMFinishesAppendsInFlight(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	file := filepath.Join(c.dir, "tokens")
	token := strings.TrimSpace(c.must(0, "tokens", "create", "acme", "--file", file, "--name", "ci").stdout)
	serveArgs := []string{"--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--tokens-file", file, "--shutdown-timeout", "60s"}
	s := startServe(t, c, serveArgs...)

	// Workers append one event per request, each to its own stream, until
	// a request fails: they keep requests in flight across the SIGTERM.
	const workers = 8
	client := &http.Client{
		Timeout:   60 * time.Second, // past it, the request hung
		Transport: &http.Transport{MaxIdleConnsPerHost: workers},
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		ok       int
		wg       sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				o := outcome{id: uuid.New()}
				body := fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":%s}`, o.id, requested())
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s/streams/orders-%d/events", s.url, w), strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := client.Do(req)
				if err != nil {
					o.err = err
				} else {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					o.status = res.StatusCode
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				if o.status/100 == 2 {
					ok++
					if ok == 4*workers {
						once.Do(func() { close(enough) })
					}
				}
				mu.Unlock()
				if o.status != http.StatusCreated {
					return
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(90 * time.Second):
		t.Fatalf("the burst of appends did not get going:\n%s", s.log)
	}
	s.stop(t)
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-time.After(90 * time.Second):
		t.Fatal("clients still wait for answers after serve exited")
	}
	if strings.Contains(s.log.String(), "were cut") {
		t.Fatalf("requests in flight were cut instead of finished:\n%s", s.log)
	}
	if !strings.Contains(s.log.String(), "projections are at their checkpoints") {
		t.Fatalf("shutdown log:\n%s", s.log)
	}

	// The log, read from the database.
	inLog := eventCounts(t, c)
	var created, failed int
	for _, o := range outcomes {
		n := inLog[o.id]
		switch {
		case o.status == http.StatusCreated:
			created++
			if n != 1 {
				t.Errorf("event %s was answered 201 and is in the log %d times", o.id, n)
			}
		case o.err != nil:
			failed++
			var ne net.Error
			if errors.As(o.err, &ne) && ne.Timeout() {
				t.Errorf("a request hung across the shutdown: %v", o.err)
			}
			// A request the server read was in flight: it must have been
			// answered. One that failed was never read, so never written.
			if n != 0 {
				t.Errorf("event %s is in the log %d time(s) but its request got no answer (%v): an append in flight was cut", o.id, n, o.err)
			}
		default:
			// No request should be refused: those in flight finish, later
			// ones find the listener closed.
			t.Errorf("event %s: status %d during the shutdown; in the log %d times", o.id, o.status, n)
		}
	}
	if created < 4*workers {
		t.Fatalf("only %d appends answered 201", created)
	}
	if failed == 0 {
		t.Fatal("no request failed: the workers never noticed the shutdown")
	}
	total := c.queryInt(`SELECT count(*) FROM events`)
	if dup := c.queryInt(`SELECT count(*) FROM (SELECT id FROM events GROUP BY id HAVING count(*) > 1) d`); dup != 0 {
		t.Fatalf("%d event ids are in the log more than once", dup)
	}
	if total < created || total > len(outcomes) {
		t.Fatalf("the log holds %d events; %d were answered 201 out of %d requests", total, created, len(outcomes))
	}
	t.Logf("%d requests: %d answered 201, %d connection errors; %d events in the log", len(outcomes), created, failed, total)

	// The audit projection's checkpoint, as persisted at the shutdown,
	// matches the rows it wrote: nothing applied past it, nothing missing
	// below it.
	audit := c.status()["audit"]
	if audit.Head != int64(c.queryInt(`SELECT coalesce(max(position), 0) FROM events`)) {
		t.Fatalf("status head %d is not the log's last position", audit.Head)
	}
	if got, want := c.queryInt(`SELECT count(*) FROM audit_events`), c.queryInt(`SELECT count(*) FROM events WHERE position <= $1`, audit.Position); got != want {
		t.Fatalf("audit checkpoint %d: audit_events has %d rows, the log %d events up to it", audit.Position, got, want)
	}
	if past := c.queryInt(`SELECT count(*) FROM audit_events WHERE position > $1`, audit.Position); past != 0 {
		t.Fatalf("audit_events has %d rows past the checkpoint %d", past, audit.Position)
	}

	// A restart resumes from the checkpoints: the audit log ends at the
	// head with every event exactly once.
	s = startServe(t, c, serveArgs...)
	s.waitAuditAtHead(t, token)
	s.stop(t)
	if st := c.status()["audit"]; st.LagEvents != 0 || st.Position != st.Head {
		t.Fatalf("audit after the restart: %+v", st)
	}
	if got := c.queryInt(`SELECT count(*) FROM audit_events`); got != total {
		t.Fatalf("audit_events has %d rows, the log %d events", got, total)
	}
	if got := c.queryInt(`SELECT count(DISTINCT event_id) FROM audit_events`); got != total {
		t.Fatalf("audit_events has %d distinct events, the log %d", got, total)
	}
}

// serverProgramsInstalled reports whether initdb can be found where the
// private cluster looks for it.
func serverProgramsInstalled() bool {
	if _, err := exec.LookPath("initdb"); err == nil {
		return true
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	return len(m) > 0
}

// reachableByServer lets a private cluster's server, which may run as the
// postgres user, reach dir: dir readable, its parents traversable.
func reachableByServer(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, st.Mode().Perm()|0o001)
		}
	}
}

// TestServeDevStartsAPrivateCluster: serve --dev with nothing answering
// at the default address starts a private cluster under
// ./.eventstream/pg, serves appends on it with the printed dev token,
// and stops the cluster on SIGTERM.
func TestServeDevStartsAPrivateCluster(t *testing.T) {
	if !serverProgramsInstalled() {
		t.Skip("PostgreSQL server programs (initdb, pg_ctl) are not installed: serve --dev cannot start a private cluster")
	}
	t.Parallel()
	c := newCLI(t)
	reachableByServer(t, c.dir)
	pidFile := filepath.Join(c.dir, ".eventstream", "pg", "postmaster.pid")
	// If the test fails while the cluster runs, stop the postmaster it
	// started (by its pid: SIGQUIT is PostgreSQL's immediate shutdown).
	t.Cleanup(func() {
		if pid := postmasterPID(pidFile); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})

	s := startServe(t, c, "--default-database-url", "postgres://root@127.0.0.1:1/eventstream?sslmode=disable&connect_timeout=2",
		"serve", "--dev", "--addr", "127.0.0.1:0")
	log := s.log.String()
	if !strings.Contains(log, "started a private PostgreSQL cluster in ./.eventstream/pg") {
		t.Fatalf("serve --dev did not say it started a private cluster under the working directory:\n%s", log)
	}
	m := regexp.MustCompile(`operator token for this run \(all tenants\): (es_\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no dev token printed:\n%s", log)
	}
	token := m[1]
	pid := postmasterPID(pidFile)
	if pid <= 0 {
		t.Fatalf("no running private cluster in %s", filepath.Dir(pidFile))
	}
	if code, body := s.do(t, "GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	id := uuid.New()
	body := fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":%s,"meta":{"tenant_id":"acme"}}`, id, requested())
	if code, body := s.do(t, "POST", "/streams/orders-dev/events", token, body); code != 201 {
		t.Fatalf("append with the dev token: %d %s", code, body)
	}
	if code, body := s.do(t, "GET", "/streams/orders-dev", token, ""); code != 200 || !strings.Contains(body, id.String()) {
		t.Fatalf("read back: %d %s", code, body)
	}

	s.stop(t)
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the private cluster's postmaster.pid is still there after serve stopped (stat: %v):\n%s", err, s.log)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) && !zombie(pid) {
		t.Fatalf("the private cluster's postmaster (pid %d) still runs after serve stopped: %v", pid, err)
	}
}

// zombie reports whether pid has exited and waits to be reaped (in a
// container whose init does not reap orphans).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && strings.HasPrefix(after, "Z")
}

// eventCounts is how many times each event id is in the test's log.
func eventCounts(t *testing.T, c *cli) map[uuid.UUID]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, count(*) FROM events GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]int{}
	for rows.Next() {
		var id uuid.UUID
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// postmasterPID is the pid on the first line of a postmaster.pid, or 0.
func postmasterPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}
