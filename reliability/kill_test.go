package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgcluster"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections/analytics"
)

// buildBinary builds cmd/eventstream once for the test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "eventstream")
	// go test puts its own toolchain's bin first on PATH.
	cmd := exec.Command("go", "build", "-o", bin, "github.com/brainhq/eventstream/cmd/eventstream")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the eventstream binary: %v\n%s", err, out)
	}
	return bin
}

// child is the real eventstream binary running "serve": it appends what
// the test posts and runs the projections.
type child struct {
	t    *testing.T
	bin  string
	args []string
	log  *os.File
	url  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (c *child) start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, c.args...)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(c.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("eventstream serve not ready after 60s: %v\n%s", err, c.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// stop asks for a clean shutdown (SIGTERM).
func (c *child) stop() {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		c.t.Errorf("eventstream serve did not stop within 30s of SIGINT")
	}
}

func (c *child) logTail() string {
	b, _ := os.ReadFile(c.log.Name())
	return tail(string(b), 30)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// httpAppender appends through the API of a running server, as a client
// of eventstream serve does: one POST per append, with the events' own ids
// and the expected version. 201 is the result; 400 is a validation error,
// 409 a conflict or a duplicate, any other 4xx errRefused (the typed
// errors a fleet's ledger counts as failures of the test); anything else,
// a 5xx or a lost connection, is a plain error to retry.
type httpAppender struct {
	url, token string
	client     *http.Client
}

func (h *httpAppender) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	type eventIn struct {
		ID      uuid.UUID       `json:"id"`
		Type    string          `json:"type"`
		Source  string          `json:"source,omitempty"`
		Target  string          `json:"target,omitempty"`
		Payload json.RawMessage `json:"payload"`
		Meta    eventstore.Meta `json:"meta"`
	}
	in := struct {
		ExpectedVersion string    `json:"expected_version"`
		Events          []eventIn `json:"events"`
	}{ExpectedVersion: expected.String()}
	for _, e := range events {
		in.Events = append(in.Events, eventIn{ID: e.ID, Type: e.Type, Source: e.Source, Target: e.Target, Payload: e.Payload, Meta: e.Meta})
	}
	body, err := json.Marshal(in)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", h.url+"/streams/"+url.PathEscape(stream)+"/events", bytes.NewReader(body))
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	res, err := h.client.Do(req)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("status %d, reading the body: %w", res.StatusCode, err)
	}
	switch code := res.StatusCode; {
	case code == http.StatusCreated:
	case code == http.StatusBadRequest:
		return eventstore.AppendResult{}, fmt.Errorf("status %d: %s: %w", code, b, eventstore.ErrValidation)
	case code == http.StatusConflict:
		var apiErr struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(b, &apiErr)
		if apiErr.Kind == "duplicate" {
			return eventstore.AppendResult{}, fmt.Errorf("status %d: %s: %w", code, b, eventstore.ErrDuplicateEvent)
		}
		return eventstore.AppendResult{}, fmt.Errorf("status %d: %s: %w", code, b, eventstore.ErrConcurrency)
	case code >= 400 && code < 500:
		return eventstore.AppendResult{}, fmt.Errorf("status %d: %s: %w", code, b, errRefused)
	default:
		return eventstore.AppendResult{}, fmt.Errorf("status %d: %s", code, b)
	}
	var out struct {
		Stream string `json:"stream"`
		Events []struct {
			ID       uuid.UUID           `json:"id"`
			Version  int64               `json:"version"`
			Position eventstore.Position `json:"position"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		// A 201 the client cannot read: an unexpected answer, not a fault.
		return eventstore.AppendResult{}, fmt.Errorf("decode the 201 answer %s: %v: %w", b, err, errRefused)
	}
	r := eventstore.AppendResult{Stream: out.Stream}
	for _, e := range out.Events {
		r.Events = append(r.Events, eventstore.Event{ID: e.ID, Version: e.Version, Position: e.Position, Stream: out.Stream})
	}
	return r, nil
}

// courseEvent is an event of a type the binary's embedded schemas know
// (the probe type is a test schema), for tenant acme or globex. The
// writers of each tenant alternate between exact expected versions and
// "any" (see fleet.write).
func courseEvent(w, seq, i int) eventstore.Event {
	return eventstore.Event{
		ID:   uuid.New(),
		Type: "course.generation.requested",
		Payload: json.RawMessage(fmt.Sprintf(`{"course_id":%q,"topic":"w%d s%d e%d","attempt":1,"language":"en"}`,
			uuid.NewString(), w, seq, i)),
		Meta: eventstore.Meta{TenantID: []string{"acme", "globex"}[(w/2)%2]},
	}
}

// TestProcessKillWhileAppendingAndProjecting runs the real binary
// ("eventstream serve": the HTTP API appends, the projections run in the
// same process) and kills it with SIGKILL at random moments, many times,
// restarting it each time, while four clients append through the API with
// their own event ids (two with exact expected versions, two with "any")
// and retry failures with the same ids: the writers of the fault tests,
// through httpAppender. At the end the
// log holds every acknowledged append exactly once and every abandoned
// one entirely or not at all; the audit read model holds every event of
// the log exactly once, its checkpoint is the head, nothing is parked; and
// the analytics counts add up to the number of events (a doubled
// application would show).
func TestProcessKillWhileAppendingAndProjecting(t *testing.T) {
	bin := buildBinary(t)
	cluster := pgcluster.Start(t)
	dir := t.TempDir()
	secret := "es_kill_test_operator_0123456789"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("* "+server.HashToken(secret)+" ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logFile, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c := &child{t: t, bin: bin, log: logFile, url: "http://" + addr, args: []string{
		"--database-url", cluster.URL(""), "--work-dir", dir, "--log-level", "warn",
		"serve", "--addr", addr, "--tokens-file", tokens, "--shutdown-timeout", "2s",
	}}
	c.start()
	defer c.kill()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve log:\n%s", c.logTail())
		}
	})

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	led := newLedger()
	api := &httpAppender{url: c.url, token: secret, client: &http.Client{Timeout: 10 * time.Second}}
	f := startFleetOf(api, courseEvent, led, 4, 5, seed)
	kills := scale(6)
	for i := range kills {
		before := f.totalAcks()
		time.Sleep(time.Duration(200+rng.IntN(900)) * time.Millisecond)
		waitFor(t, 30*time.Second, func() bool { return f.totalAcks() > before+5 },
			func() string { return fmt.Sprintf("no appends acknowledged after restart %d", i) })
		c.kill()
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		c.start()
	}
	f.waitEachWriter(t, f.snapshot(), 3, 30*time.Second)
	f.finish()
	// A request the client gave up on may still be at work in the server:
	// every append that will ever land has landed once the process has
	// exited. Stop it cleanly, then start it again for the projections to
	// catch up.
	c.stop()
	c.start()

	pool := openPool(t, cluster.URL(""), 4)
	rows := readLog(t, pool)
	fg := verifyLog(t, rows, led)
	verifyAudit(t, pool, rows, &fg)
	// The analytics projection runs beside the audit one, at its own pace.
	waitCheckpoint(t, pool, analytics.Name, int64(len(rows)))
	var counted int64
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(events), 0) FROM analytics_event_counts`).Scan(&counted); err != nil {
		t.Fatal(err)
	}
	if counted != int64(len(rows)) {
		t.Errorf("analytics counts %d events, the log holds %d", counted, len(rows))
	}
	c.stop()
	fg.Faults = kills
	fg.Extra = map[string]any{"kind": "SIGKILL of eventstream serve", "analytics_counted": counted}
	if fg.Lost != 0 || fg.Duplicated != 0 || fg.Partial != 0 {
		t.Errorf("lost %d, duplicated %d, partly written %d", fg.Lost, fg.Duplicated, fg.Partial)
	}
	if fg.FailedAttempts == 0 {
		t.Errorf("no request failed: the kills did not hit the writers, so the test proved nothing")
	}
	report(t, fg)
}
