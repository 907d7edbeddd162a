package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/syncbuf"
)

// TestTailCarriesOnAcrossAConnectionCut: tail follows the log until
// interrupted, so a connection cut under a read (a database restart, a
// failover, a network blip) is waited out, not the end of the command:
// after the cut, tail still prints what is appended next, each event
// once, and Ctrl-C still ends it with exit code 0.
func TestTailCarriesOnAcrossAConnectionCut(t *testing.T) {
	t.Parallel()
	c, proxy, proxied := proxiedCLI(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", proxied, "tail")
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	seen := map[string]int{}
	// appendUntilPrinted appends one event at a time (not through the
	// proxy) until tail prints one: tail starts at the head, and after the
	// cut it may take a moment to read again.
	appendUntilPrinted := func(stage string) {
		t.Helper()
		deadline := time.After(45 * time.Second)
		for {
			r := c.must(0, "append", "--json", "--stream", "cut", "--type", "course.generation.requested", "--tenant", "acme", "--data", requested())
			id, _ := jsonLines(t, r.stdout)[0]["id"].(string)
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("%s: tail ended: %v\nstderr: %s", stage, cmd.Wait(), stderr.String())
					}
					got, _ := jsonLines(t, l)[0]["id"].(string)
					if seen[got]++; seen[got] > 1 {
						t.Fatalf("%s: tail printed %s twice", stage, got)
					}
					if got == id {
						return
					}
					continue
				case <-time.After(500 * time.Millisecond):
				case <-deadline:
					t.Fatalf("%s: tail printed nothing; stderr: %s", stage, stderr.String())
				}
				break
			}
		}
	}
	appendUntilPrinted("before the cut")
	// Cut the connection that carries the rows of tail's next read of the
	// log, as a restart does to a query in flight (a connection cut while
	// idle is replaced unnoticed by the pool).
	var armed, cut atomic.Bool
	armed.Store(true)
	proxy.SetCut(func(ch faultproxy.Chunk) bool {
		if ch.Dir == faultproxy.ToClient && bytes.Contains(ch.Data, []byte("course.generation.requested")) && armed.CompareAndSwap(true, false) {
			cut.Store(true)
			return true
		}
		return false
	})
	appendUntilPrinted("after the cut")
	if !cut.Load() {
		t.Fatal("no read of the log went through the proxy")
	}

	_ = cmd.Process.Signal(syscall.SIGINT)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail after Ctrl-C: %v; stderr: %s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

// TestTailFromPastTheHead: --from is the first position to print, also
// when the log has not reached it yet: tail waits for it and prints the
// event at that position when it comes, and every one after. Before, it
// subscribed after --from, so that event was never printed (while the
// same command run once it existed did print it).
func TestTailFromPastTheHead(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bg := c.start(ctx, "tail", "--from", "4")
	// Let tail connect and look at the log before it grows to 4: the
	// event at 4 is then one tail must wait for, not history.
	waitSocket(t, bg)
	time.Sleep(time.Second)
	c.appendMany(3) // positions 3, 4 and 5
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got = got[:0]
		for _, e := range jsonLines(t, bg.stdout.String()) {
			got = append(got, fmt.Sprint(e["position"]))
		}
		if len(got) > 0 && got[len(got)-1] == "5" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	if err := <-bg.exited; err != nil {
		t.Fatalf("tail after Ctrl-C: %v; stderr: %s", err, bg.stderr.String())
	}
	if got, want := strings.Join(got, " "), "4 5"; got != want {
		t.Fatalf("tail --from 4 with the head at 2 printed positions %q, want %q; stderr: %s", got, want, bg.stderr.String())
	}
}

// waitSocket waits until the process b runs has a socket open (it has
// connected to the database); without /proc it waits half a second.
func waitSocket(t *testing.T, b *background) {
	t.Helper()
	waitFD(t, b, "a socket", func(target string) bool { return strings.HasPrefix(target, "socket:") })
}

// TestTailCtrlCWhileConnectingExitsZero: Ctrl-C is how tail ends, with
// exit code 0, also when it comes before tail has started following (the
// database slow to answer): before, that Ctrl-C ended it with 130, as an
// interrupted job.
func TestTailCtrlCWhileConnectingExitsZero(t *testing.T) {
	t.Parallel()
	stalled := stalledCLI(t)
	if err := interruptWhileConnecting(t, stalled, "tail"); err != nil {
		t.Fatalf("tail after Ctrl-C while connecting: %v", err)
	}
}

// proxiedCLI is a CLI on a migrated schema, a fault proxy in front of its
// database, and the database URL through that proxy (c.url still reaches
// the database directly).
func proxiedCLI(t *testing.T) (*cli, *faultproxy.Proxy, string) {
	t.Helper()
	c := newCLI(t)
	c.must(0, "migrate")
	u, err := url.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	return c, proxy, u.String()
}

// stalledCLI is a CLI whose connections go through a proxy that lets
// nothing through: a command started on it is still connecting when the
// test interrupts it.
func stalledCLI(t *testing.T) *cli {
	t.Helper()
	c, proxy, proxied := proxiedCLI(t)
	proxy.SetStall(true)
	stalled := *c
	stalled.url = proxied
	return &stalled
}

// interruptWhileConnecting starts the command, sends it SIGINT once it
// has a socket open (its connection to the stalled proxy, which answers
// nothing), and returns how it exited (nil for exit 0, an *exec.ExitError
// otherwise); stderr is in the error's text. The proxy's Open count is no
// sign here: a stalled proxy holds a new connection before it counts it,
// and leaves the next ones in its listener's backlog.
func interruptWhileConnecting(t *testing.T, c *cli, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := c.start(ctx, args...)
	waitSocket(t, b)
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-b.exited:
		if err != nil {
			return fmt.Errorf("%w; stderr: %s", err, b.stderr.String())
		}
		return nil
	case <-time.After(20 * time.Second):
		t.Fatalf("%v still running 20s after Ctrl-C; stderr: %s", args, b.stderr.String())
		return nil
	}
}

// TestCtrlCWhileConnectingIsInterrupted: Ctrl-C while a command is still
// connecting ends it as interrupted (exit 130, "interrupted"), as it does
// later, not as a connection failure (exit 1) that blames the server.
func TestCtrlCWhileConnectingIsInterrupted(t *testing.T) {
	t.Parallel()
	stalled := stalledCLI(t)
	for _, args := range [][]string{{"read", "--all"}, {"export", "--output", filepath.Join(stalled.dir, "out.ndjson")}, {"projections", "status"}} {
		err := interruptWhileConnecting(t, stalled, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || strings.Contains(err.Error(), "cannot connect") {
			t.Errorf("%v after Ctrl-C while connecting: %v, want exit 130 without a connection failure", args, err)
		}
	}
}
