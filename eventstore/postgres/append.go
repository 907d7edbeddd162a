package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
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
	bytes    int // the events' payloads and metas
	result   chan outcome
	// answer says who settled the append, once: the committer, which
	// then sends the outcome (answerSent), or the caller, whose context
	// ended first (answerAbandoned). See awaitOutcome and Store.answer.
	answer atomic.Int32
}

const (
	answerPending   = iota
	answerSent      // the committer sends the outcome; the caller takes it
	answerAbandoned // the caller returned ctx.Err(); nobody takes the outcome
)

type outcome struct {
	res eventstore.AppendResult
	err error
	// wrote: the group wrote res.Events; a retry's original result, which
	// it only read back, is not counted in Stats.Events.
	wrote bool
}

// Append validates the events, then hands them to the committer, which
// writes them in a group-commit transaction shared with concurrent appends.
//
// If ctx ends while the append is in flight, Append returns ctx.Err() and
// the events may or may not have been written: retry with the same event
// ids, which is idempotent. An append whose group had committed by then
// returns its result. One whose group commits after it returned is
// counted in Stats.UnreportedEvents: no call reports those events as
// written (the retry's AppendReporting says wrote=false).
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	res, _, err := s.AppendReporting(ctx, stream, expected, events...)
	return res, err
}

// AppendReporting is Append, and wrote is false for an idempotent retry,
// which wrote nothing (eventstore.WriteReporter; Stats.Events counts the
// same way).
func (s *Store) AppendReporting(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (res eventstore.AppendResult, wrote bool, err error) {
	// A closed store says so whatever the append (checked again below,
	// before it is queued), as its reads do.
	if s.isClosed() {
		return eventstore.AppendResult{}, false, eventstore.ErrClosed
	}
	prepared, err := s.validator.Check(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	size := 0
	for i := range prepared {
		size += len(prepared[i].Payload) + len(prepared[i].MetaJSON)
	}
	req := &request{ctx: ctx, stream: stream, expected: expected, events: prepared, bytes: size, result: make(chan outcome, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return eventstore.AppendResult{}, false, eventstore.ErrClosed
	}
	// Counted before it is queued: a committer that takes it at once
	// must see it (linger's expectation).
	s.arrivals.Add(1)
	select {
	case s.queue <- req:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.arrivals.Add(-1)
		s.closeMu.RUnlock()
		return eventstore.AppendResult{}, false, ctx.Err()
	}
	o := awaitOutcome(ctx, req)
	return o.res, o.wrote && o.err == nil, o.err
}

// awaitOutcome waits for an append's outcome, or until ctx ends. Once ctx
// has ended, whichever of the caller and the committer claims the request
// first decides: an outcome the committer has claimed (it is on its way
// or delivered) is returned, not ctx's error, since select picks at
// random among ready cases and an append that committed would be
// reported as maybe written (and not counted as written by the server's
// metrics, nor its retry). Otherwise the caller gets ctx's error, and the
// committer, which finds the request abandoned, counts a write of it in
// Stats.UnreportedEvents (Store.answer).
func awaitOutcome(ctx context.Context, r *request) outcome {
	select {
	case o := <-r.result:
		return o
	case <-ctx.Done():
		if r.answer.CompareAndSwap(answerPending, answerAbandoned) {
			return outcome{err: ctx.Err()}
		}
		return <-r.result
	}
}

// answer delivers an append's outcome, unless its caller has stopped
// waiting: then an outcome that wrote is counted as unreported, the one
// place that write is told.
func (s *Store) answer(r *request, o outcome) {
	if r.answer.CompareAndSwap(answerPending, answerSent) {
		r.result <- o
		return
	}
	if o.wrote && o.err == nil {
		s.unreportedAppends.Add(1)
		s.unreportedEvents.Add(uint64(len(o.res.Events)))
	}
}

// takeQueued adds to group, which holds n events of b bytes, the appends
// already queued, without waiting, while the group is under
// MaxGroupEvents and MaxGroupBytes.
func (s *Store) takeQueued(group []*request, n, b int) ([]*request, int, int) {
	for n < s.opts.MaxGroupEvents && b < s.opts.MaxGroupBytes {
		select {
		case r := <-s.queue:
			group = append(group, r)
			n += len(r.events)
			b += r.bytes
		default:
			return group, n, b
		}
	}
	return group, n, b
}

// maxHoldBack bounds how long a committer holds back a small group while
// another is in flight. A group commits in a few milliseconds; one that
// takes longer is stuck (a network stall, a lock held outside the store),
// and holding back behind it would only stall appends that could go.
const maxHoldBack = 20 * time.Millisecond

// commitLoop is a committer: it takes whatever appends are queued, writes
// them in one transaction, and repeats. While one group commits, the next
// one queues up; one committer gathers at a time (the gathering token).
// When another group is in flight it sends its group only once it holds
// MinOverlapEvents events (see Options), else when the other group ends or
// after maxHoldBack. With no group in flight it waits only for the appends
// the last group leads it to expect (linger, Options.Linger).
func (s *Store) commitLoop() {
	defer s.done.Done()
	var group []*request
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	for {
		group = group[:0]
		// One committer gathers at a time: two would split the appends
		// arriving between them.
		select {
		case s.gathering <- struct{}{}:
		case <-s.stop:
			s.gathering <- struct{}{}
		}
		select {
		case r := <-s.queue:
			group = append(group, r)
		case <-s.stop:
			<-s.gathering
			// Write what was queued before Close, then stop. In groups, as
			// before Close: one append at a time, a database that does not
			// answer would hold each of them, and Close, for a whole
			// groupTimeout (TestCloseDuringAStallAnswersTheQueueInGroups).
			for {
				group, _, _ = s.takeQueued(group[:0], 0, 0)
				if len(group) == 0 {
					return
				}
				s.commitGroup(group)
			}
		}
		var n, b int
		group, n, b = s.takeQueued(group, len(group[0].events), group[0].bytes)
		if n < s.opts.MinOverlapEvents && b < s.opts.MaxGroupBytes && s.inFlight.Load() > 0 {
			hold.Reset(maxHoldBack)
		gather:
			for n < s.opts.MinOverlapEvents && b < s.opts.MaxGroupBytes && s.inFlight.Load() > 0 {
				select {
				case r := <-s.queue:
					group = append(group, r)
					n += len(r.events)
					b += r.bytes
				case <-s.groupDone:
				case <-hold.C:
					break gather
				case <-s.stop:
					break gather
				}
			}
			hold.Stop()
		}
		group = s.linger(group, n, b, hold)
		s.inFlight.Add(1)
		<-s.gathering
		s.commitGroup(group)
		s.inFlight.Add(-1)
		select {
		case s.groupDone <- struct{}{}:
		default:
		}
	}
}

// maxLingerBackoff is the most groups a committer sends without lingering
// after waits that timed out.
const maxLingerBackoff = 64

// linger, when no group is in flight, waits for the appends the committer
// expects (Options.Linger): those that arrived while the last group was in
// flight, plus those the last group released, whose writers may append
// again at once. It waits at most Options.Linger and half the last group's
// time. Writers that append in a loop come back within microseconds, and
// one group carrying all of them pays the fixed cost of a group once.
// Appends that arrive independently of the groups (a server's requests, a
// rate-limited producer) do not fill that expectation in half a group's
// time; a wait that times out backs off: the next 1, 2, 4, ... up to
// maxLingerBackoff groups go without waiting, so such writers rarely pay
// for one. A wait that gets all it expected ends the back-off. The caller
// holds the gathering token, which guards lingerSkip and lingerBackoff.
func (s *Store) linger(group []*request, n, b int, hold *time.Timer) []*request {
	want := int(s.expect.Load())
	if s.opts.Linger <= 0 || len(group) >= want || n >= s.opts.MaxGroupEvents || b >= s.opts.MaxGroupBytes || s.inFlight.Load() > 0 {
		return group
	}
	wait := min(s.opts.Linger, time.Duration(s.lastGroup.Load()/2))
	if wait <= 0 {
		return group
	}
	if s.lingerSkip > 0 {
		s.lingerSkip--
		return group
	}
	s.lingers.Add(1)
	hold.Reset(wait)
	defer hold.Stop()
	for len(group) < want && n < s.opts.MaxGroupEvents && b < s.opts.MaxGroupBytes {
		select {
		case r := <-s.queue:
			group = append(group, r)
			n += len(r.events)
			b += r.bytes
		case <-hold.C:
			s.lingersTimedOut.Add(1)
			s.lingerBackoff = min(maxLingerBackoff, max(1, 2*s.lingerBackoff))
			s.lingerSkip = s.lingerBackoff
			return group
		case <-s.stop:
			return group
		}
	}
	s.lingerBackoff = 0
	return group
}

// commitGroup writes a group. If the shared transaction fails for a reason
// that may belong to one append only (bad data the validator let through,
// a constraint), each append is retried alone so that the others land.
func (s *Store) commitGroup(group []*request) {
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			s.answer(r, outcome{err: err})
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	arrivedBefore := s.arrivals.Load()
	defer func() { s.lastGroup.Store(int64(time.Since(start))) }()
	outs, err := s.writeGroupOneTrip(live)
	if errors.Is(err, errRecheckIDs) {
		outs, err = s.writeGroupChecked(live)
	}
	if err == nil {
		s.groups.Add(1)
		s.appends.Add(uint64(len(live)))
		for _, o := range outs {
			if o.wrote {
				s.written.Add(uint64(len(o.res.Events)))
			}
		}
		s.groupNanos.Add(int64(time.Since(start)))
		// What a committer lingering for the next group expects: what
		// arrived meanwhile, and the writers released now.
		s.expect.Store(s.arrivals.Load() - arrivedBefore + int64(len(live)))
		for i, r := range live {
			s.answer(r, outs[i])
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
		s.answer(r, outcome{err: err})
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
	return groupErr("append", err)
}

// groupErr is storeErr for an error of a group. The committer's context
// is its own (groupTimeout), never the caller's: a group that ran out of
// it was not answered by the database in time, an outage whose result is
// unknown, so it is an *eventstore.UnavailableError, and does not match
// context.DeadlineExceeded, which a caller reads as its own deadline.
func groupErr(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &eventstore.UnavailableError{Err: fmt.Errorf("postgres store: %s: the database did not answer in time (%v)", op, err)}
	}
	return storeErr(op, err)
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

// args are insertEvents' arguments, typed for a Query message.
func (c *columns) args() []typedArg {
	text := func(v []string) typedArg { return typedArg{pgtype.TextArrayOID, v} }
	return []typedArg{{pgtype.Int8ArrayOID, c.position}, {pgtype.UUIDArrayOID, c.id}, text(c.stream),
		{pgtype.Int8ArrayOID, c.version}, text(c.typ), text(c.source), text(c.target), text(c.tenant),
		text(c.correlation), text(c.causation), text(c.producer), {pgtype.Int4ArrayOID, c.schemaVersion},
		{pgtype.TimestamptzArrayOID, c.timestamp}, text(c.payload), text(c.meta)}
}

// typedArg is an argument of a statement sent in a Query message: a value
// and the PostgreSQL type whose text form it takes.
type typedArg struct {
	oid   uint32
	value any
}

// queryMessage is one round trip of the careful path: statements sent as
// one simple-protocol Query message, their arguments inlined as quoted
// literals in their text form.
//
// Not a pipeline of extended-protocol messages (Bind, Execute, ..., Sync),
// as pgx sends a Batch: PostgreSQL runs each Execute as soon as it has
// arrived, and arms idle_in_transaction_session_timeout only once it has
// answered a Sync. A client whose network hangs after part of such a
// pipeline has arrived (past the lock's Execute, or past the INSERT's
// Bind) leaves its session waiting for the rest with the append lock held
// and no timer running, so every process's appends wait for as long as
// the network hangs (TestCarefulPathNetworkStall/lock-round-trip-cut). A
// Query message is read whole before any of it runs: the part of one that
// arrived takes no lock, and a transaction waiting for the rest of the
// next one is idle, under the timer armed when it answered the previous
// one.
type queryMessage struct {
	types *pgtype.Map
	sql   strings.Builder
	err   error
}

// add appends the statement sql, whose placeholders $1, $2, ... are
// replaced by args. sql is one of this package's constant statements: no
// '$' other than placeholders.
func (q *queryMessage) add(sql string, args ...typedArg) {
	if q.err != nil {
		return
	}
	if q.sql.Len() > 0 {
		q.sql.WriteString(";\n")
	}
	for i := 0; i < len(sql); i++ {
		if sql[i] != '$' {
			q.sql.WriteByte(sql[i])
			continue
		}
		j := i + 1
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(sql[i+1 : j])
		if err != nil || n < 1 || n > len(args) {
			q.err = fmt.Errorf("postgres store: placeholder %q has no argument", sql[i:j])
			return
		}
		text, err := q.types.Encode(args[n-1].oid, pgtype.TextFormatCode, args[n-1].value, nil)
		if err != nil {
			q.err = fmt.Errorf("postgres store: encode argument %d: %w", n, err)
			return
		}
		// With standard_conforming_strings on (the caller checks), a
		// quote doubled is the only escape a string literal needs.
		q.sql.WriteByte('\'')
		for _, c := range text {
			if c == '\'' {
				q.sql.WriteByte('\'')
			}
			q.sql.WriteByte(c)
		}
		q.sql.WriteByte('\'')
		i = j - 1
	}
}

// send sends the message and passes the rows of the results for which
// read has a function (by the statement's index) to it; it returns the
// first error.
func (q *queryMessage) send(ctx context.Context, conn *pgx.Conn, read map[int]func(pgx.Rows) error) error {
	if q.err != nil {
		return q.err
	}
	if conn.PgConn().ParameterStatus("standard_conforming_strings") != "on" {
		return errors.New("postgres store: the careful append path needs standard_conforming_strings = on")
	}
	mrr := conn.PgConn().Exec(ctx, q.sql.String())
	var readErr error
	for i := 0; mrr.NextResult(); i++ {
		f := read[i]
		if f == nil || readErr != nil {
			// Its rows are read and dropped: the next result follows them.
			_, _ = mrr.ResultReader().Close()
			continue
		}
		rows := pgx.RowsFromResultReader(conn.TypeMap(), mrr.ResultReader())
		readErr = f(rows)
		rows.Close()
		if readErr == nil {
			readErr = rows.Err()
		}
	}
	if err := mrr.Close(); err != nil {
		return err
	}
	return readErr
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

// groupTimeout bounds how long a committer waits for the database to
// answer a group (a connection, its round trips, the lookup of a refused
// append's ids). A database that has not answered by then is as good as
// unreachable: the group fails with an *eventstore.UnavailableError (see
// groupErr), and its appends may or may not have been written.
const groupTimeout = 60 * time.Second

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
	ctx, cancel := context.WithTimeout(context.Background(), s.groupTimeout)
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

	// Round trip 1: begin, lock, head, stream versions, stored ids. Each
	// round trip is one Query message (see queryMessage).
	q := &queryMessage{types: conn.Conn().TypeMap()}
	// Read committed whatever the session's default: the head and the
	// versions are read after the lock, and must see what committed
	// before it.
	q.add(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	// A client that hangs inside this transaction (a network partition)
	// would hold the append lock, and so every process's appends, for as
	// long as the server cannot tell it is gone. The transaction is never
	// idle for more than a round trip, so the server may end it sooner.
	q.add(`SET LOCAL idle_in_transaction_session_timeout = ` + appendIdleTimeout)
	q.add(`SELECT pg_advisory_xact_lock($1)`, typedArg{pgtype.Int8OID, s.lockKey})
	q.add(`SELECT coalesce(max(position), 0) FROM events`)
	q.add(`SELECT s, coalesce((SELECT max(version) FROM events WHERE stream = s), 0) FROM unnest($1::text[]) AS s`,
		typedArg{pgtype.TextArrayOID, streams})
	q.add(`SELECT `+selectColumns+` FROM events WHERE id = ANY($1::uuid[])`, typedArg{pgtype.UUIDArrayOID, groupIDs(group)})
	var head int64
	versions := make(map[string]int64, len(streams))
	stored := map[uuid.UUID]eventstore.Event{}
	err = q.send(ctx, conn.Conn(), map[int]func(pgx.Rows) error{
		3: func(rows pgx.Rows) error {
			if !rows.Next() {
				return errors.New("postgres store: no head")
			}
			return rows.Scan(&head)
		},
		4: func(rows pgx.Rows) error {
			var st string
			var v int64
			_, err := pgx.ForEachRow(rows, []any{&st, &v}, func() error { versions[st] = v; return nil })
			return err
		},
		5: func(rows pgx.Rows) error { return scanStored(rows, stored) },
	})
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC().Truncate(time.Microsecond)
	outs, cols, pos := s.decide(group, head, versions, stored, now)

	// Round trip 2: every row in one multi-row INSERT, the notification,
	// and the commit.
	w := &queryMessage{types: conn.Conn().TypeMap()}
	if cols.n > 0 {
		w.add(insertEvents, cols.args()...)
		w.add(`SELECT pg_notify($1, $2)`, typedArg{pgtype.TextOID, s.channel}, typedArg{pgtype.TextOID, strconv.FormatInt(pos, 10)})
	}
	w.add(`COMMIT`)
	if err := w.send(ctx, conn.Conn(), nil); err != nil {
		return nil, err
	}
	committed = true
	return outs, nil
}

// queueStoredIDs queues the lookup of the group's ids that are stored.
func queueStoredIDs(b *pgx.Batch, group []*request, stored map[uuid.UUID]eventstore.Event) {
	b.Queue(`SELECT `+selectColumns+` FROM events WHERE id = ANY($1)`, groupIDs(group)).Query(func(rows pgx.Rows) error {
		return scanStored(rows, stored)
	})
}

// groupIDs is the ids of the group's events.
func groupIDs(group []*request) []pgtype.UUID {
	var ids []pgtype.UUID
	for _, r := range group {
		for _, e := range r.events {
			ids = append(ids, pgtype.UUID{Bytes: e.ID, Valid: true})
		}
	}
	return ids
}

// scanStored reads stored events into stored, by id.
func scanStored(rows pgx.Rows, stored map[uuid.UUID]eventstore.Event) error {
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		stored[e.ID] = e
	}
	return rows.Err()
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
		outs[i] = outcome{res: res, wrote: true}
	}
	return outs, cols, pos
}

// duplicate decides an append some of whose ids are already stored (or
// written earlier in the same group). If every event is stored in this
// stream with the same content, at consecutive versions in the append's
// order (eventstore.SameLayout), the original result is returned; any
// other overlap is a DuplicateEventError.
//
// The error names a stored event: the first whose content differs, else
// the first stored one (when only some of the append's ids are stored, or
// all are but in another order or with gaps).
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
		if eventstore.SameLayout(res.Events) {
			return res, nil, true
		}
		fallthrough
	default:
		first := res.Events[0]
		return eventstore.AppendResult{}, &eventstore.DuplicateEventError{ID: first.ID.String(), Stream: first.Stream}, true
	}
}
