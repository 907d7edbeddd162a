package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/brainhq/eventstream/eventstore"
)

// selectColumns reads an envelope. The named meta keys come from their
// columns; only the free-form ones are decoded from the meta document.
const selectColumns = `position, id, stream, version, type, source, coalesce(target, ''), tenant_id,
	coalesce(correlation_id, ''), coalesce(causation_id, ''), coalesce(producer, ''), schema_version, "timestamp", payload,
	nullif(meta - '{schema_version,producer,tenant_id,correlation_id,causation_id}'::text[], '{}'::jsonb)`

// scanEvent scans one row of selectColumns, followed by the columns of
// more, if any.
func scanEvent(row pgx.Row, more ...any) (eventstore.Event, error) {
	var (
		e     eventstore.Event
		pos   int64
		id    uuid.UUID
		extra []byte
		pl    []byte
	)
	err := row.Scan(append([]any{&pos, &id, &e.Stream, &e.Version, &e.Type, &e.Source, &e.Target, &e.Meta.TenantID,
		&e.Meta.CorrelationID, &e.Meta.CausationID, &e.Meta.Producer, &e.Meta.SchemaVersion, &e.Timestamp, &pl, &extra}, more...)...)
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

// collect reads rows of selectColumns into events. With pageBytes set,
// each row also ends with the page_bytes column of pageQuery, and
// *pageBytes receives the last row's.
func collect(rows pgx.Rows, pageBytes ...*int64) ([]eventstore.Event, error) {
	defer rows.Close()
	var run *int64
	if len(pageBytes) > 0 {
		run = pageBytes[0]
	}
	// The number of rows is not known until the last one: gather them in
	// a pooled buffer and return an exact copy, rather than grow the answer
	// from nothing (1,000 events would allocate three times their size on
	// the way). An answer too big to pool is returned as it grew.
	bp := scratch.Get().(*[]eventstore.Event)
	pooled := *bp
	buf := pooled[:0]
	defer func() {
		// Pool the bigger buffer that fits, cleared: the pool must not keep
		// events alive.
		if cap(buf) <= maxScratch {
			clear(buf)
			*bp = buf[:0]
		} else {
			clear(pooled[:cap(pooled)]) // filled before buf outgrew it
		}
		scratch.Put(bp)
	}()
	var d rowDecoder
	if run != nil {
		d.more = 1
	}
	for rows.Next() {
		if len(buf) == 0 {
			d.init(rows.FieldDescriptions())
		}
		buf = append(buf, eventstore.Event{})
		e := &buf[len(buf)-1]
		if d.ok {
			vals := rows.RawValues()
			ok, err := d.decode(vals, e)
			if err != nil {
				return nil, err
			}
			if ok && run != nil {
				*run = int64(binary.BigEndian.Uint64(vals[numColumns]))
			}
			if ok {
				continue
			}
		}
		var more []any
		if run != nil {
			more = []any{run}
		}
		ev, err := scanEvent(rows, more...)
		if err != nil {
			return nil, err
		}
		*e = ev
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(buf) > maxScratch {
		return buf, nil
	}
	return append(make([]eventstore.Event, 0, len(buf)), buf...), nil
}

// scratch holds collect's buffers, of up to maxScratch events each (the
// default page size with room to spare).
var scratch = sync.Pool{New: func() any { return new([]eventstore.Event) }}

const maxScratch = 4 * eventstore.DefaultPageSize

// The columns of selectColumns, as the fast path of collect reads them.
const (
	colPosition = iota
	colID
	colStream
	colVersion
	colType
	colSource
	colTarget
	colTenant
	colCorrelation
	colCausation
	colProducer
	colSchemaVersion
	colTimestamp
	colPayload
	colExtra
	numColumns
)

// columnOIDs are the PostgreSQL types of selectColumns.
var columnOIDs = [numColumns]uint32{
	colPosition: pgtype.Int8OID, colID: pgtype.UUIDOID, colStream: pgtype.TextOID,
	colVersion: pgtype.Int8OID, colType: pgtype.TextOID, colSource: pgtype.TextOID,
	colTarget: pgtype.TextOID, colTenant: pgtype.TextOID, colCorrelation: pgtype.TextOID,
	colCausation: pgtype.TextOID, colProducer: pgtype.TextOID, colSchemaVersion: pgtype.Int4OID,
	colTimestamp: pgtype.TimestamptzOID, colPayload: pgtype.JSONBOID, colExtra: pgtype.JSONBOID,
}

// rowDecoder decodes the raw values of selectColumns without Scan: a page
// of 1,000 events scanned column by column costs a dozen allocations and
// a dozen interface conversions per row, most of them for strings that
// repeat from one row to the next (stream, type, source, tenant, producer).
type rowDecoder struct {
	more      int                // bigint columns after selectColumns (pageQuery's page_bytes)
	ok        bool               // every column arrived in a format it reads
	jsonbText [numColumns]bool   // a jsonb column arrived in text format
	last      [numColumns]string // the previous row's text values, reused when equal
}

// init checks the result's columns (their types and the formats pgx asked
// for): the fast path reads binary int8, int4, uuid and timestamptz, text in
// either format (the bytes are the same), and jsonb in either format (binary
// is a version byte then the text). Anything else (under the simple protocol
// every column is text) leaves ok false and the rows to Scan.
func (d *rowDecoder) init(fds []pgconn.FieldDescription) {
	if len(fds) != numColumns+d.more {
		return
	}
	for _, fd := range fds[numColumns:] {
		if fd.DataTypeOID != pgtype.Int8OID || fd.Format != pgtype.BinaryFormatCode {
			return
		}
	}
	for i, fd := range fds[:numColumns] {
		if fd.DataTypeOID != columnOIDs[i] {
			return
		}
		switch fd.DataTypeOID {
		case pgtype.TextOID:
		case pgtype.JSONBOID:
			d.jsonbText[i] = fd.Format == pgtype.TextFormatCode
		default:
			if fd.Format != pgtype.BinaryFormatCode {
				return
			}
		}
	}
	d.ok = true
}

// The range of timestamps pgx accepts when it scans a timestamptz into a
// time.Time; outside it (and at ±infinity) decode leaves the row to Scan,
// which reports the error.
var (
	minTimestamp = time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)
	endTimestamp = time.Date(294277, 1, 1, 0, 0, 0, 0, time.UTC)
)

// microsecFromUnixEpochToY2K is 2000-01-01 UTC, PostgreSQL's epoch, in
// microseconds since the Unix epoch.
const microsecFromUnixEpochToY2K = 946_684_800 * 1_000_000

// decode fills e from one row's raw values as scanEvent would. It returns
// false, leaving e alone, when a value is not what it expects (a NULL in a
// NOT NULL column, a wrong length, an infinite timestamp): the caller then
// scans the row, which gives the same event or the same error.
func (d *rowDecoder) decode(vals [][]byte, e *eventstore.Event) (ok bool, err error) {
	if len(vals) != numColumns+d.more {
		return false, nil
	}
	for _, v := range vals[numColumns:] {
		if len(v) != 8 {
			return false, nil
		}
	}
	for i, v := range vals[:colExtra] {
		if v == nil {
			return false, nil
		}
		switch columnOIDs[i] {
		case pgtype.Int8OID:
			if len(v) != 8 {
				return false, nil
			}
		case pgtype.Int4OID:
			if len(v) != 4 {
				return false, nil
			}
		case pgtype.UUIDOID:
			if len(v) != 16 {
				return false, nil
			}
		case pgtype.TimestamptzOID:
			if len(v) != 8 {
				return false, nil
			}
		}
	}
	us := int64(binary.BigEndian.Uint64(vals[colTimestamp]))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return false, nil
	}
	ts := time.Unix(
		microsecFromUnixEpochToY2K/1_000_000+us/1_000_000,
		(microsecFromUnixEpochToY2K%1_000_000*1_000)+(us%1_000_000*1_000),
	)
	if ts.Before(minTimestamp) || !ts.Before(endTimestamp) {
		return false, nil
	}
	payload, ok := d.jsonb(colPayload, vals[colPayload])
	if !ok {
		return false, nil
	}
	var extra []byte
	if vals[colExtra] != nil {
		if extra, ok = d.jsonb(colExtra, vals[colExtra]); !ok {
			return false, nil
		}
	}

	e.Position = eventstore.Pos(binary.BigEndian.Uint64(vals[colPosition]))
	e.ID = uuid.UUID(vals[colID])
	e.Stream = d.text(colStream, vals[colStream])
	e.Version = int64(binary.BigEndian.Uint64(vals[colVersion]))
	e.Type = d.text(colType, vals[colType])
	e.Source = d.text(colSource, vals[colSource])
	e.Target = d.text(colTarget, vals[colTarget])
	e.Meta.TenantID = d.text(colTenant, vals[colTenant])
	e.Meta.CorrelationID = d.text(colCorrelation, vals[colCorrelation])
	e.Meta.CausationID = d.text(colCausation, vals[colCausation])
	e.Meta.Producer = d.text(colProducer, vals[colProducer])
	e.Meta.SchemaVersion = int(int32(binary.BigEndian.Uint32(vals[colSchemaVersion])))
	e.Timestamp = ts.UTC()
	e.Payload = make(json.RawMessage, len(payload))
	copy(e.Payload, payload)
	if extra != nil {
		var m eventstore.Meta
		if err := json.Unmarshal(extra, &m); err != nil {
			return true, fmt.Errorf("event %s: meta: %w", e.ID, err)
		}
		e.Meta.Extra = m.Extra
	}
	return true, nil
}

// text returns v as a string, the previous row's string of column i when
// the bytes are the same.
func (d *rowDecoder) text(i int, v []byte) string {
	if string(v) == d.last[i] {
		return d.last[i]
	}
	s := string(v)
	d.last[i] = s
	return s
}

// jsonb returns the JSON text of a jsonb value (not a copy).
func (d *rowDecoder) jsonb(i int, v []byte) ([]byte, bool) {
	if d.jsonbText[i] {
		return v, true
	}
	if len(v) == 0 || v[0] != 1 {
		return nil, false
	}
	return v[1:], true
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
		evs, err = collect(rows)
		return err
	})
	exists := from <= 1
	if from > 1 {
		b.Queue(`SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1)`, stream).QueryRow(func(row pgx.Row) error { return row.Scan(&exists) })
	}
	rctx, done := s.readCtx(ctx)
	defer done()
	if err := s.pool.SendBatch(rctx, b).Close(); err != nil {
		return nil, s.closedErr(storeErr("read stream", err))
	}
	if len(evs) == 0 && (from <= 1 || !exists) {
		return nil, fmt.Errorf("%w: %q", eventstore.ErrStreamNotFound, stream)
	}
	return evs, nil
}

// logPos is p as the log's bigint position column. Positions above the
// largest bigint are past any event the log can hold; they become that
// largest value, so reading from or after one finds nothing instead of
// wrapping to a negative number and reading from the start.
func logPos(p eventstore.Position) int64 {
	if p.Commit > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(p.Commit)
}

// subscribeAfter is the last log position a subscription After p has
// passed: p's, or the one before when Pos(p.Commit) is after p (its
// Prepare is below its Commit), so that event is delivered.
func subscribeAfter(p eventstore.Position) int64 {
	after := logPos(p)
	if p.Prepare < p.Commit && p.Commit <= math.MaxInt64 {
		after--
	}
	return after
}

// ReadAll returns one page of the log in position order.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	if s.isClosed() {
		return eventstore.Page{}, eventstore.ErrClosed
	}
	if err := eventstore.CheckFilter(opts.Types, opts.TenantID); err != nil {
		return eventstore.Page{}, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultPageSize
	}
	from := logPos(opts.From)
	if opts.From.Prepare > opts.From.Commit && from < math.MaxInt64 {
		from++ // Pos(Commit) is before From (positions compare by Commit, then Prepare)
	}
	rctx, done := s.readCtx(ctx)
	defer done()
	evs, through, end, err := s.readFrom(rctx, from, limit, opts.Types, opts.TenantID, opts.ScanLimit)
	if err != nil {
		return eventstore.Page{}, s.closedErr(err)
	}
	page := eventstore.Page{Events: evs, Next: opts.From, End: end}
	if through >= from {
		page.Next = eventstore.Pos(uint64(through) + 1)
	}
	return page, nil
}

// readFrom returns up to limit events from position from on that pass the
// filters, stopping at eventstore.MaxPageBytes, and the position through
// which it looked at the log: the last event's, or, when a filtered page
// is not full, the head. A filtered read may pass over many events that
// match nothing; without the head, the next read (a subscription's next
// wake-up, a poller's next page) would start from the last match and look
// at all of them again, every time. end is true when the page is not full
// (neither limit nor MaxPageBytes cut it) and it looked up to the head.
//
// scan > 0 bounds the events it looks at (ReadAllOptions.ScanLimit):
// positions are gapless, so the scan is the window [from, from+scan) of
// the primary key, and a filtered page that the window ends before the
// head is not end and looked through the window's last position. Without
// the window, a filter that matches little is a scan of the whole log
// (PostgreSQL then reads every page of the table, in parallel).
func (s *Store) readFrom(ctx context.Context, from int64, limit int, types []string, tenant string, scan int) (evs []eventstore.Event, through int64, end bool, err error) {
	filtered := len(types) > 0 || tenant != ""
	if scan > 0 && !filtered {
		limit = min(limit, scan) // every event looked at is returned
	}
	// window is the first position past the scan; 0 when unbounded (or
	// when from+scan would pass the largest position).
	var window int64
	if first := max(from, 1); scan > 0 && filtered && first <= math.MaxInt64-int64(scan) {
		window = first + int64(scan) // positions start at 1
	}
	var where strings.Builder
	where.WriteString(`position >= $1`)
	args := []any{from}
	if window > 0 {
		args = append(args, window)
		where.WriteString(` AND position < $` + strconv.Itoa(len(args)))
	}
	if len(types) > 0 {
		args = append(args, types)
		where.WriteString(` AND type = ANY($` + strconv.Itoa(len(args)) + `)`)
	}
	if tenant != "" {
		args = append(args, tenant)
		where.WriteString(` AND tenant_id = $` + strconv.Itoa(len(args)))
	}
	args = append(args, limit, eventstore.MaxPageBytes)
	q := pageQuery(where.String(), len(args)-1, len(args))
	var pageBytes int64
	through = from - 1
	if !filtered {
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return nil, 0, false, storeErr("read all", err)
		}
		if evs, err = collect(rows, &pageBytes); err != nil {
			return nil, 0, false, storeErr("read all", err)
		}
		end = len(evs) < limit && pageBytes < eventstore.MaxPageBytes
	} else {
		// The head is read first, in the same round trip. Every position
		// up to a visible head is committed (positions are gapless and in
		// commit order), and the page's statement sees at least what the
		// head's saw: a page that is not full has looked at every event up
		// to that head.
		var head int64
		batch := &pgx.Batch{}
		batch.Queue(`SELECT coalesce(max(position), 0) FROM events`).QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
		batch.Queue(q, args...).Query(func(rows pgx.Rows) error {
			var err error
			evs, err = collect(rows, &pageBytes)
			return err
		})
		if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
			return nil, 0, false, storeErr("read all", err)
		}
		full := len(evs) == limit || pageBytes >= eventstore.MaxPageBytes
		switch {
		case full:
		case window > 0 && head >= window:
			// The window ended before the head: every position in it is
			// committed and was looked at.
			through = window - 1
		default:
			end = true
			through = max(through, head)
		}
	}
	if len(evs) > 0 {
		through = max(through, int64(evs[len(evs)-1].Position.Commit))
	}
	return evs, through, end, nil
}

// pageQuery selects, in position order, the events that match where, at
// most $limitArg of them, ending with the one that brings the page to
// $budgetArg bytes of payload and meta. Each row ends with page_bytes, the
// bytes of the page up to and including it. The events past the budget
// are looked at, up to the limit, but not sent.
//
// A value's bytes are its stored size (pg_column_size, which reads no
// TOAST) unless PostgreSQL compressed it; then its size as text, as it is
// sent, which costs decompressing it: a compressed size would let a page
// of compressible events (a tenant's megabyte of repeated text) hold many
// times the budget.
func pageQuery(where string, limitArg, budgetArg int) string {
	return `SELECT ` + selectColumns + `, page_bytes FROM (
	SELECT *, sum(event_bytes) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING) AS page_bytes FROM (
		SELECT position, id, stream, version, type, source, target, tenant_id, correlation_id, causation_id,
			producer, schema_version, "timestamp", payload, meta,
			CASE WHEN pg_column_compression(payload) IS NULL THEN pg_column_size(payload) ELSE octet_length(payload::text) END
			+ CASE WHEN pg_column_compression(meta) IS NULL THEN pg_column_size(meta) ELSE octet_length(meta::text) END AS event_bytes
		FROM events WHERE ` + where + ` ORDER BY position LIMIT $` + strconv.Itoa(limitArg) + `
	) AS matched
) AS events WHERE page_bytes - event_bytes < $` + strconv.Itoa(budgetArg) + ` ORDER BY position`
}

// Head returns the position of the last event (Start when empty).
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if s.isClosed() {
		return eventstore.Position{}, eventstore.ErrClosed
	}
	rctx, done := s.readCtx(ctx)
	defer done()
	var head int64
	if err := s.pool.QueryRow(rctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&head); err != nil {
		return eventstore.Position{}, s.closedErr(storeErr("head", err))
	}
	return eventstore.Pos(uint64(head)), nil
}

// Subscribe delivers the log after opts.After: catch-up by pages, then live.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if s.isClosed() {
		return nil, eventstore.ErrClosed
	}
	if err := eventstore.CheckFilter(opts.Types, ""); err != nil {
		return nil, err
	}
	// Subscribe reads nothing yet, but a caller whose context has ended
	// gets its error, as from every other call and backend.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultPageSize
	}
	sub := &subscription{
		store: s,
		after: min(subscribeAfter(opts.After), math.MaxInt64-1), // it reads from after+1
		types: slices.Clone(opts.Types),                         // the caller may reuse its slice
		batch: batch,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		turn:  make(chan struct{}, 1),
	}
	sub.ctx, sub.cancel = context.WithCancel(s.closing)
	if !s.notifier.add(sub.wake) {
		sub.cancel()
		return nil, eventstore.ErrClosed // Close ran since the check above
	}
	return sub, nil
}

type subscription struct {
	store *Store
	types []string
	batch int
	wake  chan struct{}
	done  chan struct{}
	// ctx is cancelled by Close and by the store's Close. Next reads the
	// log under it as well as its caller's context: a read that does not
	// come back (the network to the database hangs) must not hold a Next
	// that its subscription or store has closed.
	ctx    context.Context
	cancel context.CancelFunc
	// closeOnce closes done.
	closeOnce sync.Once
	// turn is held by the Next in progress. Calls from several goroutines
	// take turns: two reading from the same position would both deliver
	// what they found. A channel, not a mutex, so that a call waiting its
	// turn still returns when its context ends or the subscription closes.
	turn  chan struct{}
	after int64 // the last position delivered or passed over; guarded by turn
}

func (sub *subscription) Next(ctx context.Context) ([]eventstore.Event, error) {
	select {
	case sub.turn <- struct{}{}:
		defer func() { <-sub.turn }()
	case <-sub.done:
		return nil, eventstore.ErrClosed
	case <-sub.store.stop:
		return nil, eventstore.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	poll := time.NewTimer(sub.store.opts.PollInterval)
	defer poll.Stop()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(sub.ctx, cancel)()
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
		evs, through, _, err := sub.store.readFrom(rctx, sub.after+1, sub.batch, sub.types, "", 0)
		if err != nil {
			if sub.ctx.Err() != nil {
				// Closed meanwhile: the read was cut short by it.
				return nil, eventstore.ErrClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		sub.after = max(sub.after, through)
		if len(evs) > 0 {
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
	// Once, not a check of done: two Closes at the same moment would both
	// find done open and close it twice.
	sub.closeOnce.Do(func() {
		close(sub.done)
		sub.cancel()
		sub.store.notifier.remove(sub.wake)
	})
	return nil
}
