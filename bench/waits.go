package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Waits is what the PostgreSQL backends serving a phase were doing, from
// pg_stat_activity and pg_locks sampled every Config.SampleWaits. It says
// where a phase's time goes on the server: on the CPU, waiting for its
// client (Client:ClientRead while active: the rest of a message, or the
// next message of a pipeline), for the WAL flush of a commit
// (IO:WALSync), for a lock (Lock:advisory: our append lock), ...
type Waits struct {
	IntervalMs float64 `json:"interval_ms"`
	Samples    int64   `json:"samples"`
	// Failed is how many samples failed (a query error, a broken
	// connection) and are in no figure below.
	Failed int64 `json:"failed,omitempty"`
	// Backends is, for each state ("CPU" when the backend waits on
	// nothing, else wait_event_type:wait_event), the mean number of the
	// phase's active backends in it.
	Backends map[string]float64 `json:"backends"`
	// LockHeld is the share of samples in which one of the phase's
	// backends held an advisory lock: in our write phases, the append
	// lock, which serialises the groups (0 on the raw side, which takes
	// none).
	LockHeld float64 `json:"lock_held"`
	// Holder is, over the samples in which the lock was held, the share
	// of each state of the backend that held it.
	Holder map[string]float64 `json:"holder,omitempty"`
}

// waitCounts are the raw counts of a phase's samples; rounds add up.
type waitCounts struct {
	interval time.Duration
	samples  int64
	failed   int64
	// err is the sampler's first failure (nil: none).
	err    error
	states map[string]int64
	held   int64
	holder map[string]int64
}

func (w *waitCounts) add(u *waitCounts) *waitCounts {
	if w == nil {
		return u
	}
	if u == nil {
		return w
	}
	out := &waitCounts{interval: w.interval, samples: w.samples + u.samples, failed: w.failed + u.failed, held: w.held + u.held,
		err: cmp.Or(w.err, u.err), states: maps.Clone(w.states), holder: maps.Clone(w.holder)}
	for k, n := range u.states {
		out.states[k] += n
	}
	for k, n := range u.holder {
		out.holder[k] += n
	}
	return out
}

// waits turns the counts into the report's shares (nil: nothing was
// sampled, not even a failure).
func (w *waitCounts) waits() *Waits {
	if w == nil || w.samples+w.failed == 0 {
		return nil
	}
	out := &Waits{IntervalMs: float64(w.interval) / float64(time.Millisecond), Samples: w.samples, Failed: w.failed,
		Backends: map[string]float64{}}
	if w.samples == 0 {
		return out
	}
	out.LockHeld = round(float64(w.held)/float64(w.samples), 3)
	for k, n := range w.states {
		out.Backends[k] = round(float64(n)/float64(w.samples), 3)
	}
	if w.held > 0 {
		out.Holder = map[string]float64{}
		for k, n := range w.holder {
			out.Holder[k] = round(float64(n)/float64(w.held), 3)
		}
	}
	return out
}

// waitQuery reads the state of every active backend of the run but the
// sampler's own, and whether it holds an advisory lock. Each sample is its
// own statement and transaction: pg_stat_activity is read once per
// transaction and kept for its rest.
const waitQuery = `SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'),
	EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)
FROM pg_stat_activity a
WHERE starts_with(a.application_name, $1) AND a.pid <> pg_backend_pid() AND a.state = 'active'`

// sampleWaits samples the run's backends every interval until stop is
// called, which returns the counts. A sample that fails is counted as
// failed and left out of the figures (the phase goes on); the first
// failure is kept for the caller to report. A connection that breaks is
// replaced at the next tick.
func sampleWaits(ctx context.Context, pool *pgxpool.Pool, app string, interval time.Duration) (stop func() *waitCounts) {
	w := &waitCounts{interval: interval, states: map[string]int64{}, holder: map[string]int64{}}
	fail := func(err error) {
		w.failed++
		if w.err == nil {
			w.err = err
		}
	}
	stopFn := background(ctx, func(ctx context.Context) {
		var conn *pgxpool.Conn
		defer func() {
			if conn != nil {
				conn.Release()
			}
		}()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if conn == nil {
				c, err := pool.Acquire(ctx)
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("connect: %w", err))
					}
					continue
				}
				conn = c
			}
			sample, held, err := takeSample(ctx, conn, app)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				fail(err)
				if conn.Conn().IsClosed() {
					conn.Release()
					conn = nil
				}
				continue
			}
			w.samples++
			for _, s := range sample {
				w.states[s]++
			}
			if held != "" {
				w.held++
				w.holder[held]++
			}
		}
	})
	return func() *waitCounts {
		stopFn()
		return w
	}
}

// takeSample reads one sample: the state of each of the run's active
// backends, and that of the one holding an advisory lock ("" if none).
func takeSample(ctx context.Context, conn *pgxpool.Conn, app string) (sample []string, held string, err error) {
	rows, err := conn.Query(ctx, waitQuery, app)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var (
		state string
		holds bool
	)
	for rows.Next() {
		if err := rows.Scan(&state, &holds); err != nil {
			return nil, "", err
		}
		sample = append(sample, state)
		if holds {
			held = state
		}
	}
	return sample, held, rows.Err()
}

// describeWaits is the text report's line for one side's waits.
func describeWaits(side string, w *Waits) string {
	var b strings.Builder
	failed := ""
	if w.Failed > 0 {
		failed = fmt.Sprintf(", %d failed", w.Failed)
	}
	fmt.Fprintf(&b, "%s waits (mean active backends, %d samples every %s ms%s): %s", side, w.Samples, ms(w.IntervalMs), failed, topShares(w.Backends, "%.2f"))
	if w.LockHeld > 0 {
		fmt.Fprintf(&b, "; an advisory lock (the append lock) held %.0f%% of the time, its holder: %s", 100*w.LockHeld, topShares(w.Holder, "%.0f%%"))
	}
	return b.String()
}

// topShares lists the five largest entries, largest first.
func topShares(m map[string]float64, format string) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for i, k := range keys {
		if i == 5 {
			parts = append(parts, "...")
			break
		}
		v := m[k]
		if strings.HasSuffix(format, "%%") {
			v *= 100
		}
		parts = append(parts, k+" "+fmt.Sprintf(format, v))
	}
	if len(parts) == 0 {
		return "none active"
	}
	return strings.Join(parts, ", ")
}
