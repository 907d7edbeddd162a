package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// callAppend runs a group through eventstream_append (migration 003).
const callAppend = `SELECT accepted, actual, coalesce(first_version, 0), coalesce(first_position, 0)
FROM eventstream_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`

// writeGroupOneTrip is the common path of a group: one statement, a call of
// eventstream_append in an implicit transaction, which takes the append
// lock, checks the expected versions, inserts, notifies and commits as the
// statement ends. The lock is held only while the server works, never
// across a round trip to this process, and no transaction can sit idle
// holding it.
//
// An append that fails its expected version may be the retry of one that
// landed: its ids are looked up after the commit (stored events never
// change, so the answer cannot go stale). An id already stored makes the
// whole group fail on the id index with errRecheckIDs, and commitGroup
// reruns it on writeGroupChecked, which looks every id up.
func (s *Store) writeGroupOneTrip(group []*request) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.groupTimeout)
	defer cancel()

	now := time.Now().UTC().Truncate(time.Microsecond)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// An error leaves no transaction open (the implicit one rolls back), so
	// the connection goes back to the pool as it is; one that broke is
	// discarded by the pool.
	defer conn.Release()

	call := queryAppendArgs
	if conn.Conn().Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		call = callAppendBinary
	}
	verdicts, err := call(ctx, conn.Conn(), group, s.lockKey, s.channel, now)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_id_key" {
			return nil, errRecheckIDs
		}
		if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40001") {
			// Under the append lock neither a position nor a version can
			// collide, nor a serialization fail, unless the session's
			// transactions do not read committed: say so.
			var isolation string
			if conn.QueryRow(ctx, `SELECT current_setting('default_transaction_isolation')`).Scan(&isolation) == nil {
				if serr := checkIsolation(isolation); serr != nil {
					return nil, serr
				}
			}
		}
		return nil, err
	}
	if len(verdicts) != len(group) {
		return nil, errors.New("postgres store: eventstream_append returned the wrong number of verdicts")
	}

	outs := make([]outcome, len(group))
	var refused []*request
	for i, r := range group {
		v := verdicts[i]
		if !v.accepted {
			outs[i] = outcome{err: &eventstore.ConcurrencyError{Stream: r.stream, Expected: r.expected, Actual: v.actual}}
			refused = append(refused, r)
			continue
		}
		res := eventstore.AppendResult{Stream: r.stream, Events: make([]eventstore.Event, len(r.events))}
		for j, p := range r.events {
			e := p.Event
			e.Version = v.ver + int64(j)
			e.Position = eventstore.Pos(uint64(v.pos + int64(j)))
			e.Timestamp = now
			res.Events[j] = e
		}
		outs[i] = outcome{res: res, wrote: true}
	}
	if len(refused) == 0 {
		return outs, nil
	}
	// Refused appends that are retries of stored ones get their original
	// result instead of a conflict.
	stored := map[uuid.UUID]eventstore.Event{}
	lb := &pgx.Batch{}
	queueStoredIDs(lb, refused, stored)
	err = conn.SendBatch(ctx, lb).Close()
	if err != nil {
		// The connection may be what failed: once more on another one.
		clear(stored)
		lb = &pgx.Batch{}
		queueStoredIDs(lb, refused, stored)
		err = s.pool.SendBatch(ctx, lb).Close()
	}
	for i, r := range group {
		if verdicts[i].accepted {
			continue
		}
		if err != nil {
			// Without the lookup a retry of a stored append would look
			// like a conflict; report the failure instead, so the caller
			// retries (the group itself is committed).
			outs[i] = outcome{err: groupErr("append: look up the ids of a conflicting append", err)}
			continue
		}
		if res, derr, dup := s.duplicate(r, stored, nil); dup {
			outs[i] = outcome{res: res, err: derr}
		}
	}
	return outs, nil
}

// jsonArray is the argument for a jsonb[] parameter. The modes that prepare
// the statement first send it in binary, the JSON as it is. The exec and
// simple-protocol modes (what a connection pooler in transaction mode may
// need) do not learn the parameter's type, so pgx would send [][]byte as
// bytea, which PostgreSQL refuses as JSON: there it goes as text.
func jsonArray(conn *pgx.Conn, vals [][]byte) any {
	switch conn.Config().DefaultQueryExecMode {
	case pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol:
		text := make([]string, len(vals))
		for i, v := range vals {
			text[i] = string(v)
		}
		return text
	}
	return vals
}
