package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
)

// selectColumns reads an envelope. The named meta keys come from their
// columns; only the free-form ones are decoded from the meta document.
const selectColumns = `position, id, stream, version, type, source, coalesce(target, ''), tenant_id,
	coalesce(correlation_id, ''), coalesce(causation_id, ''), coalesce(producer, ''), schema_version, "timestamp", payload,
	nullif(meta - '{schema_version,producer,tenant_id,correlation_id,causation_id}'::text[], '{}'::jsonb)`

func scanEvent(row pgx.Row) (eventstore.Event, error) {
	var (
		e     eventstore.Event
		pos   int64
		id    uuid.UUID
		extra []byte
		pl    []byte
	)
	err := row.Scan(&pos, &id, &e.Stream, &e.Version, &e.Type, &e.Source, &e.Target, &e.Meta.TenantID,
		&e.Meta.CorrelationID, &e.Meta.CausationID, &e.Meta.Producer, &e.Meta.SchemaVersion, &e.Timestamp, &pl, &extra)
	if err != nil {
		return e, err
	}
	e.ID = id
	e.Position = eventstore.Pos(uint64(pos))
	e.Timestamp = e.Timestamp.UTC()
	e.Payload = json.RawMessage(pl)
	if extra != nil {
		var m eventstore.Meta
		if err := json.Unmarshal(extra, &m); err != nil {
			return e, fmt.Errorf("event %s: meta: %w", id, err)
		}
		e.Meta.Extra = m.Extra
	}
	return e, nil
}

func collect(rows pgx.Rows, hint int) ([]eventstore.Event, error) {
	defer rows.Close()
	// The hint is a caller's limit, not a count: cap what it reserves.
	out := make([]eventstore.Event, 0, min(hint, 256))
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ReadStream returns the events of stream from version from, at most limit
// of them (limit <= 0: all).
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	if s.isClosed() {
		return nil, eventstore.ErrClosed
	}
	if err := eventstore.CheckStreamID(stream); err != nil {
		return nil, err
	}
	if from < 1 {
		from = 1
	}
	q := `SELECT ` + selectColumns + ` FROM events WHERE stream = $1 AND version >= $2 ORDER BY version`
	args := []any{stream, from}
	if limit > 0 {
		q += ` LIMIT $3`
		args = append(args, limit)
	}
	// An empty answer from version 1 means the stream does not exist; from
	// a later version (a load after a snapshot) it may just be at its end,
	// so ask whether it exists in the same round trip.
	b := &pgx.Batch{}
	var evs []eventstore.Event
	b.Queue(q, args...).Query(func(rows pgx.Rows) error {
		var err error
		evs, err = collect(rows, max(limit, 0))
		return err
	})
	exists := from <= 1
	if from > 1 {
		b.Queue(`SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1)`, stream).QueryRow(func(row pgx.Row) error { return row.Scan(&exists) })
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("postgres store: read stream: %w", err)
	}
	if len(evs) == 0 && (from <= 1 || !exists) {
		return nil, fmt.Errorf("%w: %q", eventstore.ErrStreamNotFound, stream)
	}
	return evs, nil
}

// ReadAll returns one page of the log in position order.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	if s.isClosed() {
		return eventstore.Page{}, eventstore.ErrClosed
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultPageSize
	}
	evs, err := s.readFrom(ctx, int64(opts.From.Commit), limit, opts.Types, opts.TenantID)
	if err != nil {
		return eventstore.Page{}, err
	}
	page := eventstore.Page{Events: evs, Next: opts.From, End: len(evs) < limit}
	if len(evs) > 0 {
		page.Next = eventstore.Pos(evs[len(evs)-1].Position.Commit + 1)
	}
	return page, nil
}

func (s *Store) readFrom(ctx context.Context, from int64, limit int, types []string, tenant string) ([]eventstore.Event, error) {
	var b strings.Builder
	b.WriteString(`SELECT ` + selectColumns + ` FROM events WHERE position >= $1`)
	args := []any{from}
	if len(types) > 0 {
		args = append(args, types)
		b.WriteString(` AND type = ANY($` + strconv.Itoa(len(args)) + `)`)
	}
	if tenant != "" {
		args = append(args, tenant)
		b.WriteString(` AND tenant_id = $` + strconv.Itoa(len(args)))
	}
	args = append(args, limit)
	b.WriteString(` ORDER BY position LIMIT $` + strconv.Itoa(len(args)))
	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres store: read all: %w", err)
	}
	evs, err := collect(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store: read all: %w", err)
	}
	return evs, nil
}

// Head returns the position of the last event (Start when empty).
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if s.isClosed() {
		return eventstore.Position{}, eventstore.ErrClosed
	}
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&head); err != nil {
		return eventstore.Position{}, fmt.Errorf("postgres store: head: %w", err)
	}
	return eventstore.Pos(uint64(head)), nil
}

// Subscribe delivers the log after opts.After: catch-up by pages, then live.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if s.isClosed() {
		return nil, eventstore.ErrClosed
	}
	for _, t := range opts.Types {
		if err := eventstore.CheckTypeName(t); err != nil {
			return nil, err
		}
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultPageSize
	}
	sub := &subscription{
		store: s,
		after: int64(opts.After.Commit),
		types: opts.Types,
		batch: batch,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	s.notifier.add(sub.wake)
	return sub, nil
}

type subscription struct {
	store *Store
	after int64
	types []string
	batch int
	wake  chan struct{}
	done  chan struct{}
}

func (sub *subscription) Next(ctx context.Context) ([]eventstore.Event, error) {
	poll := time.NewTimer(sub.store.opts.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-sub.done:
			return nil, eventstore.ErrClosed
		case <-sub.store.stop:
			return nil, eventstore.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		// Take the wake token before reading, so that a commit that lands
		// between the read and the wait still wakes us.
		select {
		case <-sub.wake:
		default:
		}
		evs, err := sub.store.readFrom(ctx, sub.after+1, sub.batch, sub.types, "")
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if len(evs) > 0 {
			sub.after = int64(evs[len(evs)-1].Position.Commit)
			return evs, nil
		}
		select {
		case <-sub.wake:
		case <-poll.C:
			poll.Reset(sub.store.opts.PollInterval)
		case <-sub.done:
			return nil, eventstore.ErrClosed
		case <-sub.store.stop:
			return nil, eventstore.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (sub *subscription) Close() error {
	select {
	case <-sub.done:
	default:
		close(sub.done)
		sub.store.notifier.remove(sub.wake)
	}
	return nil
}
