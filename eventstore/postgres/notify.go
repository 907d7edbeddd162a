package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifier keeps one LISTEN connection per Store (started with the first
// subscription) and wakes every subscription when a commit is announced,
// by this process or another. It reconnects by itself, and wakes everyone
// after a reconnect, since notifications sent meanwhile are lost.
type notifier struct {
	s       *Store
	mu      sync.Mutex
	wakes   map[chan struct{}]struct{}
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	// idle is how long the LISTEN connection may stay silent before it is
	// asked to answer a ping within pingTimeout. A connection whose peer
	// vanished without a reset (a partition, a failover that took the
	// address away) delivers nothing and reports nothing until TCP gives
	// up, minutes later; meanwhile every live subscription would wait for
	// its safety poll.
	idle, pingTimeout time.Duration
	// setupTimeout bounds connecting and LISTEN. A server that accepts
	// the connection and then says nothing (a stalled failover, a proxy
	// whose backend is gone) would otherwise hold the reconnect until
	// TCP gives up, and the subscriptions would wait for their safety
	// poll all that time.
	setupTimeout time.Duration
}

func newNotifier(s *Store) *notifier {
	return &notifier{s: s, wakes: map[chan struct{}]struct{}{}, done: make(chan struct{}),
		idle: 10 * time.Second, pingTimeout: 5 * time.Second, setupTimeout: 10 * time.Second}
}

// add registers a subscription's wake channel, starting the LISTEN
// connection with the first one. It returns false once the notifier is
// closed: a Subscribe that found the store open can get here after Close
// has run, and a listener started then would never be stopped.
func (n *notifier) add(c chan struct{}) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wakes[c] = struct{}{}
	if !n.started {
		n.started = true
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel = cancel
		go n.listen(ctx)
	}
	return true
}

func (n *notifier) remove(c chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.wakes, c)
}

// wakeLocal wakes every subscription without waiting for NOTIFY to travel.
func (n *notifier) wakeLocal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.wakes {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	started, cancel := n.started, n.cancel
	subs := n.wakes
	n.wakes = map[chan struct{}]struct{}{}
	n.mu.Unlock()
	for c := range subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	if started {
		cancel()
		<-n.done
	}
}

func (n *notifier) listen(ctx context.Context) {
	defer close(n.done)
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		listened, err := n.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			// The connection worked: this is a new outage, not the next
			// failure of the same one.
			backoff = firstBackoff
		}
		n.s.opts.Logger.Warn("eventstream: LISTEN connection lost; reconnecting", "error", err, "retry_in", backoff)
		n.wakeLocal()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenOnce listens until the connection fails; listened reports whether
// it got as far as LISTEN.
func (n *notifier) listenOnce(ctx context.Context) (listened bool, err error) {
	sctx, cancelSetup := context.WithTimeout(ctx, n.setupTimeout)
	defer cancelSetup()
	// Connect as the pool does: its BeforeConnect may supply what the
	// configuration lacks (a rotating password, an IAM token, the address
	// of the current primary), and its AfterConnect prepares a session.
	pcfg := n.s.pool.Config()
	cc := pcfg.ConnConfig
	if pcfg.BeforeConnect != nil {
		if err := pcfg.BeforeConnect(sctx, cc); err != nil {
			return false, fmt.Errorf("connecting: before connect: %w", err)
		}
	}
	conn, err := pgx.ConnectConfig(sctx, cc)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(c)
	}()
	if pcfg.AfterConnect != nil {
		if err := pcfg.AfterConnect(sctx, conn); err != nil {
			return false, fmt.Errorf("connecting: after connect: %w", err)
		}
	}
	if _, err := conn.Exec(sctx, `LISTEN `+pgx.Identifier{n.s.channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("LISTEN: %w", err)
	}
	cancelSetup()
	// Anything committed while we were not listening must be picked up.
	n.wakeLocal()
	for {
		wctx, cancel := context.WithTimeout(ctx, n.idle)
		_, err := conn.WaitForNotification(wctx)
		// Whether the wait timed out, read before cancel: after it,
		// wctx.Err() is set whatever ended the wait, and a connection
		// the server ended would be taken for a silent one and logged
		// as "does not answer" instead of with the server's reason.
		silent := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			n.wakeLocal()
		case ctx.Err() == nil && silent:
			// Silent for a while: make sure the server is still there. (A
			// timed-out wait leaves the connection usable: pgconn keeps a
			// message it had half read.)
			pctx, cancel := context.WithTimeout(ctx, n.pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("LISTEN connection does not answer: %w", err)
			}
		default:
			return true, err
		}
	}
}
