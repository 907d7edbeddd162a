package bench

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// project's lag is the time from an append returning to the first sample
// that shows its row in the read model. The sampling query shared the
// phase's pool with the writers (on the raw side, 256 writers for 67
// connections), so that once the writers held every connection each
// sample waited its turn behind them and the lag counted that wait. The
// probe has a connection of its own: with every connection of the phase's
// pool taken, it still samples.
func TestLagProbeSamplesWhileThePhasePoolIsTaken(t *testing.T) {
	t.Parallel()
	c := small("project")
	c.Duration = 300 * time.Millisecond
	var mu sync.Mutex
	sampled := map[string]bool{}
	c.beforePhase = func(side string, pool *pgxpool.Pool) {
		ctx := context.Background()
		table := "audit_events"
		if side == "raw" {
			table = "raw_audit"
		}
		// Take every connection of the phase's pool that is free (one may
		// be held for good elsewhere: then it is taken anyway).
		var held []*pgxpool.Conn
		defer func() {
			for _, c := range held {
				c.Release()
			}
		}()
		for range pool.Config().MaxConns {
			actx, cancel := context.WithTimeout(ctx, time.Second)
			conn, err := pool.Acquire(actx)
			cancel()
			if err != nil {
				break
			}
			held = append(held, conn)
		}
		if len(held) == 0 {
			t.Errorf("%s: no connection of the phase's pool could be taken", side)
			return
		}
		conn := held[0]
		var since time.Time
		if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&since); err != nil {
			t.Error(err)
			return
		}
		app := pool.Config().ConnConfig.RuntimeParams["application_name"]
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()
				AND starts_with(application_name, $1) AND query = $2 AND query_start > $3`,
				app, newVisibility(nil, table).query, since).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			if n > 0 {
				mu.Lock()
				sampled[side] = true
				mu.Unlock()
				return
			}
		}
	}
	rep, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	for _, side := range []string{"ours", "raw"} {
		if !sampled[side] {
			t.Errorf("%s: the lag probe took no sample while every connection of the phase's pool was taken: it waits behind the writers, and the lag counts the wait", side)
		}
	}
}
