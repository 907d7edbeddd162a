package esdb

import (
	"context"
	"errors"
	"strings"
	"sync"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// The EventStoreDB client (v4.2.0) serves every call's request for its
// connection, and every call's "reconnect" after an Unavailable answer,
// from one connection goroutine, over an unbuffered channel. That
// goroutine does not read the channel while it runs a discovery, and ends
// for good, without reading it again, when a discovery fails. A call that
// sends on the channel meanwhile is never answered, whatever its context
// says. So the store runs each client call in a goroutine of its own (see
// call) and waits for it only as long as the caller's context, the store
// and the client last.
//
// Closing the client would wake such a goroutine (the send panics, which
// call could recover), but a close that races a send on the channel is a
// data race: a client is closed only once no call is inside it (see
// conn.retire).

var (
	// errClientGone: the call was in a client found closed for good (a
	// discovery failed), or its client was replaced and closed before the
	// call could start. An outage (see unavailable).
	errClientGone = errors.New("the EventStoreDB client closed itself after its discovery found no node; the store is making a new one")
)

// conn is one client and the store's calls inside it.
type conn struct {
	c *client.Client
	// dead is closed once a call has found that c closed itself for good
	// (see clientGone): the calls still waiting for c give up.
	dead     chan struct{}
	deadOnce sync.Once

	mu      sync.Mutex
	inside  int  // goroutines in a call on c
	retired bool // no call starts on c any more: close it once inside is 0
	closed  bool // c is closed
	// left counts the goroutines inside c whose caller has stopped
	// waiting for them. While there are any, c is not answering (most
	// likely it runs a discovery: see call) and new calls wait for them
	// to leave instead of entering, so that a discovery that fails
	// strands at most the calls in flight when c stopped answering, not
	// one more per call made meanwhile. cleared is closed when left drops
	// back to 0.
	left    int
	cleared chan struct{}
}

// A goroutine's state in c, under conn.mu.
const (
	stInside    = iota // in a call on c, its caller waiting
	stAbandoned        // in a call on c, its caller gone
	stOut              // out of c
)

func newConn(c *client.Client) *conn { return &conn{c: c, dead: make(chan struct{})} }

// markDead says that c has closed itself for good.
func (cn *conn) markDead() { cn.deadOnce.Do(func() { close(cn.dead) }) }

func (cn *conn) isDead() bool {
	select {
	case <-cn.dead:
		return true
	default:
		return false
	}
}

// enter counts a goroutine into c once no abandoned goroutine is inside
// it. It fails with errClientGone if c is closed or found dead, or with
// ctx.Err() if ctx ends first.
func (cn *conn) enter(ctx context.Context) error {
	for {
		cn.mu.Lock()
		if cn.closed {
			cn.mu.Unlock()
			return errClientGone
		}
		if cn.left == 0 {
			cn.inside++
			cn.mu.Unlock()
			return nil
		}
		cleared := cn.cleared
		cn.mu.Unlock()
		select {
		case <-cleared:
		case <-ctx.Done():
			return ctx.Err()
		case <-cn.dead:
			return errClientGone
		}
	}
}

// leave counts a goroutine in state *st out of c, and closes a retired c
// it was the last one in.
func (cn *conn) leave(st *int) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if *st == stAbandoned {
		cn.left--
		if cn.left == 0 {
			close(cn.cleared)
		}
	}
	*st = stOut
	cn.inside--
	cn.closeIfIdle()
}

// abandon says that the caller of the goroutine in state *st has stopped
// waiting for it.
func (cn *conn) abandon(st *int) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if *st != stInside {
		return
	}
	*st = stAbandoned
	if cn.left == 0 {
		cn.cleared = make(chan struct{})
	}
	cn.left++
}

// retire says that no call will use c any more: it is closed now if no
// call is inside it, else when the last one leaves. A call stranded in c
// by a failed discovery never leaves: c then stays open (its connection
// goroutine has ended; closing it would race the stranded send).
func (cn *conn) retire() {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	cn.retired = true
	cn.closeIfIdle()
}

func (cn *conn) closeIfIdle() {
	if cn.retired && cn.inside == 0 && !cn.closed {
		cn.closed = true
		_ = cn.c.Close()
	}
}

// call runs fn on cn's client in a goroutine of its own and returns its
// results, or, whichever comes first, ctx.Err() once ctx ends (the calls'
// contexts also end when the store is closed) or errClientGone once the
// client is found closed for good. fn must use ctx for its client calls,
// so that a call left behind ends with it, and must finish with the
// client's results (drain a read in fn): the caller may have left. A
// result that arrives after the caller left is given to discard, if not
// nil, to release it.
//
// The goroutine itself ends when the client answers: at once once ctx has
// ended, unless the client's connection goroutine is running a discovery,
// which it answers when the discovery ends; if that discovery fails, never
// (see the comment at the top of this file). While a goroutine left
// behind is inside the client, later calls wait for it before entering
// (see conn.left), as long as their own context allows. With s, an error saying that
// the client closed itself starts its replacement (see renewOn), even when
// the caller has left.
//
// A call that finds cn closed or dead before entering it (errClientGone:
// fn has not run) while the store has made another client meanwhile runs
// once more on that one, as if it had picked it up: the caller got cn from
// s.conn() just before a renewal replaced and retired it, and should not
// fail for it. A call that entered cn is never run again: fn may have
// reached the server.
func call[T any](ctx context.Context, s *Store, cn *conn, fn func(*client.Client) (T, error), discard func(T)) (T, error) {
	return callOn(ctx, s, cn, fn, discard, true)
}

func callOn[T any](ctx context.Context, s *Store, cn *conn, fn func(*client.Client) (T, error), discard func(T), retry bool) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	err := errClientGone
	if !cn.isDead() {
		err = cn.enter(ctx)
	}
	if err != nil {
		if s != nil {
			s.renewOn(cn, err)
			if nc := s.conn(); retry && errors.Is(err, errClientGone) && nc != cn {
				return callOn(ctx, s, nc, fn, discard, false)
			}
		}
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	results := make(chan result)
	gone := make(chan struct{})
	st := stInside
	go func() {
		v, err := fn(cn.c)
		if s != nil {
			s.renewOn(cn, err)
		}
		cn.leave(&st)
		select {
		case results <- result{v, err}:
		case <-gone:
			if err == nil && discard != nil {
				discard(v)
			}
		}
	}()
	select {
	case r := <-results:
		return r.v, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-cn.dead:
		err = errClientGone
	}
	cn.abandon(&st)
	close(gone)
	return zero, err
}

// clientGone reports whether err says that the client has closed itself
// for good: its discovery failed ("maximum discovery attempt count
// reached", the error of the call whose request started it), or a later
// call found it closed (ErrorCodeConnectionClosed). Its connection
// goroutine has then ended.
func clientGone(err error) bool {
	if errors.Is(err, errClientGone) {
		return true
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return false
	}
	if e.Code() == client.ErrorCodeConnectionClosed {
		return true
	}
	return e.Err() != nil && strings.Contains(e.Err().Error(), "maximum discovery attempt count reached")
}
