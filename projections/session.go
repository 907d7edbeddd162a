package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
)

// fetched is one batch read ahead of the applier.
type fetched struct {
	events []eventstore.Event
	end    bool // the log's head was reached (page reads only)
	err    error
}

// prefetch reads batches in a goroutine while the previous one is being
// applied, one batch ahead at most, so memory stays bounded by two
// batches. The channel closes after an error or when ctx ends; wait
// returns once the goroutine has ended (cancel ctx first).
func prefetch(ctx context.Context, read func(context.Context) ([]eventstore.Event, bool, error)) (batches <-chan fetched, wait func()) {
	ch := make(chan fetched, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			evs, end, err := read(ctx)
			select {
			case ch <- fetched{evs, end, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, func() { <-done }
}

// pages reads the whole log forwards from (inclusive) in pages.
func (r *Runtime) pages(from eventstore.Position) func(context.Context) ([]eventstore.Event, bool, error) {
	next := from
	return func(ctx context.Context) ([]eventstore.Event, bool, error) {
		page, err := r.store.ReadAll(ctx, eventstore.ReadAllOptions{From: next, Limit: r.cfg.BatchSize})
		if err != nil {
			return nil, false, fmt.Errorf("projections: read the log from %s: %w", next, err)
		}
		if len(page.Events) > 0 {
			next = page.Next
		}
		return page.Events, page.End, nil
	}
}

// state is what the database says about a projection.
type state struct {
	active, building *int
	stopped          bool
	lastError        *string
}

func loadState(ctx context.Context, q pgx.Tx, name string, lock string) (state, error) {
	var s state
	err := q.QueryRow(ctx, `SELECT active_generation, building_generation, stopped, last_error
		FROM projection_state WHERE projection = $1 `+lock, name).Scan(&s.active, &s.building, &s.stopped, &s.lastError)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("%w: %q", ErrNotMigrated, name)
	}
	if err != nil {
		return s, fmt.Errorf("projections: read the state of %q: %w", name, err)
	}
	return s, nil
}

func loadCheckpoint(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string, gen int) (eventstore.Position, error) {
	var c, p int64
	err := q.QueryRow(ctx, `SELECT commit_position, prepare_position FROM projection_checkpoints WHERE projection = $1 AND generation = $2`, name, gen).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, fmt.Errorf("%w for %q generation %d", errNoCheckpoint, name, gen)
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("projections: read the checkpoint of %q: %w", name, err)
	}
	return fromArgs(c, p), nil
}

// holding is a connection that holds a projection's run lock, set to
// apply events to its active generation.
type holding struct {
	conn   *pgx.Conn
	gen    int
	schema string
	pos    eventstore.Position
}

// hold connects, takes the projection's run lock and prepares the
// connection for its active generation. ErrBusy: another runtime holds it.
func (r *Runtime) hold(ctx context.Context, home string, p *registered) (*holding, error) {
	conn, err := r.connect(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.closeConn(conn)
		}
	}()
	got, err := tryLock(ctx, conn, r.runLockKey(home, p.Name))
	if err != nil {
		return nil, err
	}
	if !got {
		return nil, fmt.Errorf("%w: projection %q is run by another runtime", ErrBusy, p.Name)
	}
	h := &holding{conn: conn}
	err = pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
		s, err := loadState(ctx, tx, p.Name, "")
		if err != nil {
			return err
		}
		if s.stopped {
			msg := ""
			if s.lastError != nil {
				msg = *s.lastError
			}
			return fmt.Errorf("%w: %q: %s", ErrStopped, p.Name, msg)
		}
		if s.active == nil {
			return fmt.Errorf("%w: %q", ErrNotMigrated, p.Name)
		}
		h.gen = *s.active
		if h.schema, err = generationSchema(ctx, tx, p.Name, h.gen); err != nil {
			return err
		}
		h.pos, err = loadCheckpoint(ctx, tx, p.Name, h.gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := setSearchPath(ctx, conn, h.schema, home); err != nil {
		return nil, err
	}
	ok = true
	return h, nil
}

// setSearchPath makes the generation's tables the ones a handler's
// unqualified names reach, with the runtime's schema behind them (for
// processed_events).
func setSearchPath(ctx context.Context, conn *pgx.Conn, schema, home string) error {
	path := pgx.Identifier{schema}.Sanitize() + ", " + pgx.Identifier{home}.Sanitize()
	if _, err := conn.Exec(ctx, `SELECT set_config('search_path', $1, false)`, path); err != nil {
		return fmt.Errorf("projections: set search_path: %w", err)
	}
	return nil
}

// session runs one projection while it holds its lock: catch-up from the
// checkpoint then live, through the store's subscription. breaks is the
// runner's memory of where its sessions broke, kept across them.
func (r *Runtime) session(ctx context.Context, home string, p *registered, breaks *sessionBreaks) error {
	h, err := r.hold(ctx, home, p)
	if err != nil {
		return err
	}
	defer r.closeConn(h.conn)
	st := r.stats[p.Name]
	st.start(h.gen, h.pos)
	defer st.stop()
	r.log.Info("projection running", "projection", p.Name, "generation", h.gen, "from", h.pos.String())

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := r.store.Subscribe(sctx, eventstore.SubscribeOptions{After: h.pos, BatchSize: r.cfg.BatchSize})
	if err != nil {
		return fmt.Errorf("projections: subscribe from %s: %w", h.pos, err)
	}
	batches, wait := prefetch(sctx, func(ctx context.Context) ([]eventstore.Event, bool, error) {
		evs, err := sub.Next(ctx)
		return evs, false, err
	})
	defer func() {
		cancel()
		sub.Close()
		wait()
	}()
	a := newApplier(r, p, h.conn, h.gen, h.pos, st)
	a.breaks = breaks
	beat := time.NewTicker(r.cfg.HeartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b, ok := <-batches:
			if !ok {
				return ctx.Err()
			}
			if b.err != nil {
				return fmt.Errorf("projections: subscription: %w", b.err)
			}
			if err := a.apply(ctx, b.events); err != nil {
				return err
			}
		case <-beat.C:
			if err := r.heartbeat(ctx, a); err != nil {
				return err
			}
		}
	}
}

// heartbeat checks, while idle, that the connection is alive, that the
// projection was neither stopped, swapped to another generation nor
// rewound, and
// saves a checkpoint that only passed unhandled events.
func (r *Runtime) heartbeat(ctx context.Context, a *applier) error {
	var gen *int
	var stopped bool
	var c, p *int64
	err := a.conn.QueryRow(ctx, `SELECT s.active_generation, s.stopped, c.commit_position, c.prepare_position
		FROM projection_state s LEFT JOIN projection_checkpoints c ON c.projection = s.projection AND c.generation = $2
		WHERE s.projection = $1`, a.p.Name, a.gen).Scan(&gen, &stopped, &c, &p)
	if err != nil {
		return fmt.Errorf("projections: heartbeat: %w", err)
	}
	if stopped {
		return fmt.Errorf("%w: %q", ErrStopped, a.p.Name)
	}
	if gen == nil || *gen != a.gen || c == nil || fromArgs(*c, *p) != a.saved {
		return errFenced // swapped or rewound while idle
	}
	return a.flush(ctx)
}

// CatchUp runs one projection until it has applied everything in the log
// at the time it reached the head, then returns: the backfill of a new or
// lagging projection. It takes the projection's run lock, so it returns
// ErrBusy when another runtime runs the projection (which is then
// catching up there). The events/s rate is limited to maxRate when it is
// above zero, to spare the database others use, within a page too (see
// RebuildOptions.MaxEventsPerSecond).
//
// A session that breaks while applying events is followed by another, as
// in Run, with the memory of where it broke: an event that breaks its
// session RetryPolicy.MaxSessionBreaks times in a row is given up
// (parked, or the projection stopped) instead of ending every call at
// the same place, since a caller that ran CatchUp again would start
// without that memory. Any other error ends the call.
func (r *Runtime) CatchUp(ctx context.Context, name string, maxRate float64) (eventstore.Position, error) {
	p, err := r.lookup(name)
	if err != nil {
		return eventstore.Position{}, err
	}
	if err := r.checkMigrated(ctx, []*registered{p}); err != nil {
		return eventstore.Position{}, err
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return eventstore.Position{}, err
	}
	breaks := &sessionBreaks{}
	var pos eventstore.Position
	for again := 0; ; again++ {
		h, err := relock(ctx, r, again, func() (*holding, error) { return r.hold(ctx, home, p) })
		if err != nil {
			return pos, err
		}
		st := r.stats[p.Name]
		st.start(h.gen, h.pos)
		a := newApplier(r, p, h.conn, h.gen, h.pos, st)
		a.breaks = breaks
		err = r.drain(ctx, a, h.pos, maxRate, nil)
		st.stop()
		r.closeConn(h.conn)
		pos = a.pos
		if err == nil || !a.broke || ctx.Err() != nil {
			return pos, err
		}
		if !r.pauseAfterBreak(ctx, p.Name, again, err) {
			return pos, ctx.Err()
		}
	}
}

// relockTries bounds how often a CatchUp or Rebuild that goes on after a
// broken session tries a lock it finds held: its own, until the server
// has ended the broken session's backend.
const relockTries = 5

// relock runs lock, the session's start, which returns ErrBusy while the
// lock is held. After a break (again > 0) the holder may be the broken
// session itself, so ErrBusy is tried again a few times.
func relock[T any](ctx context.Context, r *Runtime, again int, lock func() (T, error)) (T, error) {
	for try := 1; ; try++ {
		v, err := lock()
		if again == 0 || try >= relockTries || !errors.Is(err, ErrBusy) {
			return v, err
		}
		if !sleep(ctx, r.cfg.LockPollInterval) {
			return v, ctx.Err()
		}
	}
}

// pauseAfterBreak logs a broken session of CatchUp or Rebuild and waits,
// as Run does, before the next one; false if ctx ended meanwhile.
func (r *Runtime) pauseAfterBreak(ctx context.Context, name string, again int, err error) bool {
	wait := r.cfg.Retry.Backoff(again + 1)
	r.log.Warn("projection session broke while applying events; going on in a new one", "projection", name, "err", err, "retry_in", wait)
	return sleep(ctx, wait)
}

// prefixOfFresh is the length of the shortest prefix of evs that holds n
// events past pos.
func prefixOfFresh(evs []eventstore.Event, pos eventstore.Position, n int) int {
	i := 0
	for c := 0; i < len(evs) && c < n; i++ {
		if evs[i].Position.Compare(pos) > 0 {
			c++
		}
	}
	return i
}

// drain applies the log from from (inclusive) until a page reaches the
// head, then saves the checkpoint. With maxRate above 0 it applies at
// most that many events per second, within a page too.
func (r *Runtime) drain(ctx context.Context, a *applier, from eventstore.Position, maxRate float64, progress func(n int)) error {
	rctx, cancel := context.WithCancel(ctx)
	batches, wait := prefetch(rctx, r.pages(from))
	defer func() {
		cancel()
		wait()
	}()
	var pace *pacer
	if maxRate > 0 {
		pace = newPacer(maxRate, r.paceNow, r.paceSleep)
	}
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		// A page read from a checkpoint starts with the event at it,
		// already applied (the reader's From is inclusive): only the
		// events past it are read by this call, for the rate and the
		// progress (a resumed rebuild counted one event too many).
		fresh := 0
		for _, e := range b.events {
			if e.Position.Compare(a.pos) > 0 {
				fresh++
			}
		}
		// Paced, the page goes in slices that keep to the rate (paced
		// between pages only, a page of thousands of events went out at
		// full speed, and the first page unpaced).
		evs := b.events
		for left := fresh; ; {
			chunk, k := evs, left
			if pace != nil && left > 0 {
				var err error
				if k, err = pace.take(ctx, left); err != nil {
					return err
				}
				if k < left {
					chunk = evs[:prefixOfFresh(evs, a.pos, k)]
				}
			}
			if err := a.apply(ctx, chunk); err != nil {
				return err
			}
			if progress != nil {
				progress(k)
			}
			evs, left = evs[len(chunk):], left-k
			if len(evs) == 0 {
				break
			}
		}
		if b.end {
			return a.flush(ctx)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("projections: the log reader stopped")
}
