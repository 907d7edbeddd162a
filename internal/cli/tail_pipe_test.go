package cli_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/syncbuf"
)

// TestTailEndsWhenItsReaderGoesAway: `eventstream tail | head -1` ends
// when head does, silently, also when no event comes after the one head
// read. Before, tail noticed the closed pipe only on its next write, so
// with a quiet log it waited (and held the pipeline) until Ctrl-C.
func TestTailEndsWhenItsReaderGoesAway(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(1)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", c.url, "tail", "--from", "1")
	cmd.Env = cleanEnv()
	cmd.Stdout = w
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Read the one event, as head -1 does, and go away.
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil {
		t.Fatalf("tail printed no line: %v; stderr: %s", err, stderr.String())
	}
	r.Close()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGPIPE) {
			t.Fatalf("tail after its reader went away: %v, want exit 0 (or SIGPIPE); stderr: %s", err, stderr.String())
		}
		if s := stderr.String(); strings.Contains(s, "eventstream:") || strings.Contains(s, "broken pipe") {
			t.Fatalf("tail after its reader went away printed an error: %s", s)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("tail still running 15s after its reader went away; stderr: %s", stderr.String())
	}
}
