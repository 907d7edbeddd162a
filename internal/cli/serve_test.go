package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server is a running "eventstream serve".
type server struct {
	url    string
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   chan error
}

func (c *cli) serve(args ...string) *server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, binary, append([]string{"--database-url", c.url, "serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = cleanEnv()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		re := regexp.MustCompile(`msg=serving url=(http://\S+)`)
		for sc.Scan() {
			s.stderr.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case s.url = <-urls:
	case err := <-s.done:
		c.t.Fatalf("serve exited: %v\n%s", err, s.stderr.String())
	case <-time.After(60 * time.Second):
		c.t.Fatalf("serve did not start:\n%s", s.stderr.String())
	}
	c.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return s
}

func (s *server) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	file := filepath.Join(c.dir, "tokens")
	fileToken := strings.TrimSpace(c.must(0, "tokens", "create", "acme", "--file", file, "--name", "ci").stdout)
	dbToken := strings.TrimSpace(c.must(0, "tokens", "create", "globex", "--name", "globex-app").stdout)
	if !strings.HasPrefix(fileToken, "es_") || !strings.HasPrefix(dbToken, "es_") {
		t.Fatalf("tokens: %q %q", fileToken, dbToken)
	}
	if raw := readLines(t, file); len(raw) != 1 || strings.Contains(raw[0], fileToken) {
		t.Fatalf("the tokens file holds the secret: %v", raw)
	}
	if r := c.must(0, "tokens", "list"); strings.Contains(r.stdout, dbToken) || !strings.Contains(r.stdout, "globex-app") {
		t.Fatalf("tokens list: %s", r)
	}
	c.must(2, "tokens", "create", "bad tenant")

	s := c.serve("--tokens-file", file)
	if code, _ := s.do(t, "GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	if code, _ := s.do(t, "GET", "/events", "", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	code, body := s.do(t, "POST", "/streams/orders-1/events", fileToken, fmt.Sprintf(`{"type":"course.generation.requested","payload":%s}`, requested()))
	if code != 201 {
		t.Fatalf("append with the file's token: %d %s", code, body)
	}
	if code, body := s.do(t, "POST", "/streams/orders-1/events", fileToken, `{"type":"course.generation.requested","payload":{}}`); code != 400 || !strings.Contains(body, `"rule":"required"`) {
		t.Fatalf("invalid append: %d %s", code, body)
	}
	if code, _ := s.do(t, "GET", "/streams/orders-1", dbToken, ""); code != 404 {
		t.Fatalf("globex reads acme's stream: %d", code)
	}
	// The projections run: the audit browser lists the event. Asked with
	// acme's token, the lag counts acme's events only (globex's would be 0
	// from the start, having written none).
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := s.do(t, "GET", "/projections", fileToken, "")
		var st struct {
			Projections []struct {
				Projection string `json:"projection"`
				LagEvents  int64  `json:"lag_events"`
			} `json:"projections"`
		}
		_ = json.Unmarshal([]byte(body), &st)
		caughtUp := code == 200 && len(st.Projections) == 5
		for _, p := range st.Projections {
			caughtUp = caughtUp && p.LagEvents == 0
		}
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections did not catch up: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := s.do(t, "GET", "/ui/", fileToken, ""); code != 200 || !strings.Contains(body, "orders-1") {
		t.Fatalf("ui: %d", code)
	}
	// The lag gauges come from a snapshot the runtime refreshes every
	// second: a scrape in the first one may come before it.
	for {
		_, body := s.do(t, "GET", "/metrics", "", "")
		if strings.Contains(body, `eventstream_appends_total{outcome="ok"} 1`) && strings.Contains(body, "eventstream_projection_lag_events") && strings.Contains(body, "go_goroutines") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Revoking applies within seconds.
	c.must(0, "tokens", "revoke", "globex-app")
	deadline = time.Now().Add(20 * time.Second)
	for code, _ := s.do(t, "GET", "/events", dbToken, ""); code != 401; code, _ = s.do(t, "GET", "/events", dbToken, "") {
		if time.Now().After(deadline) {
			t.Fatal("a revoked token still works")
		}
		time.Sleep(200 * time.Millisecond)
	}

	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if !strings.Contains(s.stderr.String(), "projections are at their checkpoints") {
		t.Fatalf("shutdown log:\n%s", s.stderr.String())
	}
	if strings.Contains(s.stderr.String(), fileToken) || strings.Contains(s.stderr.String(), dbToken) {
		t.Fatal("a token appears in the server's log")
	}
}

func TestServeDevPrintsAToken(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	s := c.serve("--dev", "--no-projections")
	m := regexp.MustCompile(`operator token for this run \(all tenants\): (es_\S+)`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no dev token printed:\n%s", s.stderr.String())
	}
	if code, body := s.do(t, "GET", "/events", m[1], ""); code != 200 {
		t.Fatalf("dev token: %d %s", code, body)
	}
}

func TestServeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must(2, "serve", "--max-batch", "0")
	c.must(2, "serve", "--max-body-bytes", "10")
	if r := c.run("serve", "--max-body-bytes", "8192", "--max-inflight-body-bytes", "4096"); r.code != 2 || !strings.Contains(r.stderr, "--max-inflight-body-bytes") {
		t.Fatalf("--max-inflight-body-bytes below --max-body-bytes: want a usage error, got %s", r)
	}
	for _, d := range []string{"0", "0s", "-1s"} {
		if r := c.run("serve", "--shutdown-timeout", d); r.code != 2 || !strings.Contains(r.stderr, "--shutdown-timeout") {
			t.Fatalf("--shutdown-timeout %s: want a usage error, got %s", d, r)
		}
	}
	c.must(2, "serve", "--tokens-file", filepath.Join(c.dir, "missing"))
	c.must(2, "serve", "--tokens-file", writeFile(t, c.dir, "plain", "acme es_secret_in_clear\n"))
	// A port out of range is a usage error (TestServeRefusesBadLimitsAndAddressBeforeConnecting);
	// a port in use is found when listening: a failure.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if r := c.run("serve", "--addr", taken.Addr().String()); r.code != 1 || !strings.Contains(r.stderr, "listen on "+taken.Addr().String()) {
		t.Fatalf("address in use: want exit 1 naming it, got %s", r)
	}
	c.must(2, "tokens", "revoke", "nobody")
}
