package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/schemas"
)

const probeType = "reliability.probe.recorded"

func registry(tb testing.TB) *schemas.Registry {
	tb.Helper()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scale is how many faults a test injects: fewer with -short, more with
// RELIABILITY_SOAK=N (N times the default).
func scale(def int) int {
	if testing.Short() {
		return max(1, def/3)
	}
	var n int
	if _, err := fmt.Sscan(os.Getenv("RELIABILITY_SOAK"), &n); err == nil && n > 1 {
		return def * n
	}
	return def
}

// openPool connects with short timeouts, so that nothing waits long on a
// dead server.
func openPool(tb testing.TB, url string, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.HealthCheckPeriod = 500 * time.Millisecond
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// openStore returns a store on pool that the test closes (and Cleanup
// closes again, harmlessly).
func openStore(tb testing.TB, pool *pgxpool.Pool, reg *schemas.Registry, opts postgres.Options) *postgres.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, pool, reg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func probe(writer, seq, i int) eventstore.Event {
	return eventstore.Event{
		ID:      uuid.New(),
		Type:    probeType,
		Source:  "reliability",
		Payload: json.RawMessage(fmt.Sprintf(`{"writer":%d,"seq":%d,"i":%d}`, writer, seq, i)),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: fmt.Sprintf("tenant-%d", writer%3), Producer: "reliability"},
	}
}

// appendRecord is one logical append: the same events (same ids), tried
// until acknowledged or abandoned.
type appendRecord struct {
	writer    int
	stream    string
	ids       []uuid.UUID
	attempts  int
	acked     bool
	abandoned bool
	result    eventstore.AppendResult
}

// ledger is what the writers know: every append they made and how it
// ended. The log must agree with it.
type ledger struct {
	mu          sync.Mutex
	appends     []*appendRecord
	failures    int
	errClasses  map[string]int
	errSamples  map[string]string
	unexpected  []string
	ackedEvents atomic.Int64
}

func newLedger() *ledger {
	return &ledger{errClasses: map[string]int{}, errSamples: map[string]string{}}
}

func (l *ledger) add(r *appendRecord) {
	l.mu.Lock()
	l.appends = append(l.appends, r)
	l.mu.Unlock()
}

// unexpectedf records a failure of the test that verifyLog reports.
func (l *ledger) unexpectedf(format string, args ...any) {
	l.mu.Lock()
	l.unexpected = append(l.unexpected, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// errRefused is a refusal that is neither a validation, a duplicate nor
// a conflict (an HTTP 403, 404, 413, …): never expected of a writer.
var errRefused = errors.New("refused")

// failed records a failed attempt. Errors that a fault may cause
// (connection, timeout) are expected; a refusal of a retried append
// (validation, duplicate, wrong version, any other refusal) would mean the
// store did not recognise its own write, and is a failure of the test.
func (l *ledger) failed(r *appendRecord, err error) {
	class := "other"
	bad := false
	switch {
	case errors.Is(err, eventstore.ErrValidation):
		class, bad = "validation", true
	case errors.Is(err, eventstore.ErrDuplicateEvent):
		class, bad = "duplicate", true
	case errors.Is(err, eventstore.ErrConcurrency):
		class, bad = "concurrency", true
	case errors.Is(err, eventstore.ErrClosed):
		class, bad = "closed", true
	case errors.Is(err, errRefused):
		class, bad = "refused", true
	case errors.Is(err, context.DeadlineExceeded):
		class = "timeout"
	default:
		msg := err.Error()
		switch {
		case strings.Contains(msg, "SQLSTATE 57P01"), strings.Contains(msg, "SQLSTATE 57P02"), strings.Contains(msg, "SQLSTATE 57P03"):
			class = "server shutting down"
		case strings.Contains(msg, "EOF"), strings.Contains(msg, "reset by peer"), strings.Contains(msg, "broken pipe"), strings.Contains(msg, "conn closed"):
			class = "connection lost"
		case strings.Contains(msg, "failed to connect"), strings.Contains(msg, "dial"):
			class = "connect"
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	l.errClasses[class]++
	if _, ok := l.errSamples[class]; !ok {
		l.errSamples[class] = err.Error()
	}
	if bad {
		l.unexpected = append(l.unexpected, fmt.Sprintf("writer %d, stream %s, attempt %d: %v", r.writer, r.stream, r.attempts, err))
	}
}

// appender is what a fleet writes through: a store, or the HTTP API of a
// running server (httpAppender).
type appender interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error)
}

// fleet is a set of writers appending continuously, each to its own
// streams, retrying a failed append with the same event ids.
type fleet struct {
	store    appender
	newEvent func(writer, seq, i int) eventstore.Event
	led      *ledger
	maxTries int // failed attempts before an append is abandoned (while not stopping)

	stop     chan struct{}
	wg       sync.WaitGroup
	acks     []atomic.Int64
	lastErrs []atomic.Value
}

// startFleet starts writers that append probe events.
func startFleet(store appender, led *ledger, writers, maxTries int, seed uint64) *fleet {
	return startFleetOf(store, probe, led, writers, maxTries, seed)
}

// startFleetOf starts writers that append the events newEvent makes (each
// with a new id).
func startFleetOf(store appender, newEvent func(writer, seq, i int) eventstore.Event, led *ledger, writers, maxTries int, seed uint64) *fleet {
	f := &fleet{store: store, newEvent: newEvent, led: led, maxTries: maxTries, stop: make(chan struct{}),
		acks: make([]atomic.Int64, writers), lastErrs: make([]atomic.Value, writers)}
	for w := range writers {
		f.wg.Add(1)
		go f.write(w, rand.New(rand.NewPCG(seed, uint64(w))))
	}
	return f
}

func (f *fleet) totalAcks() int64 {
	var n int64
	for i := range f.acks {
		n += f.acks[i].Load()
	}
	return n
}

func (f *fleet) stopping() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// write appends batches of 1–4 events to three streams of its own. Even
// writers use exact expected versions (so a retry of an append that landed
// meets a version it itself moved), odd ones Any (so it meets its own ids).
// Once stop is closed, the writer finishes its current append, retrying
// until it is acknowledged, and returns.
func (f *fleet) write(w int, rng *rand.Rand) {
	defer f.wg.Done()
	exact := w%2 == 0
	known := map[string]int64{} // stream → version, when known
	for s := range 3 {
		known[fmt.Sprintf("w%02d-s%d", w, s)] = 0
	}
	for seq := 0; !f.stopping(); seq++ {
		stream := fmt.Sprintf("w%02d-s%d", w, seq%3)
		n := 1 + rng.IntN(4)
		events := make([]eventstore.Event, n)
		rec := &appendRecord{writer: w, stream: stream, ids: make([]uuid.UUID, n)}
		for i := range events {
			events[i] = f.newEvent(w, seq, i)
			rec.ids[i] = events[i].ID
		}
		f.led.add(rec)
		var stopSeen time.Time
		for {
			rec.attempts++
			exp := eventstore.Any
			if v, ok := known[stream]; exact && ok {
				exp = eventstore.Exact(v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			res, err := f.store.Append(ctx, stream, exp, events...)
			cancel()
			if err == nil {
				rec.acked, rec.result = true, res
				known[stream] = res.Events[len(res.Events)-1].Version
				f.acks[w].Add(1)
				f.led.ackedEvents.Add(int64(n))
				break
			}
			f.lastErrs[w].Store(err.Error())
			f.led.failed(rec, err)
			if f.stopping() {
				if stopSeen.IsZero() {
					stopSeen = time.Now()
				} else if time.Since(stopSeen) > 30*time.Second {
					f.led.unexpectedf("writer %d could not finish its last append in 30s after the faults ended: %v", w, err)
					rec.abandoned = true
					return
				}
			} else if rec.attempts >= f.maxTries {
				rec.abandoned = true
				delete(known, stream) // it may have landed: the version is unknown
				break
			}
			time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		}
	}
}

// finish stops the writers after their current append and waits.
func (f *fleet) finish() {
	close(f.stop)
	f.wg.Wait()
}

// waitEachWriter waits until every writer has had at least n more appends
// acknowledged than it had in base: proof that each recovered by itself.
func (f *fleet) waitEachWriter(tb testing.TB, base []int64, n int64, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for w := range f.acks {
		for f.acks[w].Load() < base[w]+n {
			if time.Now().After(deadline) {
				last, _ := f.lastErrs[w].Load().(string)
				tb.Fatalf("writer %d did not recover within %s: %d acknowledged appends since the last fault, want %d; last error: %s",
					w, within, f.acks[w].Load()-base[w], n, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (f *fleet) snapshot() []int64 {
	out := make([]int64, len(f.acks))
	for i := range f.acks {
		out[i] = f.acks[i].Load()
	}
	return out
}

// follower is a live subscription running through the faults. On an
// error it either calls Next again on the same subscription or, every
// other time, closes it and subscribes again after the last position it
// saw (its checkpoint); either way it must miss nothing.
type follower struct {
	store eventstore.Store

	mu       sync.Mutex
	seen     []seenEvent
	errs     int
	resubs   int
	lastErr  string
	position atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

type seenEvent struct {
	pos uint64
	id  uuid.UUID
}

func startFollower(tb testing.TB, store eventstore.Store) *follower {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &follower{store: store, cancel: cancel, done: make(chan struct{})}
	sub, err := store.Subscribe(ctx, eventstore.SubscribeOptions{After: eventstore.Start, BatchSize: 200})
	if err != nil {
		tb.Fatal(err)
	}
	go fl.run(ctx, sub)
	tb.Cleanup(fl.stop)
	return fl
}

func (fl *follower) run(ctx context.Context, sub eventstore.Subscription) {
	defer close(fl.done)
	defer func() { sub.Close() }()
	for {
		evs, err := sub.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fl.mu.Lock()
			fl.errs++
			fl.lastErr = err.Error()
			resub := fl.errs%2 == 1
			fl.mu.Unlock()
			if resub {
				sub.Close()
				for {
					s, err := fl.store.Subscribe(ctx, eventstore.SubscribeOptions{After: eventstore.Pos(fl.position.Load()), BatchSize: 200})
					if err == nil {
						sub = s
						break
					}
					if ctx.Err() != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				fl.mu.Lock()
				fl.resubs++
				fl.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		fl.mu.Lock()
		for _, e := range evs {
			fl.seen = append(fl.seen, seenEvent{pos: e.Position.Commit, id: e.ID})
		}
		fl.mu.Unlock()
		fl.position.Store(evs[len(evs)-1].Position.Commit)
	}
}

func (fl *follower) stop() {
	fl.cancel()
	<-fl.done
}

// waitFor waits until cond holds, or fails with what describe says.
func waitFor(tb testing.TB, within time.Duration, cond func() bool, describe func() string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", within, describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRow is one stored event as the verification reads it, straight from
// the table (not through the store's read path).
type logRow struct {
	pos     int64
	id      uuid.UUID
	stream  string
	version int64
}

func readLog(tb testing.TB, pool *pgxpool.Pool) []logRow {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []logRow
	// The pool may still hold connections broken by the last fault; retry.
	var err error
	for try := 0; try < 20; try++ {
		var rows pgx.Rows
		rows, err = pool.Query(ctx, `SELECT position, id, stream, version FROM events ORDER BY position`)
		if err == nil {
			out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (logRow, error) {
				var x logRow
				err := r.Scan(&x.pos, &x.id, &x.stream, &x.version)
				return x, err
			})
			if err == nil {
				return out
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("read the log: %v", err)
	return nil
}

// figures summarise a run; docs/reliability.md quotes them.
type figures struct {
	Test             string            `json:"test"`
	Faults           int               `json:"faults_injected"`
	Appends          int               `json:"appends"`
	Acked            int               `json:"appends_acknowledged"`
	AckedEvents      int               `json:"events_acknowledged"`
	AckedAfterRetry  int               `json:"acknowledged_after_a_failure"`
	Abandoned        int               `json:"appends_abandoned"`
	AbandonedPresent int               `json:"abandoned_but_stored"`
	FailedAttempts   int               `json:"failed_attempts"`
	ErrorClasses     map[string]int    `json:"error_classes"`
	ErrorSamples     map[string]string `json:"error_samples"`
	LogEvents        int               `json:"events_in_log"`
	Lost             int               `json:"lost"`
	Duplicated       int               `json:"duplicated"`
	Partial          int               `json:"partly_written"`
	SubErrors        int               `json:"subscription_errors"`
	Resubscribes     int               `json:"resubscribes"`
	SubscriberSaw    int               `json:"subscriber_saw"`
	AuditRows        int               `json:"audit_rows"`
	Extra            map[string]any    `json:"extra,omitempty"`
}

// verifyLog checks the log against the ledger and returns the figures:
//   - positions are 1..N without a gap, each id appears once, each
//     stream's versions are 1..n;
//   - every acknowledged append is stored exactly once, at the position and
//     versions its acknowledgement gave;
//   - every abandoned append is stored entirely or not at all;
//   - nothing is stored that no writer sent.
func verifyLog(tb testing.TB, rows []logRow, led *ledger) figures {
	tb.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	var fg figures
	fg.FailedAttempts = led.failures
	fg.ErrorClasses = led.errClasses
	fg.ErrorSamples = led.errSamples
	for _, u := range led.unexpected {
		tb.Errorf("unexpected append error: %s", u)
	}

	byID := make(map[uuid.UUID][]logRow, len(rows))
	streamVersions := map[string][]int64{}
	for i, r := range rows {
		if r.pos != int64(i+1) {
			tb.Errorf("log position %d at row %d: positions are not gapless", r.pos, i+1)
			break
		}
		byID[r.id] = append(byID[r.id], r)
		streamVersions[r.stream] = append(streamVersions[r.stream], r.version)
	}
	for s, vs := range streamVersions {
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		for i, v := range vs {
			if v != int64(i+1) {
				tb.Errorf("stream %s: versions %v are not 1..%d", s, vs, len(vs))
				break
			}
		}
	}
	for id, rs := range byID {
		if len(rs) > 1 {
			fg.Duplicated += len(rs) - 1
			tb.Errorf("event %s stored %d times", id, len(rs))
		}
	}
	fg.LogEvents = len(rows)
	sent := map[uuid.UUID]bool{}
	for _, a := range led.appends {
		fg.Appends++
		present := 0
		for _, id := range a.ids {
			sent[id] = true
			if len(byID[id]) > 0 {
				present++
			}
		}
		switch {
		case a.acked:
			fg.Acked++
			fg.AckedEvents += len(a.ids)
			if a.attempts > 1 {
				fg.AckedAfterRetry++
			}
			if present != len(a.ids) {
				fg.Lost += len(a.ids) - present
				tb.Errorf("acknowledged append of writer %d to %s: %d of its %d events are not in the log", a.writer, a.stream, len(a.ids)-present, len(a.ids))
				continue
			}
			if len(a.result.Events) != len(a.ids) {
				tb.Errorf("acknowledged append of writer %d: result has %d events, sent %d", a.writer, len(a.result.Events), len(a.ids))
				continue
			}
			for i, e := range a.result.Events {
				r := byID[a.ids[i]][0]
				if e.ID != a.ids[i] || int64(e.Position.Commit) != r.pos || e.Version != r.version || r.stream != a.stream {
					tb.Errorf("acknowledged event %s: result says %s v%d at %d, log has %s v%d at %d",
						a.ids[i], a.stream, e.Version, e.Position.Commit, r.stream, r.version, r.pos)
				}
			}
		case a.abandoned:
			fg.Abandoned++
			if present == len(a.ids) {
				fg.AbandonedPresent++
			}
			if present != 0 && present != len(a.ids) {
				fg.Partial++
				tb.Errorf("abandoned append of writer %d to %s is partly written: %d of %d events", a.writer, a.stream, present, len(a.ids))
			}
		default:
			tb.Errorf("append of writer %d to %s neither acknowledged nor abandoned", a.writer, a.stream)
		}
		// An append's events, when stored, are consecutive in its stream.
		if present == len(a.ids) && len(a.ids) > 1 {
			first := byID[a.ids[0]][0]
			for i, id := range a.ids {
				r := byID[id][0]
				if r.version != first.version+int64(i) || r.pos != first.pos+int64(i) {
					tb.Errorf("append of writer %d: event %d stored at v%d/%d, not right after the append's first event (v%d/%d)", a.writer, i, r.version, r.pos, first.version, first.pos)
					break
				}
			}
		}
	}
	for id := range byID {
		if !sent[id] {
			tb.Errorf("event %s is in the log but no writer sent it", id)
		}
	}
	return fg
}

// verifyFollower checks that the subscriber saw the whole log exactly
// once, in order.
func verifyFollower(tb testing.TB, rows []logRow, fl *follower, fg *figures) {
	tb.Helper()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fg.SubErrors, fg.Resubscribes, fg.SubscriberSaw = fl.errs, fl.resubs, len(fl.seen)
	if len(fl.seen) != len(rows) {
		tb.Errorf("the subscriber saw %d events, the log holds %d", len(fl.seen), len(rows))
	}
	for i := range min(len(fl.seen), len(rows)) {
		if fl.seen[i].pos != uint64(rows[i].pos) || fl.seen[i].id != rows[i].id {
			tb.Errorf("subscriber event %d: %s at %d, log has %s at %d", i, fl.seen[i].id, fl.seen[i].pos, rows[i].id, rows[i].pos)
			break
		}
	}
}

// auditRunner runs the audit projection against the store.
type auditRunner struct {
	rt     *projections.Runtime
	pool   *pgxpool.Pool
	cancel context.CancelFunc
	done   chan error
}

func startAudit(tb testing.TB, pool *pgxpool.Pool, store eventstore.Store, reg *schemas.Registry) *auditRunner {
	tb.Helper()
	cfg := projections.Config{
		BatchSize:          200,
		LockPollInterval:   100 * time.Millisecond,
		HeartbeatInterval:  300 * time.Millisecond,
		CheckpointInterval: 100 * time.Millisecond,
		// The cut test's proxy may break up to a third of the runner's
		// transactions (a quarter of its COPYs, a twelfth of its COMMIT
		// replies, random cuts). After a break at an event, k-1 more in
		// a row follow with probability about 0.3^(k-1): 1e-2 at 5 (a
		// CI run parked an event so), 3e-5 at the default of 10, too
		// much over many runs' dozens of breaks, 2e-10 at 20. A real
		// network is far kinder.
		Retry:  projections.RetryPolicy{MaxAttempts: 5, MaxSessionBreaks: 20, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		Logger: quietLogger(),
	}
	rt, err := projections.New(pool, store, reg, cfg, audit.Projection())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	a := &auditRunner{rt: rt, pool: pool, cancel: rcancel, done: make(chan error, 1)}
	go func() { a.done <- rt.Run(rctx) }()
	tb.Cleanup(a.stop)
	return a
}

func (a *auditRunner) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
}

// waitCheckpoint waits until the active generation of projection name
// has its checkpoint at head (or beyond), and returns the checkpoint. A
// batch's read-model writes commit with its checkpoint, so from then on
// the read model holds every event up to head.
func waitCheckpoint(tb testing.TB, pool *pgxpool.Pool, name string, head int64) int64 {
	tb.Helper()
	var got int64
	var lastErr error
	waitFor(tb, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lastErr = pool.QueryRow(ctx, `SELECT coalesce(max(commit_position), 0) FROM projection_checkpoints c
			JOIN projection_state s ON s.projection = c.projection AND s.active_generation = c.generation
			WHERE c.projection = $1`, name).Scan(&got)
		return lastErr == nil && got >= head
	}, func() string {
		return fmt.Sprintf("%s checkpoint at %d, log head %d (last error: %v)", name, got, head, lastErr)
	})
	return got
}

// verifyAudit waits until the audit read model has caught up with the
// log, then checks it holds every event exactly once, nothing parked, and
// a checkpoint at the head.
func verifyAudit(tb testing.TB, pool *pgxpool.Pool, rows []logRow, fg *figures) {
	tb.Helper()
	want := int64(len(rows))
	got := waitCheckpoint(tb, pool, audit.Name, want)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got != want {
		tb.Errorf("audit checkpoint %d, log head %d", got, want)
	}
	r, err := pool.Query(ctx, `SELECT position, event_id FROM audit_events ORDER BY position`)
	if err != nil {
		tb.Fatal(err)
	}
	audited, err := pgx.CollectRows(r, func(row pgx.CollectableRow) (seenEvent, error) {
		var p int64
		var id uuid.UUID
		err := row.Scan(&p, &id)
		return seenEvent{pos: uint64(p), id: id}, err
	})
	if err != nil {
		tb.Fatal(err)
	}
	fg.AuditRows = len(audited)
	if len(audited) != len(rows) {
		tb.Errorf("audit_events holds %d rows, the log %d events", len(audited), len(rows))
	}
	for i := range min(len(audited), len(rows)) {
		if audited[i].pos != uint64(rows[i].pos) || audited[i].id != rows[i].id {
			tb.Errorf("audit row %d: %s at %d, log has %s at %d", i, audited[i].id, audited[i].pos, rows[i].id, rows[i].pos)
			break
		}
	}
	var parked int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters`).Scan(&parked); err != nil {
		tb.Fatal(err)
	}
	if parked != 0 {
		tb.Errorf("%d events parked in the dead-letter table", parked)
	}
}

// report logs the figures and, when RELIABILITY_FIGURES names a file,
// appends them to it as one JSON line.
func report(tb testing.TB, fg figures) {
	tb.Helper()
	fg.Test = tb.Name()
	b, _ := json.Marshal(fg)
	tb.Logf("figures: %s", b)
	if path := os.Getenv("RELIABILITY_FIGURES"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			tb.Errorf("figures: %v", err)
			return
		}
		defer f.Close()
		_, _ = f.Write(append(b, '\n'))
	}
}

// listenDelivers proves that the follower's store still hears of new
// events through LISTEN/NOTIFY after the faults. Once the follower has
// caught up with the log, it appends one event (recorded in the ledger)
// and requires the follower to see it with no error in between: the
// follower's store has its safety poll switched off, and without an error
// it does not resubscribe and read, so only a notification on a LISTEN
// connection that came back by itself can have woken it. Catching up
// after the faults alone does not show that: a resubscription's read
// after the last fault may have fetched everything.
func listenDelivers(tb testing.TB, writer *postgres.Store, led *ledger, fl *follower) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var head eventstore.Position
	waitFor(tb, 30*time.Second, func() bool {
		var err error
		head, err = writer.Head(ctx)
		return err == nil && fl.position.Load() >= head.Commit
	}, func() string {
		return fmt.Sprintf("the subscription is at %d, the log at %d, before the LISTEN probe", fl.position.Load(), head.Commit)
	})
	fl.mu.Lock()
	errsBefore := fl.errs
	fl.mu.Unlock()

	ev := probe(99, 0, 0)
	rec := &appendRecord{writer: 99, stream: "listen-probe", ids: []uuid.UUID{ev.ID}, attempts: 1}
	led.add(rec)
	res, err := writer.Append(ctx, rec.stream, eventstore.NoStream, ev)
	if err != nil {
		rec.abandoned = true
		tb.Fatalf("the LISTEN probe's append after the faults: %v", err)
	}
	rec.acked, rec.result = true, res
	led.ackedEvents.Add(1)
	pos := res.Events[0].Position.Commit
	waitFor(tb, 15*time.Second, func() bool { return fl.position.Load() >= pos }, func() string {
		return fmt.Sprintf("the subscription (safety poll off) never saw the event appended at %d after the faults: no notification reached it, the LISTEN connection did not come back", pos)
	})
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.errs != errsBefore {
		tb.Errorf("the subscription had %d errors while waiting for the LISTEN probe (last: %s): it may have read the probe on a resubscription, not on a notification",
			fl.errs-errsBefore, fl.lastErr)
	}
}
