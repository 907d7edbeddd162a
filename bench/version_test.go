package bench

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Two events of one stream that trade places are each in the log once, in
// the stream they were appended to, with positions and versions still
// 1..n: only the version the store answered for each tells them apart,
// and the run must fail on it.
func TestVerificationFailsWhenAnEventHasAnotherVersion(t *testing.T) {
	t.Parallel()
	c := small("hot")
	c.Rounds, c.SkipRaw = 1, true
	var swapped [2]uuid.UUID
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		return swapVersions(ctx, pool, "events", "id", &swapped)
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError on events", err)
	}
	if ve.Table != "events" || ve.WrongVersion != 2 || ve.Missing != 0 || ve.WrongStream != 0 || ve.BadStreams != 0 || ve.Stored != 300 {
		t.Errorf("verify error: %+v (swapped %s)", ve, swapped)
	}
	if !strings.Contains(err.Error(), "at another version") {
		t.Errorf("error does not say what is wrong: %v", err)
	}
	wantFailedRun(t, rep)
}

// The raw side's rows are checked the same way: its figure is half of the
// ratio.
func TestRawVerificationFailsWhenARowHasAnotherVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openSmall(t, "hot")
	pool, err := r.pool(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := newRawWriter(ctx, pool, r.cfg.Streams)
	if err != nil {
		t.Fatal(err)
	}
	wl := newWorkload(r.cfg, "hot", r.payloads)
	cl := newClaims(1)
	for seq := range int64(12) {
		b := wl.batch(seq)
		rows := rw.rows(&b, b.streamIdx)
		if _, err := rw.writeRows(ctx, rows); err != nil {
			t.Fatal(err)
		}
		cl.addRows(0, rows)
	}
	if err := verifyRaw(ctx, pool, "raw_events", "id", cl, true); err != nil {
		t.Fatalf("clean raw table: %v", err)
	}
	var swapped [2]uuid.UUID
	if err := swapVersions(ctx, pool, "raw_events", "id", &swapped); err != nil {
		t.Fatal(err)
	}
	err = verifyRaw(ctx, pool, "raw_events", "id", cl, true)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.WrongVersion != 2 {
		t.Fatalf("got %v, want 2 rows at another version", err)
	}
}

// swapVersions makes the first two events of the log's first stream trade
// versions (through a version no event has, as (stream, version) is
// unique).
func swapVersions(ctx context.Context, pool *pgxpool.Pool, table, idCol string, ids *[2]uuid.UUID) error {
	tbl, col := pgx.Identifier{table}.Sanitize(), pgx.Identifier{idCol}.Sanitize()
	var stream string
	if err := pool.QueryRow(ctx, `SELECT stream FROM `+tbl+` WHERE version = 2 ORDER BY position LIMIT 1`).Scan(&stream); err != nil {
		return err
	}
	for i, v := range []int64{1, 2} {
		if err := pool.QueryRow(ctx, `SELECT `+col+` FROM `+tbl+` WHERE stream = $1 AND version = $2`, stream, v).Scan(&ids[i]); err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range []struct {
			id uuid.UUID
			v  int64
		}{{ids[0], 1 << 40}, {ids[1], 1}, {ids[0], 2}} {
			if _, err := tx.Exec(ctx, `UPDATE `+tbl+` SET version = $2 WHERE `+col+` = $1`, s.id, s.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// read's check through the store's read path fails the run when two
// events of the long stream come back at each other's versions.
func TestReadCheckFailsWhenAnEventHasAnotherVersion(t *testing.T) {
	t.Parallel()
	c := small("read")
	c.Rounds, c.SkipRaw = 1, true
	var swapped [2]uuid.UUID
	c.beforeReadCheck = func(ctx context.Context, pool *pgxpool.Pool) error {
		return swapVersions(ctx, pool, "events", "id", &swapped)
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Table != "ReadAll" || ve.WrongVersion != 2 || ve.Missing != 0 || ve.WrongStream != 0 {
		t.Fatalf("got %v, want a *VerifyError from the ReadAll check with two events at another version", err)
	}
	wantFailedRun(t, rep)
}
