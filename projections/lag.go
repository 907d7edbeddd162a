package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
)

// stats is what this process knows about one projection's runner.
type stats struct {
	consumed atomic.Int64 // events passed by the runner (applied or without effect)
	handled  atomic.Int64 // events given to the handler and committed
	errors   atomic.Int64 // failed attempts (batches and single events)
	parked   atomic.Int64 // events parked by this process

	mu       sync.Mutex
	running  bool
	gen      int
	pos      eventstore.Position // reached, in memory
	saved    eventstore.Position // last checkpoint this runner wrote
	rate     float64
	rateN    int64
	rateAt   time.Time
	batchObs prometheus.Observer
}

func (s *stats) start(gen int, pos eventstore.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running, s.gen, s.pos, s.saved = true, gen, pos, pos
}

func (s *stats) checkpointed(gen int, pos eventstore.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen {
		s.saved = pos
	}
}

func (s *stats) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
}

func (s *stats) moved(gen int, pos eventstore.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen && pos.Compare(s.pos) > 0 {
		s.pos = pos
	}
}

func (s *stats) passed(gen int, pos eventstore.Position, n int) {
	s.consumed.Add(int64(n))
	s.moved(gen, pos)
}

func (s *stats) applied(gen int, pos eventstore.Position, consumed, handled int) {
	s.consumed.Add(int64(consumed))
	s.handled.Add(int64(handled))
	s.moved(gen, pos)
}

func (s *stats) failed() { s.errors.Add(1) }

func (s *stats) parkedOne(gen int, pos eventstore.Position) {
	s.parked.Add(1)
	s.consumed.Add(1)
	s.moved(gen, pos)
}

func (s *stats) observeBatch(d time.Duration) {
	s.mu.Lock()
	obs := s.batchObs
	s.mu.Unlock()
	if obs != nil {
		obs.Observe(d.Seconds())
	}
}

// sample returns the runner's position (if it runs here) and its events/s
// over the time since the previous sample (at least half a second).
func (s *stats) sample(now time.Time) (running bool, gen int, pos, saved eventstore.Position, rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.consumed.Load()
	if dt := now.Sub(s.rateAt); s.rateAt.IsZero() || dt >= 500*time.Millisecond {
		if !s.rateAt.IsZero() {
			s.rate = float64(n-s.rateN) / dt.Seconds()
		}
		s.rateN, s.rateAt = n, now
	}
	return s.running, s.gen, s.pos, s.saved, s.rate
}

// Lag is how far one projection is behind the log.
type Lag struct {
	Projection string `json:"projection"`
	// Generation is the generation readers see.
	Generation int `json:"generation"`
	// Position is the last event the projection has applied or passed.
	Position eventstore.Position `json:"position"`
	// Head is the position of the last event in the log.
	Head eventstore.Position `json:"head"`
	// LagEvents is how many events of the log are after Position. On a
	// backend without gapless positions it is counted, up to 10,000.
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the age of the oldest event not yet applied (0 when
	// the projection is at the head).
	LagSeconds float64 `json:"lag_seconds"`
	// EventsPerSecond is this process's rate of events passed by the
	// projection, over the time since the previous call (0 when the
	// projection runs elsewhere).
	EventsPerSecond float64 `json:"events_per_second"`
	// Errors counts failed attempts in this process since it started.
	Errors int64 `json:"errors"`
	// Parked counts the events of the active generation in the
	// dead-letter table.
	Parked int64 `json:"parked"`
	// Running: this runtime runs the projection. Held: some runtime does.
	Running bool `json:"running"`
	Held    bool `json:"held"`
	// Stopped: the projection stopped on an error (see LastError) and
	// waits for Resume.
	Stopped   bool   `json:"stopped"`
	LastError string `json:"last_error,omitempty"`
	// Rebuilding is the generation being rebuilt (0: none) and
	// RebuildPosition how far it has come.
	Rebuilding      int                 `json:"rebuilding,omitempty"`
	RebuildPosition eventstore.Position `json:"rebuild_position"`
}

// countCap bounds how many events Lag counts on a backend whose positions
// are not gapless.
const countCap = 10_000

// Lag reports, for every projection of the runtime, its position, the
// head of the log, the lag in events and seconds, the rate, errors and
// parked events. It reads the database and the store, so it also reports
// projections run by other processes.
func (r *Runtime) Lag(ctx context.Context) ([]Lag, error) {
	home, err := r.homeSchema(ctx)
	if err != nil {
		return nil, err
	}
	head, err := r.store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: read the head of the log: %w", err)
	}
	gapless := r.store.Features().GaplessPositions
	now := time.Now()
	out := make([]Lag, 0, len(r.list))
	for _, p := range r.list {
		l := Lag{Projection: p.Name, Head: head}
		var active, building *int
		var lastErr *string
		var c, pp, bc, bp *int64
		err := r.pool.QueryRow(ctx, `SELECT s.active_generation, s.building_generation, s.stopped, s.last_error,
				c.commit_position, c.prepare_position, b.commit_position, b.prepare_position,
				(SELECT count(*) FROM projection_dead_letters d WHERE d.projection = s.projection AND d.generation = s.active_generation),
				EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
					AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
					AND classid = $2::bigint::oid AND objid = $3::bigint::oid)
			FROM projection_state s
			LEFT JOIN projection_checkpoints c ON c.projection = s.projection AND c.generation = s.active_generation
			LEFT JOIN projection_checkpoints b ON b.projection = s.projection AND b.generation = s.building_generation
			WHERE s.projection = $1`, p.Name, lockHigh(r.runLockKey(home, p.Name)), lockLow(r.runLockKey(home, p.Name))).
			Scan(&active, &building, &l.Stopped, &lastErr, &c, &pp, &bc, &bp, &l.Parked, &l.Held)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: %q", ErrNotMigrated, p.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("projections: read the state of %q: %w", p.Name, err)
		}
		if active != nil {
			l.Generation = *active
		}
		if c != nil {
			l.Position = fromArgs(*c, *pp)
		}
		if building != nil && bc != nil {
			l.Rebuilding, l.RebuildPosition = *building, fromArgs(*bc, *bp)
		}
		if lastErr != nil {
			l.LastError = *lastErr
		}
		st := r.stats[p.Name]
		// The runner may have passed unhandled events it has not saved
		// yet; its position counts if the stored one is what it saved
		// (and not, say, a rewind it has not noticed yet).
		running, gen, pos, saved, rate := st.sample(now)
		if running && gen == l.Generation && saved == l.Position && pos.Compare(l.Position) > 0 {
			l.Position = pos
		}
		l.Running, l.EventsPerSecond, l.Errors = running, rate, st.errors.Load()
		if err := r.measure(ctx, &l, gapless, now); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// measure fills LagEvents and LagSeconds.
func (r *Runtime) measure(ctx context.Context, l *Lag, gapless bool, now time.Time) error {
	if l.Position.Compare(l.Head) >= 0 {
		return nil
	}
	if gapless {
		l.LagEvents = int64(l.Head.Commit - l.Position.Commit)
	}
	from := l.Position
	counted := int64(0)
	limit := 1000
	if gapless {
		limit = 2 // only the first event after Position is needed
	}
	for {
		page, err := r.store.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: limit})
		if err != nil {
			return fmt.Errorf("projections: measure the lag of %q: %w", l.Projection, err)
		}
		for _, e := range page.Events {
			if e.Position.Compare(l.Position) <= 0 {
				continue
			}
			if counted == 0 {
				l.LagSeconds = max(now.Sub(e.Timestamp).Seconds(), 0)
			}
			counted++
		}
		if gapless || page.End || len(page.Events) == 0 || counted >= countCap {
			break
		}
		from = page.Next
	}
	if !gapless {
		// Pages are counted whole, so the count may pass the cap by up
		// to a page; what is promised is a count up to the cap.
		l.LagEvents = min(counted, countCap)
	}
	return nil
}

func lockHigh(key int64) int64 { return int64(uint64(key) >> 32) }
func lockLow(key int64) int64  { return int64(uint32(uint64(key))) }

// Resume clears a projection's stopped state and reports whether it was
// stopped (false: it was running, nothing changed but its last error
// cleared); a runtime running it picks it up within LockPollInterval.
func (r *Runtime) Resume(ctx context.Context, name string) (resumed bool, err error) {
	if _, err := r.lookup(name); err != nil {
		return false, err
	}
	// The old row, locked first, tells what the update changed, also
	// when another Resume or a stop commits meanwhile.
	err = r.pool.QueryRow(ctx, `UPDATE projection_state p SET stopped = false, last_error = NULL, updated_at = now()
		FROM (SELECT projection, stopped FROM projection_state WHERE projection = $1 FOR UPDATE) old
		WHERE p.projection = old.projection RETURNING old.stopped`, name).Scan(&resumed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("%w: %q", ErrNotMigrated, name)
	}
	if err != nil {
		return false, fmt.Errorf("projections: resume %q: %w", name, err)
	}
	return resumed, nil
}
