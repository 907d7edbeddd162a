package pgcluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNewReapsTheClustersOfProcessesThatDiedWithoutCleanup: a test binary
// that go test -timeout kills runs no cleanup, and its server ran on,
// holding its port and memory until the machine stopped. New stops and
// removes such a cluster (its owner's process id no longer runs) and
// leaves alone one whose owner runs.
func TestNewReapsTheClustersOfProcessesThatDiedWithoutCleanup(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skipf("skipped: %v", err)
	}
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

	// Owned by this process, which runs: untouched.
	reapOrphans(c.bin, filepath.Dir(c.root))
	if !c.Running() || syscall.Kill(pid, 0) != nil {
		t.Fatal("a cluster whose owner runs was stopped")
	}
	if _, err := os.Stat(c.root); err != nil {
		t.Fatalf("a cluster whose owner runs was removed: %v", err)
	}

	// Owned by a process that has ended: reaped.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(strconv.Itoa(gone.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans(c.bin, filepath.Dir(c.root))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned cluster's postmaster (pid %d) still runs (kill 0: %v)", pid, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("the orphaned cluster's folder is still there: %v", err)
	}
}
