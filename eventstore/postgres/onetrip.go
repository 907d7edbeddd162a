package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/brainhq/eventstream/eventstore"
)

// callAppend runs a group through eventstream_append (migration 002).
const callAppend = `SELECT accepted, actual, coalesce(first_version, 0), coalesce(first_position, 0)
FROM eventstream_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

// writeGroupOneTrip is the common path of a group: one pipelined round
// trip (BEGIN, eventstream_append, NOTIFY, COMMIT), with the expected-version
// checks made by the server under the append lock. The lock is held only
// while the server works, not across a round trip to this process.
//
// An append that fails its expected version may be the retry of one that
// landed: its ids are looked up after the commit (stored events never
// change, so the answer cannot go stale). An id already stored makes the
// whole group fail on the id index with errRecheckIDs, and commitGroup
// reruns it with writeGroup's explicit id check.
func (s *Store) writeGroupOneTrip(group []*request) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	now := time.Now().UTC().Truncate(time.Microsecond)
	n := 0
	for _, r := range group {
		n += len(r.events)
	}
	var (
		reqStream = make([]string, len(group))
		reqExpect = make([]int64, len(group))
		reqCount  = make([]int32, len(group))
		id        = make([]pgtype.UUID, 0, n)
		typ       = make([]string, 0, n)
		source    = make([]string, 0, n)
		target    = make([]string, 0, n)
		tenant    = make([]string, 0, n)
		corr      = make([]string, 0, n)
		caus      = make([]string, 0, n)
		prod      = make([]string, 0, n)
		sv        = make([]int32, 0, n)
		payload   = make([]string, 0, n)
		meta      = make([]string, 0, n)
	)
	for i, r := range group {
		reqStream[i], reqExpect[i], reqCount[i] = r.stream, int64(r.expected), int32(len(r.events))
		for _, p := range r.events {
			id = append(id, pgtype.UUID{Bytes: p.ID, Valid: true})
			typ = append(typ, p.Type)
			source = append(source, p.Source)
			target = append(target, p.Target)
			tenant = append(tenant, p.Meta.TenantID)
			corr = append(corr, p.Meta.CorrelationID)
			caus = append(caus, p.Meta.CausationID)
			prod = append(prod, p.Meta.Producer)
			sv = append(sv, int32(p.Meta.SchemaVersion))
			payload = append(payload, string(p.Payload))
			meta = append(meta, string(p.MetaJSON))
		}
	}

	conn, done, err := s.groupConn(ctx)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() { done(committed) }()

	type verdict struct {
		accepted         bool
		actual, ver, pos int64
	}
	verdicts := make([]verdict, 0, len(group))
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	// See appendIdleTimeout: a client that hangs mid-transaction must not
	// hold the append lock for long.
	b.Queue(`SET LOCAL idle_in_transaction_session_timeout = ` + appendIdleTimeout)
	b.Queue(callAppend, s.lockKey, now, reqStream, reqExpect, reqCount, id, typ, source, target, tenant, corr, caus, prod, sv, payload, meta).
		Query(func(rows pgx.Rows) error {
			var v verdict
			_, err := pgx.ForEachRow(rows, []any{&v.accepted, &v.actual, &v.ver, &v.pos}, func() error {
				verdicts = append(verdicts, v)
				return nil
			})
			return err
		})
	b.Queue(`SELECT pg_notify($1, '')`, s.channel)
	b.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_id_key" {
			return nil, errRecheckIDs
		}
		return nil, err
	}
	committed = true
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
		outs[i] = outcome{res: res}
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
			outs[i] = outcome{err: fmt.Errorf("postgres store: append: look up the ids of a conflicting append: %w", err)}
			continue
		}
		if res, derr, dup := s.duplicate(r, stored, nil); dup {
			outs[i] = outcome{res: res, err: derr}
		}
	}
	return outs, nil
}
