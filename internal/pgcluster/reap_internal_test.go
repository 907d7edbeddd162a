package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
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
	c, pid := newWithPID(t)

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
	waitExited(t, pid, "once its owner is gone and a New has reaped it")
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("the orphaned cluster's folder is still there: %v", err)
	}
}
