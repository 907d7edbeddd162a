package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDestroyStopsAServerStartDidNotSeeUp checks that Destroy leaves no
// server running when Start failed while the server came up anyway
// (pg_ctl start -w gives up after its timeout, the postmaster goes on):
// Destroy stopped only a server it knew to be running, then removed the
// folder under the other one, which ran on with no data folder and its
// port taken.
func TestDestroyStopsAServerStartDidNotSeeUp(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	c, pid := newWithPID(t)
	// What a Start whose pg_ctl gave up waiting leaves: the server up, the
	// cluster not knowing it.
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()

	if err := c.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	waitExited(t, pid, "after Destroy")
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("the cluster's folder is still there after Destroy: %v", err)
	}
}

// newWithPID starts a cluster and returns it with its postmaster's process
// id; the postmaster is told to quit, and the folder removed, when the
// test ends, whatever the test did to the cluster.
func newWithPID(t *testing.T) (*Cluster, int) {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		_ = c.Destroy()
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		_ = c.Destroy()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		_ = os.RemoveAll(c.root)
	})
	return c, pid
}

// waitExited waits up to 10 s for the process pid to be gone.
func waitExited(t *testing.T, pid int, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the postmaster (pid %d) still runs %s (kill 0: %v)", pid, when, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
