package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// TestSubscribeRacingCloseStartsNoListener plays the interleaving of a
// store's first Subscribe with its Close: Subscribe has found the store
// open, Close runs to its end, then Subscribe registers its subscription.
// No LISTEN connection may be started then: nothing would ever stop it.
func TestSubscribeRacingCloseStartsNoListener(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	app := "es-notify-test-" + hex.EncodeToString(b[:])
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := New(ctx, pool, schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.notifier.add(make(chan struct{}, 1)) // what the racing Subscribe does next

	// A listener would connect within milliseconds; give it a second.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`, app).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Fatalf("a closed store opened a LISTEN connection for a subscription registered after its Close")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
