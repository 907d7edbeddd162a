package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
)

// request is one Append call waiting for the committer.
type request struct {
	ctx      context.Context
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Prepared
	result   chan outcome
}

type outcome struct {
	res eventstore.AppendResult
	err error
}

// Append validates the events, then hands them to the committer, which
// writes them in a group-commit transaction shared with concurrent appends.
//
// If ctx ends while the append is in flight, Append returns ctx.Err() and
// the events may or may not have been written: retry with the same event
// ids, which is idempotent.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	prepared, err := s.validator.Check(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	req := &request{ctx: ctx, stream: stream, expected: expected, events: prepared, result: make(chan outcome, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	select {
	case s.queue <- req:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return eventstore.AppendResult{}, ctx.Err()
	}
	select {
	case o := <-req.result:
		return o.res, o.err
	case <-ctx.Done():
		return eventstore.AppendResult{}, ctx.Err()
	}
}

// maxHoldBack bounds how long a committer holds back a small group while
// another is in flight. A group commits in a few milliseconds; one that
// takes longer is stuck (a network stall, a lock held outside the store),
// and holding back behind it would only stall appends that could go.
const maxHoldBack = 20 * time.Millisecond

// commitLoop is a committer: it takes whatever appends are queued, writes
// them in one transaction, and repeats. While one group commits, the next
// one queues up. It never waits for more appends when no other group is in
// flight; when one is, it sends its group only once it holds
// MinOverlapEvents events (see Options), else when the other group ends or
// after maxHoldBack.
func (s *Store) commitLoop() {
	defer s.done.Done()
	var group []*request
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	for {
		group = group[:0]
		select {
		case r := <-s.queue:
			group = append(group, r)
		case <-s.stop:
			// Write what was queued before Close, then stop.
			for {
				select {
				case r := <-s.queue:
					s.commitGroup([]*request{r})
				default:
					return
				}
			}
		}
		n := len(group[0].events)
	drain:
		for n < s.opts.MaxGroupEvents {
			select {
			case r := <-s.queue:
				group = append(group, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		if n < s.opts.MinOverlapEvents && s.inFlight.Load() > 0 {
			hold.Reset(maxHoldBack)
		gather:
			for n < s.opts.MinOverlapEvents && s.inFlight.Load() > 0 {
				select {
				case r := <-s.queue:
					group = append(group, r)
					n += len(r.events)
				case <-s.groupDone:
				case <-hold.C:
					break gather
				case <-s.stop:
					break gather
				}
			}
			hold.Stop()
		}
		s.inFlight.Add(1)
		s.commitGroup(group)
		s.inFlight.Add(-1)
		select {
		case s.groupDone <- struct{}{}:
		default:
		}
	}
}

// commitGroup writes a group. If the shared transaction fails for a reason
// that may belong to one append only (bad data the validator let through,
// a constraint), each append is retried alone so that the others land.
func (s *Store) commitGroup(group []*request) {
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.result <- outcome{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	outs, err := s.writeGroupOneTrip(live)
	if errors.Is(err, errRecheckIDs) {
		outs, err = s.writeGroupChecked(live)
	}
	if err == nil {
		s.groups.Add(1)
		s.appends.Add(uint64(len(live)))
		for _, o := range outs {
			s.written.Add(uint64(len(o.res.Events)))
		}
		s.groupNanos.Add(int64(time.Since(start)))
		for i, r := range live {
			r.result <- outs[i]
		}
		s.notifier.wakeLocal()
		return
	}
	if len(live) > 1 && isDataError(err) {
		for _, r := range live {
			s.commitGroup([]*request{r})
		}
		return
	}
	err = translate(err)
	for _, r := range live {
		r.result <- outcome{err: err}
	}
}

func isDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	// 22: data exception, 23: integrity constraint violation.
	return len(pe.Code) == 5 && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
}

// translate turns a data error into the typed validation error the caller
// would have got had the validator caught it.
func translate(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "22" {
		return &eventstore.ValidationError{Index: -1, Rule: "storage", Message: "PostgreSQL refused the data: " + pe.Message}
	}
	return fmt.Errorf("postgres store: append: %w", err)
}

// insertEvents writes a whole group with one statement: one array per
// column, zipped by unnest.
const insertEvents = `INSERT INTO events (position, id, stream, version, type, source, target, tenant_id,
	correlation_id, causation_id, producer, schema_version, "timestamp", payload, meta)
SELECT p, i, s, v, ty, so, nullif(ta, ''), te, nullif(co, ''), nullif(ca, ''), nullif(pr, ''), sv, ts, pl, me
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::text[], $12::integer[], $13::timestamptz[], $14::jsonb[], $15::jsonb[])
	AS r(p, i, s, v, ty, so, ta, te, co, ca, pr, sv, ts, pl, me)`

// columns accumulates a group's rows column by column.
type columns struct {
	n                                          int
	position, version                          []int64
	id                                         []pgtype.UUID
	stream, typ, source, tenant, payload, meta []string
	target, correlation, causation, producer   []string
	schemaVersion                              []int32
	timestamp                                  []time.Time
}

func (c *columns) add(pos int64, e *eventstore.Event, meta []byte) {
	c.n++
	c.position = append(c.position, pos)
	c.id = append(c.id, pgtype.UUID{Bytes: e.ID, Valid: true})
	c.stream = append(c.stream, e.Stream)
	c.version = append(c.version, e.Version)
	c.typ = append(c.typ, e.Type)
	c.source = append(c.source, e.Source)
	c.target = append(c.target, e.Target)
	c.tenant = append(c.tenant, e.Meta.TenantID)
	c.correlation = append(c.correlation, e.Meta.CorrelationID)
	c.causation = append(c.causation, e.Meta.CausationID)
	c.producer = append(c.producer, e.Meta.Producer)
	c.schemaVersion = append(c.schemaVersion, int32(e.Meta.SchemaVersion))
	c.timestamp = append(c.timestamp, e.Timestamp)
	c.payload = append(c.payload, string(e.Payload))
	c.meta = append(c.meta, string(meta))
}

func (c *columns) args() []any {
	return []any{c.position, c.id, c.stream, c.version, c.typ, c.source, c.target, c.tenant,
		c.correlation, c.causation, c.producer, c.schemaVersion, c.timestamp, c.payload, c.meta}
}

// appendIdleTimeout bounds how long a transaction of the careful path
// (writeGroupChecked, which holds the lock across round trips) may sit
// idle on the server (waiting for the client's next round trip); past it
// the server ends the session, the lock is released and the group fails
// (its appends may be retried with the same ids).
const appendIdleTimeout = `'5s'`

// groupConn acquires a connection for a group transaction. done(false)
// rolls the transaction back before releasing the connection; on a broken
// connection the rollback fails too, and the pool then discards the
// connection rather than reuse it mid-transaction.
func (s *Store) groupConn(ctx context.Context) (*pgxpool.Conn, func(committed bool), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return conn, func(committed bool) {
		if !committed {
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(rctx, `ROLLBACK`)
		}
		conn.Release()
	}, nil
}

// errRecheckIDs asks commitGroup to rerun a group with the id check: an id
// of the group turned out to be stored already.
var errRecheckIDs = errors.New("postgres store: an event id is already stored")

// writeGroupChecked is the careful path of a group, taken when
// writeGroupOneTrip found one of its ids already stored: it looks every id
// up under the lock and decides each append in this process (a retry gets
// its original result, an id reused with other content is refused, two
// appends of the group with one id are told apart), then writes what is
// left. It costs two round trips under the lock instead of none.
func (s *Store) writeGroupChecked(group []*request) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	streams := make([]string, 0, len(group))
	seenStream := map[string]bool{}
	for _, r := range group {
		if !seenStream[r.stream] {
			seenStream[r.stream] = true
			streams = append(streams, r.stream)
		}
	}

	conn, done, err := s.groupConn(ctx)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() { done(committed) }()

	// Round trip 1: begin, lock, head, stream versions, stored ids.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	// A client that hangs inside this transaction (a network partition)
	// would hold the append lock, and so every process's appends, for as
	// long as the server cannot tell it is gone. The transaction is never
	// idle for more than a round trip, so the server may end it sooner.
	b.Queue(`SET LOCAL idle_in_transaction_session_timeout = ` + appendIdleTimeout)
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, s.lockKey)
	var head int64
	b.Queue(`SELECT coalesce(max(position), 0) FROM events`).QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
	versions := make(map[string]int64, len(streams))
	b.Queue(`SELECT s, coalesce((SELECT max(version) FROM events WHERE stream = s), 0) FROM unnest($1::text[]) AS s`, streams).Query(func(rows pgx.Rows) error {
		var st string
		var v int64
		_, err := pgx.ForEachRow(rows, []any{&st, &v}, func() error { versions[st] = v; return nil })
		return err
	})
	stored := map[uuid.UUID]eventstore.Event{}
	queueStoredIDs(b, group, stored)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}

	now := time.Now().UTC().Truncate(time.Microsecond)
	outs, cols, pos := s.decide(group, head, versions, stored, now)

	// Round trip 2: every row in one multi-row INSERT, the notification,
	// and the commit.
	w := &pgx.Batch{}
	if cols.n > 0 {
		w.Queue(insertEvents, cols.args()...)
		w.Queue(`SELECT pg_notify($1, $2)`, s.channel, strconv.FormatInt(pos, 10))
	}
	w.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, w).Close(); err != nil {
		return nil, err
	}
	committed = true
	return outs, nil
}

// queueStoredIDs queues the lookup of the group's ids that are stored.
func queueStoredIDs(b *pgx.Batch, group []*request, stored map[uuid.UUID]eventstore.Event) {
	var ids []pgtype.UUID
	for _, r := range group {
		for _, e := range r.events {
			ids = append(ids, pgtype.UUID{Bytes: e.ID, Valid: true})
		}
	}
	b.Queue(`SELECT `+selectColumns+` FROM events WHERE id = ANY($1)`, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			stored[e.ID] = e
		}
		return rows.Err()
	})
}

// decide gives each append of the group its outcome against the stream
// versions read under the lock, in queue order, and collects the rows to
// insert.
func (s *Store) decide(group []*request, head int64, read map[string]int64, stored map[uuid.UUID]eventstore.Event, now time.Time) ([]outcome, *columns, int64) {
	versions := make(map[string]int64, len(read))
	for k, v := range read {
		versions[k] = v
	}
	outs := make([]outcome, len(group))
	cols := &columns{}
	inGroup := map[uuid.UUID]eventstore.Event{}
	pos := head
	for i, r := range group {
		if res, err, dup := s.duplicate(r, stored, inGroup); dup {
			outs[i] = outcome{res: res, err: err}
			continue
		}
		cur := versions[r.stream]
		if !r.expected.Satisfied(cur) {
			outs[i] = outcome{err: &eventstore.ConcurrencyError{Stream: r.stream, Expected: r.expected, Actual: cur}}
			continue
		}
		res := eventstore.AppendResult{Stream: r.stream, Events: make([]eventstore.Event, len(r.events))}
		for j, p := range r.events {
			pos++
			cur++
			e := p.Event
			e.Version = cur
			e.Position = eventstore.Pos(uint64(pos))
			e.Timestamp = now
			res.Events[j] = e
			inGroup[e.ID] = e
			cols.add(pos, &e, p.MetaJSON)
		}
		versions[r.stream] = cur
		outs[i] = outcome{res: res}
	}
	return outs, cols, pos
}

// duplicate decides an append some of whose ids are already stored (or
// written earlier in the same group). If every event is stored in this
// stream with the same content, the original result is returned; any other
// overlap is a DuplicateEventError.
//
// The error names a stored event: the first whose content differs, else,
// when only some of the append's ids are stored, the first stored one.
func (s *Store) duplicate(r *request, stored, inGroup map[uuid.UUID]eventstore.Event) (eventstore.AppendResult, error, bool) {
	res := eventstore.AppendResult{Stream: r.stream}
	for _, p := range r.events {
		e, ok := stored[p.ID]
		if !ok {
			e, ok = inGroup[p.ID]
		}
		if !ok {
			continue
		}
		if !eventstore.SameContent(e, p) {
			return eventstore.AppendResult{}, &eventstore.DuplicateEventError{ID: p.ID.String(), Stream: e.Stream}, true
		}
		res.Events = append(res.Events, e)
	}
	switch len(res.Events) {
	case 0:
		return eventstore.AppendResult{}, nil, false
	case len(r.events):
		return res, nil, true
	default:
		first := res.Events[0]
		return eventstore.AppendResult{}, &eventstore.DuplicateEventError{ID: first.ID.String(), Stream: first.Stream}, true
	}
}
