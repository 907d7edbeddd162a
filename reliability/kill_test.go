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
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/brainhq/eventstream/cmd/eventstream")
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

// httpFleet appends through the child's API, each writer to its own
// stream, retrying failed requests with the same event ids.
type httpFleet struct {
	url, token string
	led        *ledger
	client     *http.Client
	stop       chan struct{}
	wg         sync.WaitGroup
	acks       []atomic.Int64
}

func (f *httpFleet) post(stream string, body []byte) (eventstore.AppendResult, int, error) {
	req, _ := http.NewRequest("POST", f.url+"/streams/"+stream+"/events", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	res, err := f.client.Do(req)
	if err != nil {
		return eventstore.AppendResult{}, 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 201 {
		return eventstore.AppendResult{}, res.StatusCode, fmt.Errorf("status %d: %s", res.StatusCode, b)
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
		return eventstore.AppendResult{}, 201, fmt.Errorf("decode %s: %w", b, err)
	}
	r := eventstore.AppendResult{Stream: out.Stream}
	for _, e := range out.Events {
		r.Events = append(r.Events, eventstore.Event{ID: e.ID, Version: e.Version, Position: e.Position, Stream: out.Stream})
	}
	return r, 201, nil
}

func (f *httpFleet) write(w int, rng *rand.Rand) {
	defer f.wg.Done()
	stream := fmt.Sprintf("kill-w%02d", w)
	tenant := []string{"acme", "globex"}[w%2]
	for seq := 0; ; seq++ {
		select {
		case <-f.stop:
			return
		default:
		}
		n := 1 + rng.IntN(3)
		rec := &appendRecord{writer: w, stream: stream, ids: make([]uuid.UUID, n)}
		events := make([]string, n)
		for i := range events {
			rec.ids[i] = uuid.New()
			events[i] = fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":{"course_id":%q,"topic":"w%d s%d e%d","attempt":1,"language":"en"},"meta":{"tenant_id":%q}}`,
				rec.ids[i], uuid.NewString(), w, seq, i, tenant)
		}
		body := []byte(`{"expected_version":"any","events":[` + strings.Join(events, ",") + `]}`)
		f.led.add(rec)
		var stopSeen time.Time
		for {
			rec.attempts++
			res, code, err := f.post(stream, body)
			if err == nil {
				rec.acked, rec.result = true, res
				f.acks[w].Add(1)
				f.led.ackedEvents.Add(int64(n))
				break
			}
			f.led.failed(rec, err)
			if code >= 400 && code < 500 {
				f.led.unexpectedf("writer %d: %v", w, err)
			}
			stopping := false
			select {
			case <-f.stop:
				stopping = true
			default:
			}
			if stopping {
				if stopSeen.IsZero() {
					stopSeen = time.Now()
				} else if time.Since(stopSeen) > 60*time.Second {
					f.led.unexpectedf("writer %d could not finish its last append: %v", w, err)
					rec.abandoned = true
					return
				}
			} else if rec.attempts >= 5 {
				rec.abandoned = true
				break
			}
			time.Sleep(time.Duration(30+rng.IntN(100)) * time.Millisecond)
		}
	}
}

// TestProcessKillWhileAppendingAndProjecting runs the real binary
// ("eventstream serve": the HTTP API appends, the projections run in the
// same process) and kills it with SIGKILL at random moments, many times,
// restarting it each time, while four clients append through the API with
// their own event ids and retry failures with the same ids. At the end the
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

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	led := newLedger()
	f := &httpFleet{url: c.url, token: secret, led: led, stop: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}, acks: make([]atomic.Int64, 4)}
	for w := range f.acks {
		f.wg.Add(1)
		go f.write(w, rand.New(rand.NewPCG(seed, uint64(w)+100)))
	}
	total := func() int64 {
		var n int64
		for i := range f.acks {
			n += f.acks[i].Load()
		}
		return n
	}
	kills := scale(6)
	for i := range kills {
		before := total()
		time.Sleep(time.Duration(200+rng.IntN(900)) * time.Millisecond)
		waitFor(t, 30*time.Second, func() bool { return total() > before+5 },
			func() string { return fmt.Sprintf("no appends acknowledged after restart %d\n%s", i, c.logTail()) })
		c.kill()
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		c.start()
	}
	base := make([]int64, len(f.acks))
	for i := range f.acks {
		base[i] = f.acks[i].Load()
	}
	waitFor(t, 30*time.Second, func() bool {
		for i := range f.acks {
			if f.acks[i].Load() < base[i]+3 {
				return false
			}
		}
		return true
	}, func() string { return "a writer did not recover after the last restart\n" + c.logTail() })
	close(f.stop)
	f.wg.Wait()

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
	if t.Failed() {
		t.Logf("serve log:\n%s", c.logTail())
	}
	report(t, fg)
}
