package projections

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// applier applies events of one generation of one projection on one
// connection, committing each batch with the checkpoint. It is the heart
// of the exactly-once promise: the checkpoint update comes first in every
// transaction and only succeeds if the checkpoint is still where this
// applier left it, so a runner whose generation was swapped or whose
// checkpoint was moved writes nothing.
type applier struct {
	rt      *Runtime
	p       *registered
	conn    *pgx.Conn
	gen     int
	pos     eventstore.Position // applied, or passed without effect
	saved   eventstore.Position // as stored in projection_checkpoints
	savedAt time.Time
	st      *stats
	// building: this applier fills a generation being rebuilt, which
	// readers and the live runner do not use yet.
	building bool
	// breaks is the memory, kept across the sessions of one Run, CatchUp
	// or Rebuild, of where they broke.
	breaks *sessionBreaks
	// broke: this applier's session ended while it was applying events
	// and breaks says where, so that another session may go on from it.
	broke bool
}

func newApplier(rt *Runtime, p *registered, conn *pgx.Conn, gen int, checkpoint eventstore.Position, st *stats) *applier {
	return &applier{rt: rt, p: p, conn: conn, gen: gen, pos: checkpoint, saved: checkpoint, savedAt: time.Now(), st: st}
}

// apply applies one batch in log order. Events at or before the position
// already reached are dropped, which makes a redelivered batch harmless.
// An error means the session must end (connection lost, checkpoint moved,
// context over, or the projection stopped); a failing event is retried
// and parked here and is not an error.
func (a *applier) apply(ctx context.Context, batch []eventstore.Event) error {
	i := 0
	for i < len(batch) && batch[i].Position.Compare(a.pos) <= 0 {
		i++
	}
	fresh := batch[i:]
	// A redelivery can also interleave with new events; keep strict order.
	for j := 1; j < len(fresh); j++ {
		if fresh[j].Position.Compare(fresh[j-1].Position) <= 0 {
			fresh = dedupe(fresh, a.pos)
			break
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if k := a.suspects(fresh); k > 0 {
		// The last session broke while these events were being applied:
		// one transaction each, so that the event that breaks it, if one
		// does, is the one the break is counted against.
		for _, e := range fresh[:k] {
			if err := a.applyOne(ctx, e); err != nil {
				return err
			}
		}
		return a.apply(ctx, fresh[k:])
	}
	last := fresh[len(fresh)-1].Position

	handled := make([]eventstore.Event, 0, len(fresh))
	var prepErr error
	for _, e := range fresh {
		if !a.p.handles(e.Type) {
			continue
		}
		ev, err := a.prepare(e)
		if err != nil {
			prepErr = err
			break
		}
		handled = append(handled, ev)
	}
	if prepErr == nil && len(handled) == 0 {
		a.pos = last
		a.st.passed(a.gen, last, len(fresh))
		if time.Since(a.savedAt) >= a.rt.cfg.CheckpointInterval {
			return a.flush(ctx)
		}
		return nil
	}
	if prepErr == nil {
		start := time.Now()
		err := a.commit(ctx, last, func(tx pgx.Tx) error { return a.handle(ctx, tx, handled) })
		if err == nil {
			a.st.observeBatch(time.Since(start))
			a.st.applied(a.gen, last, len(fresh), len(handled))
			return nil
		}
		if a.conn.IsClosed() || sessionError(ctx, false, err) {
			// Also a handler's failure that left the connection closed:
			// which event failed is found one per transaction, in the
			// next session.
			a.brokeIn(ctx, last, err)
			return err
		}
		a.st.failed()
		a.rt.log.Warn("projection batch failed; applying its events one by one", "projection", a.p.Name, "events", len(fresh), "err", err)
	}
	// Isolate the failing event: one transaction per event, with retries.
	for _, e := range fresh {
		if err := a.applyOne(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// dedupe keeps the events after pos in strictly increasing position order.
func dedupe(events []eventstore.Event, pos eventstore.Position) []eventstore.Event {
	out := make([]eventstore.Event, 0, len(events))
	for _, e := range events {
		if e.Position.Compare(pos) > 0 {
			out = append(out, e)
			pos = e.Position
		}
	}
	return out
}

// handle calls the projection's handler on tx. A failure while the
// connection and ctx are still alive is the handler's own (handlerError):
// an attempt, not a break, even if the rollback then closes the
// connection.
func (a *applier) handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	err := catch(func() error { return a.p.Handler.Handle(a.rt.withLogger(ctx), tx, events) })
	if err == nil || ctx.Err() != nil || a.conn.IsClosed() {
		return err
	}
	return &handlerError{err}
}

// prepare upcasts a handled event and checks its schema version.
func (a *applier) prepare(e eventstore.Event) (eventstore.Event, error) {
	if a.rt.cfg.Upcast != nil && !a.p.Raw {
		var up eventstore.Event
		err := catch(func() (err error) {
			up, err = a.rt.cfg.Upcast(e)
			return err
		})
		if err != nil {
			return e, Permanent(fmt.Errorf("upcast: %w", err))
		}
		e = up
	}
	if !a.p.understands(e.Type, e.Meta.SchemaVersion) {
		return e, Permanent(&VersionError{Projection: a.p.Name, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Declared: a.p.versions[e.Type]})
	}
	return e, nil
}

func (a *applier) applyOne(ctx context.Context, e eventstore.Event) error {
	if !a.p.handles(e.Type) {
		a.pos = e.Position
		a.st.passed(a.gen, e.Position, 1)
		return nil
	}
	if breaks, err := a.brokenTooOften(e); err != nil {
		return a.giveUp(ctx, e, err, breaks)
	}
	policy := a.rt.cfg.Retry
	attempt, last := a.triedBefore(e)
	if attempt > 0 && (attempt >= policy.MaxAttempts || IsPermanent(last)) {
		return a.giveUp(ctx, e, last, attempt)
	}
	for attempt++; ; attempt++ {
		ev, err := a.prepare(e)
		if err == nil {
			err = a.commit(ctx, e.Position, func(tx pgx.Tx) error { return a.handle(ctx, tx, []eventstore.Event{ev}) })
			if err == nil {
				a.st.applied(a.gen, e.Position, 1, 1)
				return nil
			}
			if sessionError(ctx, a.conn.IsClosed(), err) {
				a.brokeAt(ctx, e, err)
				return err
			}
		}
		a.st.failed()
		if a.conn.IsClosed() {
			// The handler failed and its rollback closed the connection
			// (it left a query's rows open): the attempt counts, and the
			// next session goes on from it.
			a.failedAt(e, attempt, err)
			a.rt.log.Warn("projection event failed and left its connection closed; restarting the session", "projection", a.p.Name,
				"event_id", e.ID, "type", e.Type, "position", e.Position.String(), "attempt", attempt, "err", err)
			return err
		}
		if attempt < policy.MaxAttempts && !IsPermanent(err) {
			wait := policy.Backoff(attempt)
			a.rt.log.Warn("projection event failed; retrying", "projection", a.p.Name, "event_id", e.ID, "type", e.Type,
				"position", e.Position.String(), "attempt", attempt, "retry_in", wait, "err", err)
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			continue
		}
		return a.giveUp(ctx, e, err, attempt)
	}
}

// giveUp ends the attempts at e: it parks e, or stops the projection on it
// with StopOnError.
func (a *applier) giveUp(ctx context.Context, e eventstore.Event, cause error, attempts int) error {
	if !a.p.StopOnError {
		return a.park(ctx, e, cause, attempts)
	}
	if a.building {
		// The rebuild stops here, to resume from its checkpoint once the
		// handler is fixed; the live projection, which is not concerned,
		// keeps running.
		return fmt.Errorf("projections: event %s (%s at %s): %w", e.ID, e.Type, e.Position, cause)
	}
	err := a.stop(ctx, e, cause)
	if errors.Is(err, ErrStopped) && a.breaks != nil {
		// After Resume the event is tried afresh: the handler may have
		// been fixed.
		*a.breaks = sessionBreaks{}
	}
	return err
}

// park records e in the dead-letter table and moves the checkpoint past
// it, in one transaction. An entry is keyed by the event's id and
// position: EventStoreDB lets two streams hold one id, and each of those
// events parked keeps its own entry.
func (a *applier) park(ctx context.Context, e eventstore.Event, cause error, attempts int) error {
	c, p, err := posArgs(e.Position)
	if err != nil {
		return err
	}
	err = a.commit(ctx, e.Position, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO projection_dead_letters
			(projection, generation, event_id, commit_position, prepare_position, event_type, stream, tenant_id, error, attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (projection, generation, event_id, commit_position, prepare_position) DO UPDATE
			SET error = excluded.error, attempts = projection_dead_letters.attempts + excluded.attempts, last_failed_at = now()`,
			a.p.Name, a.gen, e.ID, c, p, e.Type, e.Stream, e.Meta.TenantID, storable(cause.Error()), attempts)
		return err
	})
	if err != nil {
		if sessionError(ctx, a.conn.IsClosed(), err) {
			return err
		}
		return fmt.Errorf("projections: park event %s of %q: %w", e.ID, a.p.Name, err)
	}
	a.st.parkedOne(a.gen, e.Position)
	a.rt.log.Error("projection event parked", "projection", a.p.Name, "generation", a.gen, "event_id", e.ID, "type", e.Type,
		"position", e.Position.String(), "attempts", attempts, "err", cause)
	return nil
}

// stop records that the projection stopped on e and ends the session.
func (a *applier) stop(ctx context.Context, e eventstore.Event, cause error) error {
	msg := storable(fmt.Sprintf("event %s (%s at %s): %v", e.ID, e.Type, e.Position, cause))
	err := pgx.BeginTxFunc(ctx, a.conn, readCommitted, func(tx pgx.Tx) error {
		// Fenced like a commit: a swap or a rewind that committed since
		// the last attempt took the event away from this generation, and
		// the stop would otherwise fall on the generation that replaced
		// it. The state row is locked first, as the swap and Reprocess
		// do, so the checkpoint read after it is the one they left.
		var gen *int
		if err := tx.QueryRow(ctx, `SELECT active_generation FROM projection_state WHERE projection = $1 FOR UPDATE`, a.p.Name).Scan(&gen); err != nil {
			return err
		}
		if gen == nil || *gen != a.gen {
			return errFenced
		}
		pos, err := loadCheckpoint(ctx, tx, a.p.Name, a.gen)
		if errors.Is(err, errNoCheckpoint) || (err == nil && pos != a.saved) {
			return errFenced
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE projection_state SET stopped = true, last_error = $2, updated_at = now() WHERE projection = $1`, a.p.Name, msg)
		return err
	})
	if errors.Is(err, errFenced) {
		return err
	}
	if err != nil {
		return fmt.Errorf("projections: stop %q: %w", a.p.Name, err)
	}
	a.rt.log.Error("projection stopped on error", "projection", a.p.Name, "event_id", e.ID, "type", e.Type, "position", e.Position.String(), "err", cause)
	return fmt.Errorf("%w: %q: %s", ErrStopped, a.p.Name, msg)
}

// storable makes an error text fit a text column: PostgreSQL refuses a
// NUL byte and bytes that are not UTF-8, and a handler's error may hold
// either (a quoted payload, a driver message). Refused, the text would
// fail the very transaction that parks the event or stops the projection,
// and the runner would meet the event again for ever.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// flush writes a checkpoint that only moved past unhandled events.
func (a *applier) flush(ctx context.Context) error {
	if a.pos == a.saved {
		a.savedAt = time.Now()
		return nil
	}
	return a.commit(ctx, a.pos, func(pgx.Tx) error { return nil })
}

// commit runs fn in a transaction that first moves the checkpoint from
// where this applier saved it to to, and commits both together.
func (a *applier) commit(ctx context.Context, to eventstore.Position, fn func(pgx.Tx) error) error {
	newC, newP, err := posArgs(to)
	if err != nil {
		return err
	}
	oldC, oldP, _ := posArgs(a.saved)
	tx, err := a.conn.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	tag, err := tx.Exec(ctx, `UPDATE projection_checkpoints
		SET commit_position = $3, prepare_position = $4, updated_at = now()
		WHERE projection = $1 AND generation = $2 AND commit_position = $5 AND prepare_position = $6`,
		a.p.Name, a.gen, newC, newP, oldC, oldP)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errFenced
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if committedNothing(a.conn, err) {
			// The server answered COMMIT with an error (a deferred
			// constraint) or with ROLLBACK (a statement of the handler
			// failed and the handler went on): the transaction is known
			// to have rolled back, so this is a failure of the batch or
			// event, to be retried and parked like any other.
			return fmt.Errorf("projections: commit: %w", err)
		}
		// Otherwise the outcome of the commit is unknown: restart from
		// what the database holds.
		return fmt.Errorf("projections: commit: %w (%w)", err, errCommitUnknown)
	}
	a.pos, a.saved, a.savedAt = to, to, time.Now()
	a.st.checkpointed(a.gen, to)
	a.settle()
	return nil
}

// committedNothing reports whether a failed COMMIT on conn is known to
// have rolled the transaction back: the server answered it (with an error
// or with ROLLBACK) and the connection is still usable. A commit cut off
// by the network or by ctx closes the connection and stays unknown.
func committedNothing(conn *pgx.Conn, err error) bool {
	if conn.IsClosed() || conn.PgConn().TxStatus() != 'I' {
		return false
	}
	var pgErr *pgconn.PgError
	return errors.Is(err, pgx.ErrTxCommitRollback) || errors.As(err, &pgErr)
}

// posArgs splits a position into the two bigint columns.
func posArgs(p eventstore.Position) (int64, int64, error) {
	if p.Commit > math.MaxInt64 || p.Prepare > math.MaxInt64 {
		return 0, 0, fmt.Errorf("projections: position %s does not fit the checkpoint columns (bigint)", p)
	}
	return int64(p.Commit), int64(p.Prepare), nil
}

func fromArgs(c, p int64) eventstore.Position {
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}
}

var errNoCheckpoint = errors.New("projections: no checkpoint")
