package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrVerify marks a run whose log does not hold exactly the events the
// bench says it appended: its figures must not be believed.
var ErrVerify = errors.New("bench: verification failed")

// VerifyError says what the verification found. Every count but Claimed
// and Stored must be zero for a run to pass.
type VerifyError struct {
	Table string
	// Claimed is the number of event ids the bench was told were stored;
	// Stored the number of rows in the table.
	Claimed, Stored int64
	// Missing claimed ids are not in the table; Unexpected rows are not
	// claimed; Duplicated ids are stored more than once; ClaimedTwice ids
	// were handed out twice by the bench itself; WrongStream ids are
	// stored in another stream than the one the bench appended them to.
	// WrongVersion ids are stored at another version than the one the
	// store answered for them (or the raw side wrote).
	Missing, Unexpected, Duplicated, ClaimedTwice, WrongStream, WrongVersion int64
	// PositionGaps: the log's positions are not exactly 1..Stored.
	// BadStreams: streams whose versions are not exactly 1..n.
	PositionGaps, BadStreams int64
	// SampleMissing holds a few missing ids.
	SampleMissing []uuid.UUID
}

func (e *VerifyError) Error() string {
	var parts []string
	add := func(n int64, what string) {
		if n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(e.Missing, "claimed events missing")
	add(e.Unexpected, "stored events never claimed")
	add(e.Duplicated, "ids stored more than once")
	add(e.ClaimedTwice, "ids claimed twice")
	add(e.WrongStream, "events in another stream than appended to")
	add(e.WrongVersion, "events at another version than the store answered")
	add(e.PositionGaps, "position gaps")
	add(e.BadStreams, "streams with wrong versions")
	msg := fmt.Sprintf("bench: verification failed on %s: the bench claimed %d events, the table holds %d: %s",
		e.Table, e.Claimed, e.Stored, strings.Join(parts, ", "))
	if len(e.SampleMissing) > 0 {
		ids := make([]string, len(e.SampleMissing))
		for i, id := range e.SampleMissing {
			ids[i] = id.String()
		}
		msg += " (missing: " + strings.Join(ids, ", ") + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Is(target error) bool { return target == ErrVerify }

func (e *VerifyError) failed() bool {
	return e.Missing != 0 || e.Unexpected != 0 || e.Duplicated != 0 || e.ClaimedTwice != 0 || e.WrongStream != 0 || e.WrongVersion != 0 || e.PositionGaps != 0 || e.BadStreams != 0
}

// Verify checks that the log table (events, or a read model with an
// id column) holds every claimed id exactly once and nothing else. For the
// log itself (log true) it also checks that positions run 1..n without a
// gap and that each stream's versions run 1..n. It returns the number of
// events verified, or a *VerifyError.
func Verify(ctx context.Context, pool *pgxpool.Pool, table, idColumn string, claimed []uuid.UUID, log bool) (int64, error) {
	cl := make([]claim, len(claimed))
	for i, id := range claimed {
		cl[i].id = id
	}
	return verify(ctx, pool, table, idColumn, cl, false, log)
}

// verifyClaims is Verify on the run's claims, which also checks that each
// event is in the stream the bench appended it to (the table's stream
// column): an event moved to another stream is not the one claimed, and
// a new stream of its own leaves positions and versions gapless. Each
// event must also be at the version the store answered for it (the
// table's version column): two events of a stream that trade versions
// leave the versions 1..n.
func verifyClaims(ctx context.Context, pool *pgxpool.Pool, table, idColumn string, cl *claims, log bool) (int64, error) {
	return verify(ctx, pool, table, idColumn, cl.list(), true, log)
}

func verify(ctx context.Context, pool *pgxpool.Pool, table, idColumn string, claimed []claim, streams, log bool) (int64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: verify: %w", err)
	}
	defer conn.Release()
	tbl := pgx.Identifier{table}.Sanitize()
	col := pgx.Identifier{idColumn}.Sanitize()
	// The claimed ids go to a temporary table; the checks are joins.
	if _, err := conn.Exec(ctx, `CREATE TEMPORARY TABLE bench_claimed (id uuid NOT NULL, stream text, version bigint) ON COMMIT PRESERVE ROWS`); err != nil {
		return 0, fmt.Errorf("bench: verify: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), `DROP TABLE IF EXISTS bench_claimed`) }()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_claimed"}, []string{"id", "stream", "version"}, pgx.CopyFromSlice(len(claimed), func(i int) ([]any, error) {
		var version *int64 // 0: not told one, not checked
		if claimed[i].version > 0 {
			version = &claimed[i].version
		}
		return []any{claimed[i].id, claimed[i].stream, version}, nil
	})); err != nil {
		return 0, fmt.Errorf("bench: verify: load claimed ids: %w", err)
	}
	for _, sql := range []string{`CREATE INDEX ON bench_claimed (id)`, `ANALYZE bench_claimed`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return 0, fmt.Errorf("bench: verify: %w", err)
		}
	}
	ve := &VerifyError{Table: table, Claimed: int64(len(claimed))}
	q := func(sql string, dst *int64) error {
		if err := conn.QueryRow(ctx, sql).Scan(dst); err != nil {
			return fmt.Errorf("bench: verify %s: %w", table, err)
		}
		return nil
	}
	checks := []struct {
		sql string
		dst *int64
	}{
		{`SELECT count(*) FROM ` + tbl, &ve.Stored},
		{`SELECT count(*) FROM (SELECT id FROM bench_claimed GROUP BY id HAVING count(*) > 1) d`, &ve.ClaimedTwice},
		{`SELECT count(*) FROM bench_claimed c WHERE NOT EXISTS (SELECT 1 FROM ` + tbl + ` e WHERE e.` + col + ` = c.id)`, &ve.Missing},
		{`SELECT count(*) FROM ` + tbl + ` e WHERE NOT EXISTS (SELECT 1 FROM bench_claimed c WHERE c.id = e.` + col + `)`, &ve.Unexpected},
		{`SELECT count(*) FROM (SELECT ` + col + ` FROM ` + tbl + ` GROUP BY ` + col + ` HAVING count(*) > 1) d`, &ve.Duplicated},
	}
	if streams {
		checks = append(checks, struct {
			sql string
			dst *int64
		}{`SELECT count(*) FROM bench_claimed c WHERE EXISTS (SELECT 1 FROM ` + tbl + ` e WHERE e.` + col + ` = c.id)
			AND NOT EXISTS (SELECT 1 FROM ` + tbl + ` e WHERE e.` + col + ` = c.id AND e.stream = c.stream)`, &ve.WrongStream},
			// Events of one stream that trade versions leave every other
			// check passing: each must be at the version it was given.
			struct {
				sql string
				dst *int64
			}{`SELECT count(*) FROM bench_claimed c WHERE c.version IS NOT NULL
			AND EXISTS (SELECT 1 FROM ` + tbl + ` e WHERE e.` + col + ` = c.id)
			AND NOT EXISTS (SELECT 1 FROM ` + tbl + ` e WHERE e.` + col + ` = c.id AND e.version = c.version)`, &ve.WrongVersion})
	}
	if log {
		checks = append(checks,
			struct {
				sql string
				dst *int64
			}{`SELECT CASE WHEN count(*) = coalesce(max(position), 0) AND coalesce(min(position), 1) = 1
				AND count(DISTINCT position) = count(*) THEN 0 ELSE 1 END FROM ` + tbl, &ve.PositionGaps},
			struct {
				sql string
				dst *int64
			}{`SELECT count(*) FROM (SELECT stream FROM ` + tbl + ` GROUP BY stream
				HAVING min(version) <> 1 OR max(version) <> count(*) OR count(DISTINCT version) <> count(*)) s`, &ve.BadStreams})
	}
	for _, c := range checks {
		if err := q(c.sql, c.dst); err != nil {
			return 0, err
		}
	}
	if ve.Missing > 0 {
		rows, err := conn.Query(ctx, `SELECT id FROM bench_claimed c WHERE NOT EXISTS (SELECT 1 FROM `+tbl+` e WHERE e.`+col+` = c.id) LIMIT 5`)
		if err == nil {
			ve.SampleMissing, _ = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		}
	}
	if ve.failed() {
		return 0, ve
	}
	return ve.Stored, nil
}

// verifyRaw checks a table of the raw phase id by id (and stream), as
// verifyClaims checks ours: the raw figure is half of every ratio, so a
// raw row lost and another written twice must not pass because the count
// still matches.
func verifyRaw(ctx context.Context, pool *pgxpool.Pool, table, idColumn string, cl *claims, log bool) error {
	_, err := verifyClaims(ctx, pool, table, idColumn, cl, log)
	return err
}
