package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

// TestPartitionedWriterDoesNotBlockOtherProcesses partitions one process
// (its network hangs, nothing is closed) in the middle of its group-commit
// transaction, as its call of eventstream_append is on the way. The server
// cannot tell a hung client from a slow one: had the process taken the
// append lock in an earlier round trip, every other process's appends
// would wait for as long as the partition lasts. (The one-round-trip path
// takes the lock inside the function, after the whole call has arrived;
// the careful path, which holds it across round trips, bounds the
// transaction with idle_in_transaction_session_timeout.) Another process
// must be able to append within a bounded time, and the partitioned append
// must be all or nothing.
func TestPartitionedWriterDoesNotBlockOtherProcesses(t *testing.T) {
	cluster := pgcluster.Start(t)
	proxy, err := faultproxy.New(cluster.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	reg := registry(t)
	a := openStore(t, openPool(t, strings.Replace(cluster.URL(""), cluster.Addr(), proxy.Addr(), 1), 4), reg, postgres.Options{})
	b := openStore(t, openPool(t, cluster.URL(""), 4), reg, postgres.Options{SkipMigrate: true})
	ctx := context.Background()
	// Only b warms up: a's first call must carry its statement text (pgx
	// sends it once per connection, then only the prepared name).
	if _, err := b.Append(ctx, "warm-up", eventstore.Any, probe(0, 0, 0)); err != nil {
		t.Fatal(err)
	}

	var hit atomic.Bool
	proxy.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, []byte("eventstream_append(")) && hit.CompareAndSwap(false, true) {
			proxy.SetStall(true) // hold this very call, mid-transaction
		}
		return false
	})
	stuck := probe(1, 1, 0)
	aDone := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		_, err := a.Append(actx, "partitioned", eventstore.Any, stuck)
		aDone <- err
	}()
	waitFor(t, 10*time.Second, hit.Load, func() string { return "the partitioned append never sent its call" })

	// Another process appends while the partition lasts.
	const bound = 15 * time.Second
	bctx, cancel := context.WithTimeout(ctx, bound)
	start := time.Now()
	_, err = b.Append(bctx, "elsewhere", eventstore.Any, probe(2, 1, 0))
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("while one process is partitioned inside its append transaction, another could not append for %s: the hung transaction holds the append lock (bound it on the server, e.g. idle_in_transaction_session_timeout)", bound)
	} else if err != nil {
		t.Errorf("the other process's append: %v", err)
	} else {
		t.Logf("the other process appended after %s", time.Since(start).Round(100*time.Millisecond))
	}

	proxy.SetStall(false)
	proxy.SetCut(nil)
	aErr := <-aDone
	// All or nothing: the partitioned append is stored entirely iff it was
	// acknowledged... or, if it failed, possibly not at all.
	evs, rerr := b.ReadStream(ctx, "partitioned", 1, 0)
	switch {
	case aErr == nil && (rerr != nil || len(evs) != 1 || evs[0].ID != stuck.ID):
		t.Errorf("the partitioned append was acknowledged but is not stored: %d events, %v", len(evs), rerr)
	case aErr != nil && rerr == nil && (len(evs) != 1 || evs[0].ID != stuck.ID):
		t.Errorf("the partitioned append failed (%v) and left %d foreign events", aErr, len(evs))
	}
	t.Logf("the partitioned append ended with: %v", aErr)
}
