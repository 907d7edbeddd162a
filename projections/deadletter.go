package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
)

// Parked is an event a projection could not apply and moved past.
type Parked struct {
	ID            int64               `json:"id"`
	Projection    string              `json:"projection"`
	Generation    int                 `json:"generation"`
	EventID       uuid.UUID           `json:"event_id"`
	Position      eventstore.Position `json:"position"`
	Type          string              `json:"type"`
	Stream        string              `json:"stream"`
	TenantID      string              `json:"tenant_id"`
	Error         string              `json:"error"`
	Attempts      int                 `json:"attempts"`
	FirstFailedAt time.Time           `json:"first_failed_at"`
	LastFailedAt  time.Time           `json:"last_failed_at"`
}

// parkedColumns reads the times as microseconds since the Unix epoch:
// read as timestamptz they arrive as text under the simple protocol and
// exec mode, which pgx parses in the ISO DateStyle only, so a database set
// to another style could not list its parked events.
const parkedColumns = `id, projection, generation, event_id, commit_position, prepare_position, event_type, stream, tenant_id, error, attempts,
	(extract(epoch FROM first_failed_at) * 1000000)::bigint, (extract(epoch FROM last_failed_at) * 1000000)::bigint`

func scanParked(row pgx.Row) (Parked, error) {
	var d Parked
	var c, p, first, last int64
	err := row.Scan(&d.ID, &d.Projection, &d.Generation, &d.EventID, &c, &p, &d.Type, &d.Stream, &d.TenantID, &d.Error, &d.Attempts, &first, &last)
	d.Position = fromArgs(c, p)
	d.FirstFailedAt, d.LastFailedAt = time.UnixMicro(first).UTC(), time.UnixMicro(last).UTC()
	return d, err
}

// ListParked returns the parked events of the named projection, or of all
// projections when name is empty, in projection and log order. It reads
// the database only, so it also lists projections this runtime does not
// register.
func (r *Runtime) ListParked(ctx context.Context, name string) ([]Parked, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+parkedColumns+` FROM projection_dead_letters
		WHERE $1 = '' OR projection = $1
		ORDER BY projection, generation, commit_position, prepare_position`, name)
	if err != nil {
		return nil, fmt.Errorf("projections: list parked events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Parked, error) { return scanParked(row) })
	if err != nil {
		return nil, fmt.Errorf("projections: list parked events: %w", err)
	}
	return out, nil
}

// GetParked returns one parked event, or ErrNotParked.
func (r *Runtime) GetParked(ctx context.Context, id int64) (Parked, error) {
	d, err := scanParked(r.pool.QueryRow(ctx, `SELECT `+parkedColumns+` FROM projection_dead_letters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("%w: %d", ErrNotParked, id)
	}
	if err != nil {
		return d, fmt.Errorf("projections: read parked event %d: %w", id, err)
	}
	return d, nil
}

// RetryParked applies a parked event again, to the generation that parked
// it, and removes the entry when that succeeds, in one transaction: a
// retry applies the event once however often it is called. When the
// handler fails again, the entry stays with the new error and one more
// attempt, and the error is a *RetryError. The event is applied after
// events that followed it in the log; handlers whose result depends on
// order must guard against that (the catalog does, by position).
func (r *Runtime) RetryParked(ctx context.Context, id int64) error {
	d, err := r.GetParked(ctx, id)
	if err != nil {
		return err
	}
	p, err := r.lookup(d.Projection)
	if err != nil {
		return err
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return err
	}
	e, err := r.eventAt(ctx, d.Position, d.EventID)
	if err != nil {
		return err
	}
	a := &applier{rt: r, p: p}
	var handlerErr error
	err = pgx.BeginTxFunc(ctx, r.pool, readCommitted, func(tx pgx.Tx) error {
		// The state row is shared-locked so that no swap retires the
		// generation under the retry; the entry is locked so that two
		// retries cannot both apply it. The state row first, in a
		// statement of its own, as the swap, Reprocess and CancelRebuild
		// lock it before they delete entries: locked the other way round,
		// a retry and one of them each waited for the other, and the
		// server aborted one with "deadlock detected".
		if _, err := tx.Exec(ctx, `SELECT FROM projection_state WHERE projection = $1 FOR SHARE`, d.Projection); err != nil {
			return fmt.Errorf("projections: retry parked event %d: %w", id, err)
		}
		var gen int
		var schema string
		err := tx.QueryRow(ctx, `SELECT dl.generation, g.schema_name
			FROM projection_dead_letters dl
			JOIN projection_generations g ON g.projection = dl.projection AND g.generation = dl.generation
			WHERE dl.id = $1 AND dl.projection = $2 AND g.state IN ('active', 'building')
			FOR UPDATE OF dl`, id, d.Projection).Scan(&gen, &schema)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %d", ErrNotParked, id)
		}
		if err != nil {
			return fmt.Errorf("projections: retry parked event %d: %w", id, err)
		}
		path := pgx.Identifier{schema}.Sanitize() + ", " + pgx.Identifier{home}.Sanitize()
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, path); err != nil {
			return err
		}
		ev, err := a.prepare(e)
		if err == nil {
			err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				if err := catch(func() error { return p.Handler.Handle(r.withLogger(ctx), sp, []eventstore.Event{ev}) }); err != nil {
					return err
				}
				// Deferred constraints are checked here rather than at
				// COMMIT, and a statement error the handler ignored
				// shows here, so that either is a failure of the event,
				// undone with the savepoint and recorded below.
				_, err := sp.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`)
				return err
			})
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			handlerErr = err
			_, err := tx.Exec(ctx, `UPDATE projection_dead_letters SET error = $2, attempts = attempts + 1, last_failed_at = now() WHERE id = $1`, id, storable(err.Error()))
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return err
	}
	if handlerErr != nil {
		r.stats[p.Name].failed()
		return &RetryError{ID: id, Projection: p.Name, Err: handlerErr}
	}
	r.log.Info("parked event applied on retry", "projection", p.Name, "id", id, "event_id", d.EventID)
	return nil
}

// RetryAllResult counts what RetryAllParked did.
type RetryAllResult struct {
	// Applied left the table: their retry succeeded.
	Applied int
	// Failed failed again and stay parked, with one more attempt.
	Failed int
	// Gone were listed but had left the table when their turn came:
	// another process retried or skipped them meanwhile.
	Gone int
}

// RetryAllParked retries every parked event of the projection (all
// projections when name is empty) in log order and counts the outcomes.
// On an error that is not one event's failure (the database, ctx), it
// stops and returns what it had done so far with the error.
func (r *Runtime) RetryAllParked(ctx context.Context, name string) (RetryAllResult, error) {
	var res RetryAllResult
	list, err := r.ListParked(ctx, name)
	if err != nil {
		return res, err
	}
	for _, d := range list {
		err := r.RetryParked(ctx, d.ID)
		var re *RetryError
		switch {
		case err == nil:
			res.Applied++
		case errors.As(err, &re):
			res.Failed++
		case errors.Is(err, ErrNotParked):
			res.Gone++
		default:
			return res, err
		}
	}
	return res, nil
}

// SkipParked removes a parked event without applying it: its effect is
// given up for good.
func (r *Runtime) SkipParked(ctx context.Context, id int64) error {
	var name string
	var eventID uuid.UUID
	err := r.pool.QueryRow(ctx, `DELETE FROM projection_dead_letters WHERE id = $1 RETURNING projection, event_id`, id).Scan(&name, &eventID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %d", ErrNotParked, id)
	}
	if err != nil {
		return fmt.Errorf("projections: skip parked event %d: %w", id, err)
	}
	r.log.Warn("parked event skipped", "projection", name, "id", id, "event_id", eventID)
	return nil
}

// eventAt reads the event stored at pos and checks its id.
func (r *Runtime) eventAt(ctx context.Context, pos eventstore.Position, id uuid.UUID) (eventstore.Event, error) {
	page, err := r.store.ReadAll(ctx, eventstore.ReadAllOptions{From: pos, Limit: 1})
	if err != nil {
		return eventstore.Event{}, fmt.Errorf("projections: read event %s at %s: %w", id, pos, err)
	}
	if len(page.Events) == 0 || page.Events[0].ID != id {
		return eventstore.Event{}, fmt.Errorf("projections: event %s is no longer at position %s in the log", id, pos)
	}
	return page.Events[0], nil
}
