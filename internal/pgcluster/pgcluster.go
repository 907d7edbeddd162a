// Package pgcluster starts a throwaway PostgreSQL cluster for tests that
// must harm the database: stop it (fast or immediate), crash it, start it
// again. The cluster lives in its own temporary folder on a free loopback
// port, runs with fsync on (so a crash loses nothing that was committed),
// and is removed when the test ends. It never touches the shared server
// the other tests use.
//
// The server programs refuse to run as root; when the test runs as root
// they run as the "postgres" user, which owns the folder.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/pgbin"
)

// Superuser is the role initdb creates; it connects without a password
// from loopback.
const Superuser = "postgres"

// Mode is how Stop shuts the server down (pg_ctl stop -m).
type Mode string

const (
	// Fast ends every session at once, rolls their transactions back and
	// writes a checkpoint: a clean shutdown that does not wait for clients.
	Fast Mode = "fast"
	// Immediate ends every process without a checkpoint: a crash, with
	// recovery from the WAL at the next start.
	Immediate Mode = "immediate"
)

// Options adjust the cluster. The zero value is sensible.
type Options struct {
	// Settings are extra postgresql.conf lines (name → value, written as
	// given: quote strings yourself).
	Settings map[string]string
	// Password, if set, is the superuser's password, and TCP connections
	// must give it (scram-sha-256); otherwise they are trusted.
	Password string
}

// Cluster is a running (or stopped) throwaway cluster.
type Cluster struct {
	bin  string
	root string // temporary folder, owned by the server's user
	data string
	log  string
	port int
	cred *syscall.Credential
	pass string

	mu      sync.Mutex
	running bool
}

// ErrNoServer is returned (and Start skips the test) when initdb and
// pg_ctl are not installed.
var ErrNoServer = errors.New("pgcluster: PostgreSQL server programs (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin")

// Start initialises and starts a new cluster, and stops and removes it when
// the test ends. It skips the test when the server programs are missing.
func Start(tb testing.TB, opts ...Options) *Cluster {
	tb.Helper()
	c, err := New(opts...)
	if errors.Is(err, ErrNoServer) {
		tb.Skipf("skipped: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pgcluster: server log (last lines):\n%s", c.LogTail(40))
		}
		if err := c.Destroy(); err != nil {
			tb.Errorf("pgcluster: %v", err)
		}
	})
	return c
}

// New initialises and starts a cluster; Destroy removes it.
func New(opts ...Options) (*Cluster, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, pass: o.Password}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root, and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	reapOrphans(bin, os.TempDir())
	c.root, err = os.MkdirTemp("", "pgcluster-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	// The owner's pid namespace first, then its pid: a folder with an
	// owner file always says in which namespace its pid means something.
	if ns := pidNamespace(); ns != "" {
		if err := os.WriteFile(filepath.Join(c.root, ownerNSFile), []byte(ns), 0o644); err != nil {
			_ = os.RemoveAll(c.root)
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(c.root)
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.root, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			_ = os.RemoveAll(c.root)
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
	}
	c.data = filepath.Join(c.root, "data")
	c.log = filepath.Join(c.root, "server.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// --no-sync only skips syncing initdb's own files: the server itself
	// runs with fsync on (below).
	args := []string{"-D", c.data, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"}
	if o.Password != "" {
		pw := filepath.Join(c.root, "pwfile")
		werr := os.WriteFile(pw, []byte(o.Password+"\n"), 0o600)
		if werr == nil && c.cred != nil {
			werr = os.Chown(pw, int(c.cred.Uid), int(c.cred.Gid))
		}
		if werr != nil {
			_ = os.RemoveAll(c.root)
			return nil, fmt.Errorf("pgcluster: write the password file: %w", werr)
		}
		defer os.Remove(pw)
		args = append(args, "--auth-host=scram-sha-256", "--pwfile="+pw)
	}
	if out, err := c.run(ctx, "initdb", args...); err != nil {
		_ = os.RemoveAll(c.root)
		return nil, fmt.Errorf("pgcluster: initdb: %v: %s", err, tail(out, 5))
	}
	settings := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"unix_socket_directories": "''",
		"fsync":                   "on",
		"synchronous_commit":      "on",
		"full_page_writes":        "on",
		"max_connections":         "100",
		"shared_buffers":          "32MB",
		"log_min_messages":        "warning",
		"log_line_prefix":         "'%m [%p] '",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# pgcluster\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.RemoveAll(c.root)
		return nil, fmt.Errorf("pgcluster: write postgresql.conf: %w", err)
	}
	// A free port can be taken between our check and the server's bind:
	// try a few.
	for attempt := 0; ; attempt++ {
		c.port, err = freePort()
		if err == nil {
			err = c.Start()
		}
		if err == nil {
			return c, nil
		}
		if attempt == 4 {
			_ = c.Destroy()
			return nil, err
		}
	}
}

// FindBinaries returns the folder holding initdb and pg_ctl (pgbin.Find),
// or ErrNoServer.
func FindBinaries() (string, error) {
	d, err := pgbin.Find()
	if err != nil {
		return "", ErrNoServer
	}
	return d, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the loopback port the server listens on (the same across
// restarts).
func (c *Cluster) Port() int { return c.port }

// Addr is "127.0.0.1:port".
func (c *Cluster) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }

// URL is the superuser's connection URL for database db ("" = postgres),
// with the password if the cluster has one.
func (c *Cluster) URL(db string) string { return c.URLAs(Superuser, c.pass, db) }

// URLAs is the connection URL of another role (password "" for none).
func (c *Cluster) URLAs(role, password, db string) string {
	if db == "" {
		db = "postgres"
	}
	u := url.URL{Scheme: "postgres", Host: c.Addr(), Path: "/" + db, RawQuery: "sslmode=disable", User: url.User(role)}
	if password != "" {
		u.User = url.UserPassword(role, password)
	}
	return u.String()
}

// Dir is the cluster's data folder.
func (c *Cluster) Dir() string { return c.data }

// Running reports whether the server was started and not stopped since.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// Start starts the stopped server and waits until it accepts connections
// (after crash recovery, if it was stopped in Immediate mode).
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "90", "-D", c.data, "-l", c.log,
		"-o", "-p "+strconv.Itoa(c.port))
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl start on port %d: %v: %s\n%s", c.port, err, tail(out, 5), c.LogTail(10))
	}
	c.running = true
	return nil
}

// Stop shuts the server down in the given mode and waits until it is gone.
func (c *Cluster) Stop(mode Mode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "90", "-m", string(mode), "-D", c.data)
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop -m %s: %v: %s", mode, err, tail(out, 5))
	}
	c.running = false
	return nil
}

// Restart stops the server in mode, waits down for the given time, and
// starts it again.
func (c *Cluster) Restart(mode Mode, down time.Duration) error {
	if err := c.Stop(mode); err != nil {
		return err
	}
	time.Sleep(down)
	return c.Start()
}

// Destroy stops the server (immediately) and removes its folder. It
// stops a server that Start did not see come up, too: pg_ctl start gives
// up waiting after its timeout but leaves the server starting, and
// removing the folder under it would leave the server running.
func (c *Cluster) Destroy() error {
	err := c.Stop(Immediate)
	if runs, known := c.serverRuns(); (runs || !known) && err == nil {
		// Not known to run, yet a postmaster may: stop it. A stale pid
		// file (a postmaster killed outright) is left alone: its pid may
		// be another process's now, which pg_ctl stop would signal.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, _ = c.run(ctx, "pg_ctl", "stop", "-w", "-t", "90", "-m", string(Immediate), "-D", c.data)
		cancel()
	}
	if rerr := os.RemoveAll(c.root); err == nil {
		err = rerr
	}
	return err
}

// ownerFile, in a cluster's folder, holds the process id of the process
// that made it; ownerNSFile its pid namespace (Linux's
// /proc/self/ns/pid), in which that id means that process.
const (
	ownerFile   = "owner.pid"
	ownerNSFile = "owner.ns"
)

// reapOrphans stops and removes the clusters in dir (pgcluster-*) whose
// owning process is gone without destroying them: a test binary killed by
// go test -timeout, or by a signal, runs no cleanup, and the server it
// started would run on, holding its port and memory, until the machine
// stops. Reaping is a courtesy, and a live process's cluster must never
// be touched, so a folder is left alone unless it is known to be an
// orphan:
//   - with no owner file (a New in another process may be making it right
//     now), or one whose owner runs (or whose process id another process
//     has taken since);
//   - owned by a process of another pid namespace (another container
//     sharing this temporary folder: its owner's pid says nothing here),
//     or of an unknown one (not Linux, or a folder of an older version);
//   - whose postmaster.pid names a running process that cannot be told to
//     be its server (its working folder, /proc/PID/cwd, unreadable).
//
// A postmaster.pid naming a process that is not this cluster's server
// (the server died too, and its pid was taken) is stale: nothing is
// signalled, and the folder is removed. pg_ctl stop, given the pid file,
// would have sent SIGQUIT to whatever process had that pid.
func reapOrphans(bin, dir string) {
	ns := pidNamespace()
	if ns == "" {
		return
	}
	folders, _ := filepath.Glob(filepath.Join(dir, "pgcluster-*"))
	for _, root := range folders {
		b, err := os.ReadFile(filepath.Join(root, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processRuns(pid) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(root, ownerNSFile)); err != nil || strings.TrimSpace(string(b)) != ns {
			continue
		}
		orphan := &Cluster{bin: bin, root: root, data: filepath.Join(root, "data")}
		if fi, err := os.Stat(root); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
				orphan.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		runs, known := orphan.serverRuns()
		if !known {
			continue
		}
		if runs {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, _ = orphan.run(ctx, "pg_ctl", "stop", "-w", "-t", "15", "-m", string(Immediate), "-D", orphan.data)
			cancel()
		}
		// A server that did not stop in time ends by itself once its
		// postmaster.pid is gone (it checks the file every minute).
		_ = os.RemoveAll(root)
	}
}

// serverRuns reports whether the process postmaster.pid names is this
// cluster's server (its working folder is the data folder, where the
// postmaster changes to); known is false when that cannot be told.
func (c *Cluster) serverRuns() (runs, known bool) {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, true
	}
	if err != nil {
		return false, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return false, false // being written, or not a pid file
	}
	if !processRuns(pid) {
		return false, true
	}
	want, err := filepath.EvalSymlinks(c.data)
	if err != nil {
		return false, false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		if !processRuns(pid) {
			return false, true
		}
		return false, false
	}
	return cwd == want, true
}

// pidNamespace is this process's pid namespace ("pid:[4026531836]"), or
// "" where it cannot be read (not Linux).
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// processRuns reports whether a process with this id exists (signal 0:
// EPERM means it does, under another user).
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	return tail(b, n)
}

func (c *Cluster) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.root
	// Its own process group: a Ctrl-C meant for the test does not reach
	// the server half-way; cleanup stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
