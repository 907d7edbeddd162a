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

// Our projection commits its read model with the runtime's
// synchronous_commit (off by default: its checkpoint commits with it, and
// the log stays durable), so the raw consumer, which stands for it, must
// commit the same way: a WAL flush per raw page and none per ours would
// flatter replay's ratio and project's lag. The raw appends, like ours,
// stay durable.
func TestRawReadModelCommitsAsOursDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := small("replay").resolve()
	if err != nil {
		t.Fatal(err)
	}
	r, err := open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	}()
	show := func(p *pgxpool.Pool) string {
		t.Helper()
		var s string
		if err := p.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	consumer, err := r.consumerPool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(consumer), readModelCommit; got != want {
		t.Errorf("raw consumer commits with synchronous_commit %s, ours with %s", got, want)
	}
	writers, err := r.pool(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(writers), r.syncCommit; got != want {
		t.Errorf("raw writers commit with synchronous_commit %s, want the server's %s as our appends", got, want)
	}
}
