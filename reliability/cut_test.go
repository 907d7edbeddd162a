package reliability_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

// commitReply is the server's CommandComplete message for COMMIT: cutting
// the connection just before it reaches the client leaves the client not
// knowing whether its transaction committed (it did).
var commitReply = []byte("C\x00\x00\x00\x0bCOMMIT\x00")

// A group of appends is one statement in an implicit transaction (the
// store's prepared appendCall, named in its Bind): it has committed when
// the server says ReadyForQuery, idle, after it. Cutting the connection
// just before that reaches the client is the same unknown outcome as a
// cut COMMIT reply, on the path every append takes.
var (
	appendCall = []byte("eventstream_append_v3\x00")
	readyIdle  = []byte("Z\x00\x00\x00\x05I")
)

// readQuery is in the text of a subscription's read of the log. pgx sends
// a query's text once per connection, in the Parse of a prepared
// statement named stmtcachePrefix + hex; every later read on that
// connection names the statement only (in its Bind). The cut rule learns
// the names, or it could cut only a connection's first read.
var (
	readQuery     = []byte("FROM events WHERE position >=")
	stmtCacheName = regexp.MustCompile(`stmtcache_[0-9a-f]+`)
)

// TestConnectionCutsAtRandomMoments puts a TCP proxy between every
// connection and PostgreSQL and cuts connections while eight writers
// append and a live subscription and the audit projection follow the log:
//   - a random open connection, at random moments (mostly mid-transaction:
//     the committers are always in one);
//   - a connection whose server is replying to COMMIT, or has committed a
//     group's statement, just before the reply reaches the client (the
//     commit happened; the client gets an error and retries with the
//     same ids);
//   - a connection sending COPY data (the audit projection writes with
//     COPY), mid-COPY;
//   - the connection that holds LISTEN, mid-LISTEN;
//   - a connection sending a subscription's read of the log;
//   - now and then every connection at once.
//
// Same guarantees as the restart test: every acknowledged append exactly
// once, abandoned ones all-or-nothing, and the subscription (which
// resubscribes from its last position after every other error) and the
// audit read model hold the whole log exactly once.
func TestConnectionCutsAtRandomMoments(t *testing.T) {
	cluster := pgcluster.Start(t)
	proxy, err := faultproxy.New(cluster.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	url := strings.Replace(cluster.URL(""), cluster.Addr(), proxy.Addr(), 1)

	reg := registry(t)
	writePool := openPool(t, url, 8)
	readPool := openPool(t, url, 8)
	writer := openStore(t, writePool, reg, postgres.Options{})
	reader := openStore(t, readPool, reg, postgres.Options{SkipMigrate: true, PollInterval: time.Hour})
	fl := startFollower(t, reader)
	au := startAudit(t, readPool, reader, reg)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	// The cut rules, evaluated on every chunk the proxy forwards.
	var (
		mu                                               sync.Mutex
		listeners                                        = map[uint64]bool{}
		appending                                        = map[uint64]bool{}
		readStmts                                        = map[string]bool{}
		cutRng                                           = rand.New(rand.NewPCG(seed, 2))
		commitCuts, groupCuts, copyCuts, readCuts, armed atomic.Int64
	)
	armed.Store(1)
	proxy.SetCut(func(c faultproxy.Chunk) bool {
		if armed.Load() == 0 {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, []byte("LISTEN ")):
			listeners[c.Conn] = true
		case c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, appendCall):
			appending[c.Conn] = true
		case c.Dir == faultproxy.ToClient && appending[c.Conn] && bytes.Contains(c.Data, readyIdle):
			delete(appending, c.Conn)
			if cutRng.IntN(12) == 0 {
				groupCuts.Add(1)
				return true
			}
		case c.Dir == faultproxy.ToClient && bytes.Contains(c.Data, commitReply) && cutRng.IntN(12) == 0:
			commitCuts.Add(1)
			return true
		case c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, []byte("PGCOPY\n")) && cutRng.IntN(4) == 0:
			copyCuts.Add(1)
			return true
		case c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, readQuery):
			// The statement's Parse: its name comes right before the text.
			if names := stmtCacheName.FindAll(c.Data[:bytes.Index(c.Data, readQuery)], -1); len(names) > 0 {
				readStmts[string(names[len(names)-1])] = true
			}
			if cutRng.IntN(8) == 0 {
				readCuts.Add(1)
				return true
			}
		case c.Dir == faultproxy.ToServer && bytes.Contains(c.Data, []byte("stmtcache_")):
			for _, name := range stmtCacheName.FindAll(c.Data, -1) {
				if readStmts[string(name)] {
					if cutRng.IntN(30) == 0 {
						readCuts.Add(1)
						return true
					}
					break
				}
			}
		}
		return false
	})

	led := newLedger()
	f := startFleet(writer, led, 8, 4, seed)
	var randomCuts, listenCuts, allCuts int
	rounds := scale(60)
	for i := range rounds {
		time.Sleep(time.Duration(30+rng.IntN(150)) * time.Millisecond)
		switch {
		case i%15 == 14:
			proxy.CutAll()
			allCuts++
		case i%5 == 2:
			mu.Lock()
			ids := make([]uint64, 0, len(listeners))
			for id := range listeners {
				ids = append(ids, id)
			}
			mu.Unlock()
			for _, id := range ids {
				if proxy.CutConn(id) {
					listenCuts++
				}
			}
		default:
			if proxy.CutRandom(rng) {
				randomCuts++
			}
		}
	}
	armed.Store(0)
	f.waitEachWriter(t, f.snapshot(), 3, 20*time.Second)
	f.finish()
	listenDelivers(t, writer, led, fl)
	writer.Close()

	rows := readLog(t, writePool)
	waitFor(t, 30*time.Second, func() bool { return fl.position.Load() >= uint64(len(rows)) },
		func() string {
			fl.mu.Lock()
			defer fl.mu.Unlock()
			return fmt.Sprintf("the subscription is at %d, the log at %d (%d errors, last: %s)", fl.position.Load(), len(rows), fl.errs, fl.lastErr)
		})
	fl.stop()
	fg := verifyLog(t, rows, led)
	verifyFollower(t, rows, fl, &fg)
	verifyAudit(t, readPool, rows, &fg)
	au.stop()
	st := proxy.Stats()
	fg.Faults = int(st.Cuts)
	fg.Extra = map[string]any{
		"random_cuts": randomCuts, "commit_reply_cuts": commitCuts.Load(), "group_reply_cuts": groupCuts.Load(), "copy_cuts": copyCuts.Load(), "subscription_read_cuts": readCuts.Load(),
		"listen_cuts": listenCuts, "cut_all": allCuts, "connections": st.Accepted,
	}
	if fg.Lost != 0 || fg.Duplicated != 0 || fg.Partial != 0 {
		t.Errorf("lost %d, duplicated %d, partly written %d", fg.Lost, fg.Duplicated, fg.Partial)
	}
	// COMMIT replies come from the projection's transactions and the
	// careful path, too few in some runs to count on; group replies come
	// from every group of appends.
	if groupCuts.Load() == 0 || listenCuts == 0 || copyCuts.Load() == 0 || readCuts.Load() == 0 || fg.FailedAttempts == 0 {
		t.Errorf("the faults missed their targets (group-reply cuts %d, LISTEN cuts %d, mid-COPY cuts %d, subscription-read cuts %d, failed appends %d): the test proved less than it claims",
			groupCuts.Load(), listenCuts, copyCuts.Load(), readCuts.Load(), fg.FailedAttempts)
	}
	report(t, fg)
}
