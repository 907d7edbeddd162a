package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/brainhq/eventstream/eventstore"
)

// The common path's arguments are encoded here, in PostgreSQL's binary
// format, straight from the group's requests into one buffer of the exact
// size, and sent with the statement prepared under appendStatement.
//
// Why not pgx's own encoding: it sends a group's eighteen arguments
// through reflection into a buffer that pgx shrinks back to 256 bytes
// after every query, so each group of a hundred or more events regrew it
// by doubling, copying its payloads again each time, and allocated a
// value per string on the way. On `eventstream bench --scenario batch`
// that was a fifth of the bench process's CPU (profiled in
// bench/README.md, "Where the time goes"), CPU that the server's backend,
// on the same two cores, then did not get.
//
// The path is taken when the pool prepares statements
// (pgx.QueryExecModeCacheStatement, pgx's default). The other modes
// exist for connection poolers in transaction mode, where a statement
// prepared on one server connection may be executed on another: those
// keep the pgx-encoded call (queryAppendArgs).

// appendStatement is the name the common path prepares callAppend under,
// on each connection that runs it.
const appendStatement = "eventstream_append_v3"

// PostgreSQL type OIDs of the arguments' elements.
const (
	oidInt4  = 23
	oidInt8  = 20
	oidText  = 25
	oidUUID  = 2950
	oidJSONB = 3802
)

// verdict is eventstream_append's answer for one append of the group.
type verdict struct {
	accepted         bool
	actual, ver, pos int64
}

// groupEncoding is one group's arguments, binary, ready for a Bind
// (with binaryParams).
type groupEncoding struct {
	values [][]byte
}

// binaryParams says every argument is in binary.
var binaryParams = []int16{1}

// pgEpoch is where PostgreSQL's timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// encodeGroup encodes eventstream_append's eighteen arguments for the
// group (see migration 003 for their meaning).
func encodeGroup(group []*request, lockKey int64, channel string, now time.Time) groupEncoding {
	const arrayHeader = 20 // ndim, flags, element type, length, lower bound
	reqs, events := len(group), 0
	streams, payloads, metas := 0, 0, 0
	var text [7]int // type, source, target, tenant, correlation, causation, producer
	for _, r := range group {
		streams += 4 + len(r.stream)
		events += len(r.events)
		for i := range r.events {
			p := &r.events[i]
			text[0] += len(p.Type)
			text[1] += len(p.Source)
			text[2] += len(p.Target)
			text[3] += len(p.Meta.TenantID)
			text[4] += len(p.Meta.CorrelationID)
			text[5] += len(p.Meta.CausationID)
			text[6] += len(p.Meta.Producer)
			payloads += 5 + len(p.Payload) // length, jsonb version byte, JSON
			metas += 5 + len(p.MetaJSON)
		}
	}
	sizes := [18]int{
		8, len(channel), 8,
		arrayHeader + streams, arrayHeader + 12*reqs, arrayHeader + 8*reqs,
		arrayHeader + 8*events, arrayHeader + 20*events,
		0, 0, 0, 0, 0, 0, 0,
		arrayHeader + 8*events, arrayHeader + payloads, arrayHeader + metas,
	}
	for i, n := range text {
		sizes[8+i] = arrayHeader + 4*events + n
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	buf := make([]byte, 0, total)
	enc := groupEncoding{values: make([][]byte, len(sizes))}
	mark := 0
	next := func(i int) {
		enc.values[i] = buf[mark:len(buf):len(buf)]
		mark = len(buf)
	}

	buf = binary.BigEndian.AppendUint64(buf, uint64(lockKey))
	next(0)
	buf = append(buf, channel...)
	next(1)
	buf = binary.BigEndian.AppendUint64(buf, uint64(now.Sub(pgEpoch).Microseconds()))
	next(2)

	buf = arrayStart(buf, oidText, reqs)
	for _, r := range group {
		buf = appendElem(buf, r.stream)
	}
	next(3)
	buf = arrayStart(buf, oidInt8, reqs)
	for _, r := range group {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(r.expected))
	}
	next(4)
	buf = arrayStart(buf, oidInt4, reqs)
	for _, r := range group {
		buf = binary.BigEndian.AppendUint32(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.events)))
	}
	next(5)
	buf = arrayStart(buf, oidInt4, events)
	for i, r := range group {
		for range r.events {
			buf = binary.BigEndian.AppendUint32(buf, 4)
			buf = binary.BigEndian.AppendUint32(buf, uint32(i+1))
		}
	}
	next(6)
	buf = arrayStart(buf, oidUUID, events)
	for _, r := range group {
		for i := range r.events {
			buf = binary.BigEndian.AppendUint32(buf, 16)
			buf = append(buf, r.events[i].ID[:]...)
		}
	}
	next(7)
	for f := range text {
		buf = arrayStart(buf, oidText, events)
		for _, r := range group {
			for i := range r.events {
				buf = appendElem(buf, textField(&r.events[i], f))
			}
		}
		next(8 + f)
	}
	buf = arrayStart(buf, oidInt4, events)
	for _, r := range group {
		for i := range r.events {
			buf = binary.BigEndian.AppendUint32(buf, 4)
			buf = binary.BigEndian.AppendUint32(buf, uint32(int32(r.events[i].Meta.SchemaVersion)))
		}
	}
	next(15)
	for f, field := range [2]func(*eventstore.Prepared) []byte{
		func(p *eventstore.Prepared) []byte { return p.Payload },
		func(p *eventstore.Prepared) []byte { return p.MetaJSON },
	} {
		buf = arrayStart(buf, oidJSONB, events)
		for _, r := range group {
			for i := range r.events {
				doc := field(&r.events[i])
				buf = binary.BigEndian.AppendUint32(buf, uint32(1+len(doc)))
				buf = append(buf, 1) // jsonb's binary format: version 1, then the JSON text
				buf = append(buf, doc...)
			}
		}
		next(16 + f)
	}
	return enc
}

// textField is the text column f (in encodeGroup's order) of an event.
func textField(p *eventstore.Prepared, f int) string {
	switch f {
	case 0:
		return p.Type
	case 1:
		return p.Source
	case 2:
		return p.Target
	case 3:
		return p.Meta.TenantID
	case 4:
		return p.Meta.CorrelationID
	case 5:
		return p.Meta.CausationID
	default:
		return p.Meta.Producer
	}
}

// arrayStart appends the header of a one-dimensional array of n elements
// of type oid, none of them NULL.
func arrayStart(buf []byte, oid uint32, n int) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	buf = binary.BigEndian.AppendUint32(buf, 0) // no NULLs
	buf = binary.BigEndian.AppendUint32(buf, oid)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1) // lower bound
}

func appendElem(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

// binaryResults asks for eventstream_append's four result columns in
// binary.
var binaryResults = []int16{1, 1, 1, 1}

// callAppendBinary runs the group through the statement prepared on conn
// as appendStatement, with encodeGroup's arguments.
//
// The pool's pgx.QueryTracer, if it has one, sees the call as it would
// see conn.Query's: TraceQueryStart with the SQL (without the arguments,
// which the store encodes itself), TraceQueryEnd with the command tag or
// the error.
func callAppendBinary(ctx context.Context, conn *pgx.Conn, group []*request, lockKey int64, channel string, now time.Time) (verdicts []verdict, err error) {
	var tag pgconn.CommandTag
	if tr := conn.Config().Tracer; tr != nil {
		ctx = tr.TraceQueryStart(ctx, conn, pgx.TraceQueryStartData{SQL: callAppend})
		defer func() { tr.TraceQueryEnd(ctx, conn, pgx.TraceQueryEndData{CommandTag: tag, Err: err}) }()
	}
	sd, err := conn.Prepare(ctx, appendStatement, callAppend)
	if err != nil {
		return nil, err
	}
	enc := encodeGroup(group, lockKey, channel, now)
	verdicts, tag, err = readVerdicts(conn.PgConn().ExecStatement(ctx, sd, enc.values, binaryParams, binaryResults), len(group))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "26000" {
		// The statement is gone from the session (a DISCARD ALL or
		// DEALLOCATE by other code on this pooled connection): the Bind
		// was refused before anything ran. Prepare it again, once.
		_ = conn.Deallocate(ctx, appendStatement)
		if sd, err = conn.Prepare(ctx, appendStatement, callAppend); err != nil {
			return nil, err
		}
		verdicts, tag, err = readVerdicts(conn.PgConn().ExecStatement(ctx, sd, enc.values, binaryParams, binaryResults), len(group))
	}
	return verdicts, err
}

// readVerdicts reads eventstream_append's binary rows.
func readVerdicts(rr *pgconn.ResultReader, n int) ([]verdict, pgconn.CommandTag, error) {
	verdicts := make([]verdict, 0, n)
	var bad error
	for rr.NextRow() {
		vals := rr.Values()
		if bad != nil {
			continue
		}
		if len(vals) != 4 || len(vals[0]) != 1 || len(vals[1]) != 8 || len(vals[2]) != 8 || len(vals[3]) != 8 {
			bad = fmt.Errorf("postgres store: eventstream_append returned a row of an unexpected shape")
			continue
		}
		verdicts = append(verdicts, verdict{
			accepted: vals[0][0] != 0,
			actual:   int64(binary.BigEndian.Uint64(vals[1])),
			ver:      int64(binary.BigEndian.Uint64(vals[2])),
			pos:      int64(binary.BigEndian.Uint64(vals[3])),
		})
	}
	tag, err := rr.Close()
	if err != nil {
		return nil, tag, err
	}
	return verdicts, tag, bad
}

// queryAppendArgs runs the group through callAppend with pgx encoding its
// arguments: the path of the modes that do not prepare statements.
func queryAppendArgs(ctx context.Context, conn *pgx.Conn, group []*request, lockKey int64, channel string, now time.Time) ([]verdict, error) {
	n := 0
	for _, r := range group {
		n += len(r.events)
	}
	var (
		reqStream = make([]string, len(group))
		reqExpect = make([]int64, len(group))
		reqCount  = make([]int32, len(group))
		evReq     = make([]int32, 0, n)
		id        = make([]pgtype.UUID, 0, n)
		typ       = make([]string, 0, n)
		source    = make([]string, 0, n)
		target    = make([]string, 0, n)
		tenant    = make([]string, 0, n)
		corr      = make([]string, 0, n)
		caus      = make([]string, 0, n)
		prod      = make([]string, 0, n)
		sv        = make([]int32, 0, n)
		payload   = make([][]byte, 0, n)
		meta      = make([][]byte, 0, n)
	)
	for i, r := range group {
		reqStream[i], reqExpect[i], reqCount[i] = r.stream, int64(r.expected), int32(len(r.events))
		for _, p := range r.events {
			evReq = append(evReq, int32(i+1))
			id = append(id, pgtype.UUID{Bytes: p.ID, Valid: true})
			typ = append(typ, p.Type)
			source = append(source, p.Source)
			target = append(target, p.Target)
			tenant = append(tenant, p.Meta.TenantID)
			corr = append(corr, p.Meta.CorrelationID)
			caus = append(caus, p.Meta.CausationID)
			prod = append(prod, p.Meta.Producer)
			sv = append(sv, int32(p.Meta.SchemaVersion))
			payload = append(payload, p.Payload)
			meta = append(meta, p.MetaJSON)
		}
	}
	verdicts := make([]verdict, 0, len(group))
	rows, _ := conn.Query(ctx, callAppend, lockKey, channel, now, reqStream, reqExpect, reqCount, evReq,
		id, typ, source, target, tenant, corr, caus, prod, sv, jsonArray(conn, payload), jsonArray(conn, meta))
	var v verdict
	_, err := pgx.ForEachRow(rows, []any{&v.accepted, &v.actual, &v.ver, &v.pos}, func() error {
		verdicts = append(verdicts, v)
		return nil
	})
	return verdicts, err
}
