package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// deadPID is the process id of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	return gone.Process.Pid
}

// TestReapLeavesAClusterOfAnotherPIDNamespaceAlone: a temporary folder
// shared with another container (another pid namespace) holds clusters
// whose owners' pids mean nothing here; that the pid runs in no process
// of this namespace does not make the cluster an orphan, and its live
// server was stopped and its folder removed.
func TestReapLeavesAClusterOfAnotherPIDNamespaceAlone(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	if pidNamespace() == "" {
		t.Skip("skipped: no /proc/self/ns/pid")
	}
	c, pid := newWithPID(t)
	if err := os.WriteFile(filepath.Join(c.root, ownerNSFile), []byte("pid:[1]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(strconv.Itoa(deadPID(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans(c.bin, filepath.Dir(c.root))
	time.Sleep(200 * time.Millisecond)
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("the server of a cluster owned in another pid namespace was stopped")
	}
	if _, err := os.Stat(c.root); err != nil {
		t.Fatalf("a cluster owned in another pid namespace was removed: %v", err)
	}
}

// TestReapSignalsNoProcessAStalePIDFileNames: an orphan whose server died
// too (killed with its owner, or the machine restarted with the folder
// kept) leaves a postmaster.pid whose pid another process may have taken
// since; pg_ctl stop sent that process SIGQUIT. The folder is removed,
// and the process left alone.
func TestReapSignalsNoProcessAStalePIDFileNames(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	if pidNamespace() == "" {
		t.Skip("skipped: no /proc/self/ns/pid")
	}
	c, _ := newWithPID(t)
	if err := c.Stop(Fast); err != nil {
		t.Fatal(err)
	}
	// A process of the server's user that took the server's pid.
	exited := staleServerPID(t, c)
	if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(strconv.Itoa(deadPID(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans(c.bin, filepath.Dir(c.root))
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("reaping the orphan signalled the process its stale postmaster.pid names: %v", err)
	case <-time.After(time.Second):
	}
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("the orphan's folder is still there: %v", err)
	}
}

// TestDestroySignalsNoProcessAStalePIDFileNames: Destroy of a cluster not
// known to run stopped whatever process its postmaster.pid named; a
// postmaster killed outright leaves a pid that another process may have
// taken since.
func TestDestroySignalsNoProcessAStalePIDFileNames(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	c, _ := newWithPID(t)
	if err := c.Stop(Fast); err != nil {
		t.Fatal(err)
	}
	exited := staleServerPID(t, c)
	if err := c.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("Destroy signalled the process its stale postmaster.pid names: %v", err)
	case <-time.After(time.Second):
	}
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("the cluster's folder is still there after Destroy: %v", err)
	}
}

// staleServerPID starts a process of the server's user and writes its pid
// to the stopped cluster's postmaster.pid, as if it had taken the pid of
// a server killed outright; the channel receives its Wait's result.
func staleServerPID(t *testing.T, c *Cluster) chan error {
	t.Helper()
	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()
	t.Cleanup(func() { _ = other.Process.Kill(); <-exited })
	stale := strconv.Itoa(other.Process.Pid) + "\n" + c.data + "\n"
	if err := os.WriteFile(filepath.Join(c.data, "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.cred != nil {
		if err := os.Chown(filepath.Join(c.data, "postmaster.pid"), int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return exited
}
