package bench

import (
	"bufio"
	"context"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// usage is a snapshot of the bench process's own CPU time. The server's
// CPU is not in it: PostgreSQL runs in other processes.
type usage struct {
	user, sys time.Duration
}

func currentUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{user: time.Duration(ru.Utime.Nano()), sys: time.Duration(ru.Stime.Nano())}
}

// resetPeakRSS starts a new peak-memory window. On Linux, writing 5 to
// /proc/self/clear_refs resets VmHWM to the current RSS, so each phase
// gets its own peak; where that fails, the peak is the process's since
// start (ru_maxrss), which can only over-state a later phase. The last
// phase's garbage is collected and returned to the system first: only
// collected, it stayed resident, and the window started at the last
// phase's peak.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the peak resident set size in bytes: VmHWM from
// /proc/self/status, else ru_maxrss.
func peakRSS() int64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
				fields := strings.Fields(rest)
				if len(fields) >= 1 {
					if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
						return kb * 1024
					}
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}

// loadAverage returns the 1-, 5- and 15-minute load averages, or nil.
func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// cpuModel returns the processor's model name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// serverMeter measures the CPU time of the PostgreSQL backends serving the
// run's connections (those whose application_name starts with the run's
// own), from /proc: it works when the server runs on this host, in its
// process namespace, and its processes are readable, and reports zero
// otherwise. A pid that names another process here (the server in a
// container, whose pids are its own) is not counted (backendCPU).
//
// It measures the server's background processes apart (backgroundTypes:
// the WAL writer, the checkpointer, the background writer, autovacuum):
// the WAL a phase writes is also written, flushed and checkpointed by
// them, not only by the backends. They serve the whole server, so their
// figure includes whatever else the server did meanwhile, and an
// autovacuum worker counts from the first sample that sees it.
type serverMeter struct {
	pool  *pgxpool.Pool
	app   string
	start map[int]time.Duration
	bg    map[int]time.Duration // background processes at the start

	// A sampler keeps each backend's latest figure, so that a connection
	// closed during the phase (a rebuild's own) still counts, up to the
	// last sample.
	mu       sync.Mutex
	latest   map[int]time.Duration
	bgLatest map[int]time.Duration
	stopFn   func()
}

// backgroundTypes are the backend_type values of pg_stat_activity that
// serverMeter counts as the server's background work.
var backgroundTypes = []string{"walwriter", "checkpointer", "background writer", "autovacuum launcher", "autovacuum worker"}

// serverSample is how often the meter samples while a phase runs.
const serverSample = 100 * time.Millisecond

func newServerMeter(ctx context.Context, pool *pgxpool.Pool, app string) *serverMeter {
	m := &serverMeter{pool: pool, app: app, latest: map[int]time.Duration{}, bgLatest: map[int]time.Duration{}}
	m.start, m.bg = m.sample(ctx)
	m.stopFn = background(ctx, func(ctx context.Context) {
		t := time.NewTicker(serverSample)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.merge(m.sample(ctx))
			}
		}
	})
	return m
}

func (m *serverMeter) merge(backends, background map[int]time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, d := range backends {
		m.latest[pid] = max(m.latest[pid], d)
	}
	for pid, d := range background {
		m.bgLatest[pid] = max(m.bgLatest[pid], d)
	}
}

// sample is the CPU time now of the run's backends and, apart, of the
// server's background processes (backgroundTypes), from one query.
func (m *serverMeter) sample(ctx context.Context) (backends, background map[int]time.Duration) {
	rows, err := m.pool.Query(ctx, `SELECT pid, backend_type = ANY($2) FROM pg_stat_activity
		WHERE starts_with(application_name, $1) OR backend_type = ANY($2)`, m.app, backgroundTypes)
	if err != nil {
		return nil, nil
	}
	backends, background = map[int]time.Duration{}, map[int]time.Duration{}
	var (
		pid int32
		bg  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&pid, &bg}, func() error {
		if d, ok := backendCPU(int(pid)); ok {
			if bg {
				background[int(pid)] = d
			} else {
				backends[int(pid)] = d
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil
	}
	return backends, background
}

// observe samples one backend now (see backendTracer).
func (m *serverMeter) observe(pid int) {
	if d, ok := backendCPU(pid); ok {
		m.merge(map[int]time.Duration{pid: d}, nil)
	}
}

// backendTracer is a pgx tracer that samples a connection's backend for
// the meter of the phase in progress (none: it does nothing) after each
// query, COPY and batch: the backend is idle from then until its next
// statement, so a connection that closes between two of the meter's
// ticks still counts in full.
type backendTracer struct {
	meter atomic.Pointer[serverMeter]
}

var (
	_ pgx.QueryTracer    = (*backendTracer)(nil)
	_ pgx.CopyFromTracer = (*backendTracer)(nil)
	_ pgx.BatchTracer    = (*backendTracer)(nil)
)

func (t *backendTracer) observe(conn *pgx.Conn) {
	if m := t.meter.Load(); m != nil && conn != nil {
		m.observe(int(conn.PgConn().PID()))
	}
}

func (t *backendTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *backendTracer) TraceQueryEnd(_ context.Context, conn *pgx.Conn, _ pgx.TraceQueryEndData) {
	t.observe(conn)
}

func (t *backendTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return ctx
}

func (t *backendTracer) TraceCopyFromEnd(_ context.Context, conn *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	t.observe(conn)
}

func (t *backendTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (t *backendTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *backendTracer) TraceBatchEnd(_ context.Context, conn *pgx.Conn, _ pgx.TraceBatchEndData) {
	t.observe(conn)
}

// stop returns the CPU time since the meter started of the run's backends
// and of the server's background processes. A background process that
// started after the meter (an autovacuum worker) counts from zero.
func (m *serverMeter) stop(ctx context.Context) (backends, background time.Duration) {
	m.stopFn()
	m.merge(m.sample(ctx))
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, d := range m.latest {
		backends += d - m.start[pid]
	}
	for pid, d := range m.bgLatest {
		background += d - m.bg[pid]
	}
	return max(backends, 0), max(background, 0)
}

// processCPU reads utime + stime of a process from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, bool) {
	_, d, ok := processStat(pid)
	return d, ok
}

// backendCPU is processCPU of a PostgreSQL process only: a backend's pid
// as the server reports it names another process of this host when the
// server runs in a process namespace of its own (a container), and that
// process's CPU is not the server's.
func backendCPU(pid int) (time.Duration, bool) {
	comm, d, ok := processStat(pid)
	if !ok || (comm != "postgres" && comm != "postmaster") {
		return 0, false
	}
	return d, true
}

// processStat reads the command name and utime + stime of a process from
// /proc/<pid>/stat.
func processStat(pid int) (comm string, cpu time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	j := strings.IndexByte(s, '(')
	if i < 0 || j < 0 || j > i {
		return "", 0, false
	}
	comm = s[j+1 : i]
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return "", 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return comm, time.Duration(u+st) * time.Second / clockTicks, true
}
