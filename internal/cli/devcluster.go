package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/brainhq/eventstream/internal/pgbin"
)

// errNoServerBinaries: initdb and pg_ctl are not installed.
var errNoServerBinaries = pgbin.ErrNotFound

// devCluster is a private PostgreSQL cluster in ./.eventstream/pg,
// listening on a free loopback port, for a newcomer with no server set up.
type devCluster struct {
	dir     string
	bin     string
	port    int
	started bool // this process started it, so it stops it
	cred    *syscall.Credential
	log     *slog.Logger
}

// devSuperuser is the superuser initdb creates in a private cluster.
const devSuperuser = "eventstream"

// startDevCluster initialises the cluster on first use, and starts it
// unless it is already running (another eventstream started it); then it
// returns its address.
func startDevCluster(ctx context.Context, workDir string, log *slog.Logger) (*devCluster, error) {
	bin, err := pgbin.Find()
	if err != nil {
		return nil, err
	}
	c := &devCluster{dir: filepath.Join(workDir, ".eventstream", "pg"), bin: bin, log: log}
	if err := c.prepareUser(); err != nil {
		return nil, err
	}
	if port, ok := c.runningPort(ctx); ok {
		c.port = port
		return c, nil
	}
	if _, err := os.Stat(filepath.Join(c.dir, "PG_VERSION")); err != nil {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("private cluster: find a free port: %w", err)
	}
	c.port = port
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c max_connections=200", port)
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.dir, "-l", filepath.Join(c.dir, "server.log"), "-o", opts)
	if err != nil {
		return nil, fmt.Errorf("private cluster: pg_ctl start failed (see %s): %s", filepath.Join(c.dir, "server.log"), lastLine(out))
	}
	c.started = true
	return c, nil
}

// prepareUser arranges for the server programs, which refuse to run as
// root, to run as the postgres user when this process is root.
func (c *devCluster) prepareUser() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("private cluster: running as root and no postgres user to run the server as: %s", pointHint)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

func (c *devCluster) initdb(ctx context.Context) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("private cluster: %w", err)
	}
	if c.cred != nil {
		// The postgres user must reach the folder and own the data.
		_ = os.Chmod(filepath.Dir(c.dir), 0o755)
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("private cluster: %w", err)
		}
	}
	c.log.Info("initialising a private PostgreSQL cluster", "dir", c.dir)
	out, err := c.run(ctx, "initdb", "-D", c.dir, "-U", devSuperuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "-N")
	if err != nil {
		_ = os.RemoveAll(c.dir)
		return fmt.Errorf("private cluster: initdb failed: %s", lastLine(out))
	}
	return nil
}

// devClusterRunning reports whether a private cluster is running in
// workDir's ./.eventstream/pg.
func devClusterRunning(ctx context.Context, workDir string) bool {
	bin, err := pgbin.Find()
	if err != nil {
		return false
	}
	c := &devCluster{dir: filepath.Join(workDir, ".eventstream", "pg"), bin: bin}
	if c.prepareUser() != nil {
		return false
	}
	_, ok := c.runningPort(ctx)
	return ok
}

// runningPort reports the port of a cluster already running in c.dir.
func (c *devCluster) runningPort(ctx context.Context) (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	if _, err := c.run(ctx, "pg_ctl", "status", "-D", c.dir); err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	return port, err == nil
}

func (c *devCluster) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = filepath.Dir(c.dir)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Dir = "/"
	}
	// The server must outlive a Ctrl-C sent to this process group only
	// through pg_ctl stop, never half-started: give it its own group.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Stop stops the cluster if this process started it.
func (c *devCluster) Stop() error {
	if c == nil || !c.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.started = false
	out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", c.dir)
	if err != nil {
		return fmt.Errorf("private cluster: pg_ctl stop: %s", lastLine(out))
	}
	return nil
}

// URL is the connection URL of database db in the cluster.
func (c *devCluster) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", devSuperuser, c.port, db)
}

func (c *devCluster) displayDir(workDir string) string {
	if rel, err := filepath.Rel(workDir, c.dir); err == nil && !strings.HasPrefix(rel, "..") {
		return "./" + rel
	}
	return c.dir
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output"
	}
	return s
}
