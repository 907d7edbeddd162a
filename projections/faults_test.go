package projections_test

import (
	"bytes"
	"context"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
)

// proxiedDatabase is database with a second pool on the same schema whose
// connections go through a fault proxy: the runtime gets the proxied one,
// the test checks through the direct one.
func proxiedDatabase(t *testing.T) (proxied, direct *pgxpool.Pool, proxy *faultproxy.Proxy) {
	t.Helper()
	u, _ := pgtest.Schema(t)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err = faultproxy.New(parsed.Host)
	if err != nil {
		t.Fatal(err)
	}
	parsed.Host = proxy.Addr()
	direct, err = pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	proxied, err = pgxpool.New(context.Background(), parsed.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.SetCut(nil)
		proxied.Close()
		proxy.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := projections.Uninstall(ctx, direct); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		direct.Close()
	})
	return proxied, direct, proxy
}

// The connection breaks after the server committed a batch but before its
// answer reached the runner: the outcome is unknown to the runner, which
// must restart from what the database holds rather than apply the batch
// again (or count it as a failure and park its events).
func TestCommitAnswerLostRestartsClean(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 1000, 40)
	pool, direct, proxy := proxiedDatabase(t)
	rt := newRuntime(t, pool, store, fastConfig(), seenProjection("seen", func(eventstore.Event) error { return nil }))

	var commits, cuts atomic.Int32
	proxy.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir != faultproxy.ToClient || !bytes.Contains(c.Data, []byte("COMMIT\x00")) {
			return false
		}
		if commits.Add(1)%3 != 0 {
			return false
		}
		cuts.Add(1)
		return true
	})
	runUntilCaughtUp(t, rt)
	proxy.SetCut(nil)
	if cuts.Load() < 2 {
		t.Fatalf("only %d answers to COMMIT were cut", cuts.Load())
	}
	var rows, distinct int
	if err := direct.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM seen`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if want := countHandled(t, store); rows != want || distinct != want {
		t.Fatalf("seen holds %d rows of %d events, want %d once each", rows, distinct, want)
	}
	if parked, err := rt.ListParked(context.Background(), "seen"); err != nil || len(parked) != 0 {
		t.Fatalf("parked: %+v %v, want none", parked, err)
	}
}
