package bench

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The raw ceiling's figure is half of every ratio: a raw row lost and
// another written twice (the count unchanged) must fail the run as a
// lost event of ours does.
func TestVerificationChecksTheRawIDs(t *testing.T) {
	t.Parallel()
	c := small("single")
	c.Rounds = 1
	c.beforeVerify = func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `WITH gone AS (DELETE FROM raw_events WHERE position = (SELECT max(position) FROM raw_events) RETURNING 1)
			INSERT INTO raw_events SELECT * FROM raw_events WHERE position = 1 AND (SELECT count(*) FROM gone) = 1`)
		return err
	}
	rep, err := Run(context.Background(), c)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a *VerifyError on raw_events", err)
	}
	if ve.Table != "raw_events" || ve.Missing != 1 || ve.Duplicated != 1 || ve.Stored != 200 {
		t.Errorf("verify error: %+v", ve)
	}
	if rep.Verified {
		t.Error("report says verified")
	}
}
