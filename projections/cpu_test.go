package projections_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// On a 2-core machine shared with other work, events/s says little by
// itself; cpuMeter also measures the CPU time each stage of the pipeline
// used (this process, and the PostgreSQL backends serving it, read from
// /proc on the same host), which does not depend on the load.

// processCPU is the CPU time of one process, from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz, true
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendPIDs lists the server processes of the connections named app.
func backendPIDs(tb testing.TB, pool *pgxpool.Pool, app string) []int {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		tb.Fatal(err)
	}
	return pids
}

// cpuMeter sums CPU time per stage between start and stop.
type cpuMeter struct {
	pids  map[string][]int
	start map[int]time.Duration
	usage map[string]time.Duration
}

func newCPUMeter() *cpuMeter {
	return &cpuMeter{pids: map[string][]int{}, start: map[int]time.Duration{}, usage: map[string]time.Duration{}}
}

// reset forgets what was measured and watched so far.
func (m *cpuMeter) reset() {
	clear(m.pids)
	clear(m.start)
	clear(m.usage)
}

// watch starts counting a stage's processes from now.
func (m *cpuMeter) watch(stage string, pids ...int) {
	for _, pid := range pids {
		if _, seen := m.start[pid]; seen {
			continue
		}
		if c, ok := processCPU(pid); ok {
			m.pids[stage] = append(m.pids[stage], pid)
			m.start[pid] = c
		}
	}
}

// watchNew counts a process started for this measurement from its start.
func (m *cpuMeter) watchNew(stage string, pid int) {
	if _, seen := m.start[pid]; !seen {
		m.pids[stage] = append(m.pids[stage], pid)
		m.start[pid] = 0
	}
}

// sample adds what the watched processes used since they were watched;
// call it before their connections close.
func (m *cpuMeter) sample() {
	for stage, pids := range m.pids {
		for _, pid := range pids {
			if c, ok := processCPU(pid); ok {
				m.usage[stage] += c - m.start[pid]
				m.start[pid] = c
			}
		}
	}
}

// report adds per-event CPU figures to the benchmark: microseconds of CPU
// per event for each stage and in all, and the rate two idle cores could
// sustain (bounded by the busiest stage and by the total).
func (m *cpuMeter) report(b *testing.B, events int, self time.Duration) {
	m.usage["client"] += self
	total, busiest := time.Duration(0), time.Duration(0)
	for stage, d := range m.usage {
		b.ReportMetric(float64(d.Microseconds())/float64(events), stage+"-cpu-us/event")
		total += d
		busiest = max(busiest, d)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(events), "cpu-us/event")
	if total > 0 {
		perEvent := total.Seconds() / float64(events)
		bound := min(2/perEvent, 1/(busiest.Seconds()/float64(events)))
		b.ReportMetric(bound, "events/s@2-idle-cores")
	}
}
