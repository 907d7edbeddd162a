package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgschema"
	"github.com/brainhq/eventstream/schemas"
)

// Run runs one scenario: it creates a fresh schema, runs our phase (the
// event store) and the raw phase (plain pgx on a bare table), verifies
// that every event our phase says it appended is in the log exactly once,
// drops the schema (unless cfg.Keep) and returns the report. A
// configuration it refuses is ErrConfig, before anything is touched.
//
// A failed verification returns the report so far and a *VerifyError
// (errors.Is(err, ErrVerify)): the figures of such a run are not to be
// trusted. A schema that could not be dropped is an error too.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	cfg, err = cfg.resolve()
	if err != nil {
		return Report{}, err
	}
	if cfg.ProfileDir != "" {
		// Made before the run, so that a folder that cannot be made stops
		// it at once instead of after minutes of load with no profile.
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return Report{}, fmt.Errorf("bench: the profile folder: %w", err)
		}
	}
	r, err := open(ctx, cfg)
	if err != nil {
		return Report{}, err
	}
	rep = r.newReport()
	defer func() {
		if cerr := r.close(); cerr != nil {
			cfg.Logger.Warn("bench: cleanup failed", "schema", r.schema, "err", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()
	switch cfg.Scenario {
	case "single", "batch", "hot":
		err = r.writeScenario(ctx, &rep)
	case "project":
		err = r.projectScenario(ctx, &rep)
	case "replay":
		err = r.replayScenario(ctx, &rep)
	case "read":
		err = r.readScenario(ctx, &rep)
	}
	if errors.Is(err, ErrVerify) {
		// The log may have passed before a read model or the raw table
		// failed: the run as a whole is not verified.
		rep.Verified = false
	}
	rep.finish()
	return rep, err
}

// run is the state of one scenario run.
type run struct {
	cfg      Config
	schema   string
	poolCfg  *pgxpool.Config
	reg      *schemas.Registry
	payloads *payloadPool
	// server and syncCommit describe the server, for the report.
	server, syncCommit string
	// app is the application_name of every connection of the run, which
	// is how the server CPU meter finds the run's backends.
	app string
	// tracer feeds the meter of the phase in progress from tracedPool's
	// connections.
	tracer *backendTracer
	// window is the side of the measured phase in progress (nil between
	// phases), for the tests' hooks.
	window atomic.Pointer[string]

	mu     sync.Mutex
	pools  []*pgxpool.Pool
	stores []*postgres.Store
}

func open(ctx context.Context, cfg Config) (*run, error) {
	reg, err := schemas.Default()
	if err != nil {
		return nil, fmt.Errorf("bench: load schemas: %w", err)
	}
	payloads, err := newPayloadPool(cfg.Mix, cfg.EventSize, 64, uint64(cfg.Seed))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: database URL does not parse (details withheld: it may hold a password)", ErrConfig)
	}
	postgres.SetSessionDefaults(pc.ConnConfig)
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "eventstream_bench_" + cfg.Scenario + "_" + hex.EncodeToString(b[:])
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to the database: %w", err)
	}
	defer conn.Close(context.Background())
	var server, syncCommit string
	if err := conn.QueryRow(ctx, `SELECT 'PostgreSQL ' || current_setting('server_version'), current_setting('synchronous_commit')`).Scan(&server, &syncCommit); err != nil {
		return nil, fmt.Errorf("bench: read server settings: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		return nil, fmt.Errorf("bench: create schema %s: %w", schema, err)
	}
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	app := "eventstream-bench-" + hex.EncodeToString(b[:])
	pc.ConnConfig.RuntimeParams["application_name"] = app
	cfg.Logger.Info("bench: schema created", "scenario", cfg.Scenario, "schema", schema)
	return &run{cfg: cfg, schema: schema, poolCfg: pc, reg: reg, payloads: payloads, server: server, syncCommit: syncCommit, app: app,
		tracer: &backendTracer{}}, nil
}

// pool opens a pool of at most conns connections on the run's schema.
func (r *run) pool(ctx context.Context, conns int) (*pgxpool.Pool, error) {
	pc := r.poolCfg.Copy()
	pc.MaxConns = int32(conns)
	return r.addPool(ctx, pc)
}

// warm opens n connections of pool (at most its size) before a clock
// starts: opening them is warm-up, which neither side's figures include.
func warm(ctx context.Context, pool *pgxpool.Pool, n int) error {
	n = min(n, int(pool.Config().MaxConns))
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("bench: open connections before the clock starts: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

// addPool opens a pool of the run, closed with it.
func (r *run) addPool(ctx context.Context, pc *pgxpool.Config) (*pgxpool.Pool, error) {
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bench: open a pool: %w", err)
	}
	r.mu.Lock()
	r.pools = append(r.pools, p)
	r.mu.Unlock()
	return p, nil
}

// tracedPool opens a pool whose connections, and those copied from its
// configuration (a projection rebuild's own), report their backend's CPU
// to the phase's meter after each statement: a connection that closes
// within a phase then counts up to its last statement instead of up to
// the meter's last tick before it closed. It costs a read of /proc per
// statement, so only pools whose connections come and go within a phase
// use it.
func (r *run) tracedPool(ctx context.Context, conns int) (*pgxpool.Pool, error) {
	pc := r.poolCfg.Copy()
	pc.MaxConns = int32(conns)
	pc.ConnConfig.Tracer = r.tracer
	return r.addPool(ctx, pc)
}

// store opens our event store on a pool of its own. In replay that pool
// is traced (tracedPool): the rebuild measured there runs on a connection
// of its own, copied from the pool's configuration, that closes before
// the phase ends. Elsewhere the pool serves the appends, untraced.
func (r *run) store(ctx context.Context) (*postgres.Store, *pgxpool.Pool, error) {
	open := r.pool
	if r.cfg.Scenario == "replay" {
		open = r.tracedPool
	}
	p, err := open(ctx, 8)
	if err != nil {
		return nil, nil, err
	}
	s, err := postgres.New(ctx, p, r.reg, r.cfg.StoreOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: open the event store: %w", err)
	}
	r.mu.Lock()
	r.stores = append(r.stores, s)
	r.mu.Unlock()
	return s, p, nil
}

// release closes a store and its pool before the next phase, so that
// the raw phase has the connections.
func (r *run) release(s *postgres.Store, p *pgxpool.Pool) {
	_ = s.Close()
	p.Close()
}

// close closes what the run opened and drops its schema unless Keep.
func (r *run) close() error {
	r.mu.Lock()
	stores, pools := r.stores, r.pools
	r.stores, r.pools = nil, nil
	r.mu.Unlock()
	for _, s := range stores {
		_ = s.Close()
	}
	for _, p := range pools {
		p.Close()
	}
	if r.cfg.Keep {
		r.cfg.Logger.Info("bench: schema kept", "schema", r.schema)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := r.poolCfg.ConnConfig.Copy()
	delete(cc.RuntimeParams, "search_path")
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("bench: drop schema %s: %w", r.schema, err)
	}
	defer conn.Close(context.Background())
	// Projection generations live in schemas beside the run's own,
	// named after it: drop them too.
	if err := pgschema.Drop(ctx, conn, r.schema); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.cfg.Logger.Info("bench: schema dropped", "schema", r.schema)
	return nil
}

// phaseSpec is one timed phase of appends (or other operations): writers
// goroutines take sequence numbers until the duration or the count is
// reached; with a pace, operation seq is not started before
// start + seq*pace, and its latency counts from that scheduled time (so a
// stalled server shows up in the latencies instead of being hidden by
// fewer requests: no coordinated omission).
type phaseSpec struct {
	writers  int
	duration time.Duration
	ops      int64 // 0: unbounded (duration only)
	pace     time.Duration
	// base is the first sequence number (a later round continues where
	// the previous one stopped, so no append is made twice).
	base int64
	// op runs operation seq for worker w and returns how many events it
	// completed.
	op func(ctx context.Context, w int, seq int64) (int, error)
}

// timed is a phase's merged record and its wall time, CPU time (ours and
// the server's) and peak memory.
type timed struct {
	rec     *recorder
	elapsed time.Duration
	cpu     usage
	server  time.Duration
	// serverBG is the server's background processes' CPU time (see
	// serverMeter).
	serverBG time.Duration
	peak     int64
	ownPeak  bool
	timeline []Bucket
	// next is the first sequence number a following round may use.
	next int64
	// waits are the sampled backend states (Config.SampleWaits; nil: off).
	waits *waitCounts
}

// then appends round u to t: the histograms merge, the times add up, and
// u's timeline follows t's.
func (t timed) then(u timed) timed {
	if t.rec == nil {
		return u
	}
	out := t
	out.rec = merge(t.rec.start, []*recorder{t.rec, u.rec})
	out.rec.perSec = nil
	for _, b := range u.timeline {
		b.At += t.elapsed.Seconds()
		out.timeline = append(out.timeline, b)
	}
	out.elapsed += u.elapsed
	out.cpu = usage{user: t.cpu.user + u.cpu.user, sys: t.cpu.sys + u.cpu.sys}
	out.server += u.server
	out.serverBG += u.serverBG
	out.peak = max(t.peak, u.peak)
	out.ownPeak = t.ownPeak && u.ownPeak
	out.next = u.next
	out.waits = t.waits.add(u.waits)
	return out
}

// measured runs one phase (side: "ours", "raw", ...) under the server CPU
// meter and, with Config.ProfileDir, a CPU profile of the bench process.
func (r *run) measured(ctx context.Context, pool *pgxpool.Pool, side string, fn func() (timed, error)) (timed, error) {
	if r.cfg.beforePhase != nil {
		r.cfg.beforePhase(side, pool)
	}
	stopProfile := r.startProfile(side)
	stopWaits := r.startWaits(ctx)
	m := newServerMeter(ctx, pool, r.app)
	r.tracer.meter.Store(m)
	r.window.Store(&side)
	t, err := fn()
	r.window.Store(nil)
	r.tracer.meter.Store(nil)
	t.server, t.serverBG = m.stop(ctx)
	t.waits = stopWaits()
	stopProfile()
	return t, err
}

// startWaits, with Config.SampleWaits, samples what the run's backends wait
// on (sampleWaits) from a connection of its own, outside the phase's pool
// and named so that neither the sampler nor the server meter counts it.
func (r *run) startWaits(ctx context.Context) (stop func() *waitCounts) {
	if r.cfg.SampleWaits <= 0 {
		return func() *waitCounts { return nil }
	}
	cc := r.poolCfg.Copy()
	cc.MinConns, cc.MaxConns = 0, 1
	cc.ConnConfig.RuntimeParams["application_name"] = "eventstream-waits-" + strings.TrimPrefix(r.app, "eventstream-bench-")
	pool, err := pgxpool.NewWithConfig(ctx, cc)
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot sample the waits", "err", err)
		return func() *waitCounts { return nil }
	}
	stopSampler := sampleWaits(ctx, pool, r.app, r.cfg.SampleWaits)
	return func() *waitCounts {
		w := stopSampler()
		pool.Close()
		if w.failed > 0 {
			r.cfg.Logger.Warn("bench: wait samples failed; the waits are over the others only",
				"failed", w.failed, "taken", w.samples, "first_err", w.err)
		}
		return w
	}
}

// openWindow is the side of the measured phase in progress, "" if none.
func (r *run) openWindow() string {
	if w := r.window.Load(); w != nil {
		return *w
	}
	return ""
}

// startProfile starts a CPU profile into ProfileDir/<scenario>-<side>.cpu.pprof.
func (r *run) startProfile(side string) (stop func()) {
	if r.cfg.ProfileDir == "" {
		return func() {}
	}
	name := filepath.Join(r.cfg.ProfileDir, r.cfg.Scenario+"-"+side+".cpu.pprof")
	f, err := os.Create(name)
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot write the profile", "file", name, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		r.cfg.Logger.Warn("bench: cannot profile", "err", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		r.cfg.Logger.Info("bench: profile written", "file", name)
	}
}

func runPhase(ctx context.Context, spec phaseSpec) (timed, error) {
	ownPeak := resetPeakRSS()
	before := currentUsage()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var deadline time.Time
	if spec.duration > 0 {
		deadline = start.Add(spec.duration)
	}
	var next atomic.Int64
	next.Store(spec.base)
	var firstErr error
	var errOnce sync.Once
	recs := make([]*recorder, spec.writers)
	var wg sync.WaitGroup
	for w := range spec.writers {
		recs[w] = newRecorder(start)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := recs[w]
			for ctx.Err() == nil {
				seq := next.Add(1) - 1
				if spec.ops > 0 && seq >= spec.base+spec.ops {
					return
				}
				began := time.Now()
				if spec.pace > 0 {
					began = start.Add(time.Duration(seq-spec.base) * spec.pace)
					if !deadline.IsZero() && !began.Before(deadline) {
						return
					}
					if wait := time.Until(began); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
							return
						}
					}
				} else if !deadline.IsZero() && !began.Before(deadline) {
					return
				}
				n, err := spec.op(ctx, w, seq)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				end := time.Now()
				rec.record(n, end.Sub(began), end)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := currentUsage()
	rec := merge(start, recs)
	t := timed{rec: rec, elapsed: elapsed, timeline: rec.timeline(elapsed),
		cpu: usage{user: after.user - before.user, sys: after.sys - before.sys}, peak: peakRSS(), ownPeak: ownPeak, next: next.Load()}
	if firstErr != nil {
		return t, firstErr
	}
	return t, ctx.Err()
}

// claims collects the events the bench was told were stored (their ids
// and the streams the bench appended them to), one slice per worker so
// that recording takes no lock.
type claims struct {
	per [][]claim
}

// claim is one event the bench was told was stored: its id, the stream
// the bench asked for, not the one the store answered with, and the
// version the store answered (or the raw side wrote) for it, 0 where the
// bench was not told one.
type claim struct {
	id      uuid.UUID
	stream  string
	version int64
}

func newClaims(workers int) *claims { return &claims{per: make([][]claim, workers)} }

// add records the events an append to stream returned: their ids and
// the versions the store gave them.
func (c *claims) add(w int, stream string, events []eventstore.Event) {
	for i := range events {
		c.per[w] = append(c.per[w], claim{id: events[i].ID, stream: stream, version: events[i].Version})
	}
}

// addRows records the rows written by the raw side (rawWriter.rows),
// which has no store to hand them back: their ids, streams and versions.
func (c *claims) addRows(w int, rows [][]any) {
	for _, r := range rows {
		c.per[w] = append(c.per[w], claim{id: r[1].(uuid.UUID), stream: r[2].(string), version: r[3].(int64)})
	}
}

func (c *claims) list() []claim {
	n := 0
	for _, p := range c.per {
		n += len(p)
	}
	out := make([]claim, 0, n)
	for _, p := range c.per {
		out = append(out, p...)
	}
	return out
}

func (c *claims) all() []uuid.UUID {
	l := c.list()
	out := make([]uuid.UUID, len(l))
	for i := range l {
		out[i] = l[i].id
	}
	return out
}
