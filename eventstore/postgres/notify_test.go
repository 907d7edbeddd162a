package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
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

// TestSilentListenConnectionIsReplaced cuts the network under the LISTEN
// connection without closing it (a partition, a failover that took the
// address away: no reset ever comes). The subscriptions of that store, whose
// safety poll is an hour, must still learn of an event another process
// appends: the silent connection is found out and replaced.
func TestSilentListenConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writer, _, bh, sub := listeningThroughBlackhole(ctx, t)
	// The LISTEN connection works: an event of the other process arrives.
	res, err := writer.Append(ctx, "silent", eventstore.NoStream, thingEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sub.Next(ctx); err != nil || len(got) != 1 || got[0].ID != res.Events[0].ID {
		t.Fatalf("Next before the cut: %d events, %v", len(got), err)
	}
	if !bh.silence("LISTEN") {
		t.Fatal("no connection of the reader sent LISTEN")
	}
	// Take any wake-up left from before, then wait for the next event.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if evs, err := sub.Next(short); err == nil {
		t.Fatalf("Next with nothing appended: %d events", len(evs))
	}
	type result struct {
		evs []eventstore.Event
		err error
	}
	next := make(chan result, 1)
	go func() {
		nctx, ncancel := context.WithTimeout(ctx, 30*time.Second)
		defer ncancel()
		evs, err := sub.Next(nctx)
		next <- result{evs, err}
	}()
	time.Sleep(100 * time.Millisecond) // Next has read nothing and waits
	res, err = writer.Append(ctx, "silent", eventstore.Exact(1), thingEvent(2))
	if err != nil {
		t.Fatal(err)
	}
	r := <-next
	got, err := r.evs, r.err
	if err != nil {
		t.Fatalf("Next after the LISTEN connection went silent: %v (the event was never announced)", err)
	}
	if len(got) != 1 || got[0].ID != res.Events[0].ID {
		t.Fatalf("Next after the LISTEN connection went silent: %d events, want the appended one", len(got))
	}
}

// listeningThroughBlackhole opens a writer store directly and a reader
// store whose connections go through a blackholeProxy, with a safety poll
// of an hour and short LISTEN health checks, subscribes with the reader and
// returns once the reader's LISTEN connection is idle on the server.
func listeningThroughBlackhole(ctx context.Context, t *testing.T) (writer, reader *Store, bh *blackholeProxy, sub eventstore.Subscription) {
	t.Helper()
	u, _ := pgtest.Schema(t)
	writer, err := Open(ctx, u, testRegistryInternal(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close() })

	bh = newBlackholeProxy(t)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", bh.port()
	cfg.ConnConfig.Fallbacks = nil
	var b [6]byte
	_, _ = rand.Read(b[:])
	app := "es-silent-test-" + hex.EncodeToString(b[:])
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reader, err = New(ctx, pool, testRegistryInternal(t), Options{SkipMigrate: true, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	reader.notifier.idle, reader.notifier.pingTimeout = 200*time.Millisecond, 300*time.Millisecond
	reader.notifier.setupTimeout = 500 * time.Millisecond

	sub, err = reader.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	for {
		var n int
		err := writer.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%' AND state = 'idle'`, app).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return writer, reader, bh, sub // the reader listens
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenReconnectToASilentServerGivesUp replaces a silent LISTEN
// connection while the server accepts new connections and answers none
// of them (a failover in progress, a proxy whose backend is gone). The
// reconnect must give up on such a connection and try again: once the
// server answers, an event appended by another process reaches the
// subscription, whose safety poll is an hour.
func TestListenReconnectToASilentServerGivesUp(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writer, _, bh, sub := listeningThroughBlackhole(ctx, t)

	before := bh.accepted.Load()
	bh.silentNew.Store(true)
	if !bh.silence("LISTEN") {
		t.Fatal("no connection of the reader sent LISTEN")
	}
	// Wait for the reconnect to reach the silent server.
	for bh.accepted.Load() == before {
		if ctx.Err() != nil {
			t.Fatal("the silent LISTEN connection was never replaced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Take the wake-up of the lost connection, then leave the reconnect
	// with the silent server for longer than its setup bound.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if evs, err := sub.Next(short); err == nil {
		t.Fatalf("Next with nothing appended: %d events", len(evs))
	}
	time.Sleep(time.Second)
	bh.silentNew.Store(false)

	type result struct {
		evs []eventstore.Event
		err error
	}
	next := make(chan result, 1)
	go func() {
		nctx, ncancel := context.WithTimeout(ctx, 20*time.Second)
		defer ncancel()
		evs, err := sub.Next(nctx)
		next <- result{evs, err}
	}()
	time.Sleep(100 * time.Millisecond) // Next has read nothing and waits
	res, err := writer.Append(ctx, "silent-setup", eventstore.NoStream, thingEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	r := <-next
	if r.err != nil {
		t.Fatalf("Next after the server stopped answering new connections for a while: %v (the reconnect never gave up)", r.err)
	}
	if len(r.evs) != 1 || r.evs[0].ID != res.Events[0].ID {
		t.Fatalf("Next: %d events, want the appended one", len(r.evs))
	}
	if n := bh.accepted.Load() - before; n < 2 {
		t.Fatalf("%d connections reached the proxy after the cut, want a silent one and a working one", n)
	}
}

func testRegistryInternal(t *testing.T) *schemas.Registry {
	t.Helper()
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func thingEvent(n int) eventstore.Event {
	return eventstore.Event{
		Type: "test.thing.happened", Source: "tests",
		Payload: json.RawMessage(fmt.Sprintf(`{"n": %d, "title": "thing"}`, n)),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme"},
	}
}

// blackholeProxy forwards TCP connections to the test database and can
// silence one: from then on it forwards nothing either way and closes
// nothing, as a network that lost the route would.
type blackholeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	links  []*blackholeLink
	wg     sync.WaitGroup
	// silentNew makes connections accepted while it is set silent from
	// their first byte: a server that accepts and never answers.
	silentNew atomic.Bool
	accepted  atomic.Int64
}

type blackholeLink struct {
	client, server net.Conn
	sent           strings.Builder // what the client sent, up to 64 KiB; guarded by the proxy's mu
	silent         atomic.Bool
}

func newBlackholeProxy(t *testing.T) *blackholeProxy {
	t.Helper()
	u, err := url.Parse(pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: u.Host}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, l := range p.links {
			l.client.Close()
			l.server.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *blackholeProxy) port() uint16 { return uint16(p.ln.Addr().(*net.TCPAddr).Port) }

func (p *blackholeProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &blackholeLink{client: c, server: s}
		l.silent.Store(p.silentNew.Load())
		p.accepted.Add(1)
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, c, s, true)
		go p.pipe(l, s, c, false)
	}
}

func (p *blackholeProxy) pipe(l *blackholeLink, from, to net.Conn, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !l.silent.Load() {
			if fromClient {
				p.mu.Lock()
				if l.sent.Len() < 64<<10 {
					l.sent.Write(buf[:n])
				}
				p.mu.Unlock()
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !l.silent.Load() {
				to.Close()
			}
			return
		}
	}
}

// silence silences the connections whose client sent text containing s
// and reports whether there was one.
func (p *blackholeProxy) silence(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	found := false
	for _, l := range p.links {
		if strings.Contains(l.sent.String(), s) {
			l.silent.Store(true)
			found = true
		}
	}
	return found
}

// TestListenConnectsAsThePoolDoes gives the reader a pool whose
// connections are made by its BeforeConnect hook (as a pool does that
// fetches a rotating password or an IAM token, or resolves the primary,
// just before each connect): the configuration alone names a port where
// nothing listens. The LISTEN connection must be made the same way, or
// the subscriptions of that store, whose safety poll is an hour, never
// hear of an event another process appends.
func TestListenConnectsAsThePoolDoes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, _ := pgtest.Schema(t)
	writer, err := Open(ctx, u, testRegistryInternal(t))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()

	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	host, port := cfg.ConnConfig.Host, cfg.ConnConfig.Port
	cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Fallbacks = "127.0.0.1", closedPort, nil
	var afterConnect atomic.Int32
	cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		cc.Host, cc.Port = host, port
		return nil
	}
	cfg.AfterConnect = func(context.Context, *pgx.Conn) error {
		afterConnect.Add(1)
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reader, err := New(ctx, pool, testRegistryInternal(t), Options{SkipMigrate: true, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	sub, err := reader.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Take the wake-up the listener gives once it listens, then wait for
	// the event.
	for deadline := time.Now().Add(10 * time.Second); afterConnect.Load() < 2; { // the pool's connection, then the listener's
		if time.Now().After(deadline) {
			t.Fatal("the LISTEN connection was never made through the pool's AfterConnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if evs, err := sub.Next(short); err == nil {
		t.Fatalf("Next with nothing appended: %d events", len(evs))
	}
	res, err := writer.Append(ctx, "hooked", eventstore.NoStream, thingEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithTimeout(ctx, 10*time.Second)
	defer ncancel()
	got, err := sub.Next(nctx)
	if err != nil {
		t.Fatalf("Next after another process appended: %v (the LISTEN connection ignored the pool's BeforeConnect)", err)
	}
	if len(got) != 1 || got[0].ID != res.Events[0].ID {
		t.Fatalf("Next: %d events, want the appended one", len(got))
	}
}
