package esdb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/brainhq/eventstream/eventstore"
)

// Subscribe starts a catch-up subscription to $all after opts.After
// (exclusive, as EventStoreDB's subscription positions are). With Types,
// the server filters by event type; otherwise it leaves out system events.
// In a namespace the server filters by stream prefix instead, and the types
// are checked here. ctx bounds the setup only; the subscription lasts until
// it or the store is closed. When the server drops it (a restart, a leader
// election), Next says so once and the following Next subscribes again
// after the last event it returned.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	// A closed store says so whatever the arguments (checked again below,
	// under the lock).
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, eventstore.ErrClosed
	}
	if err := eventstore.CheckFilter(opts.Types, ""); err != nil {
		return nil, err
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultPageSize
	}
	sub := &subscription{
		s:      s,
		types:  slices.Clone(opts.Types),
		batch:  batch,
		last:   opts.After,
		closed: make(chan struct{}),
		turn:   make(chan struct{}, 1),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	if _, err := sub.feed(ctx); err != nil {
		sub.shutdown(err)
		return nil, err
	}
	return sub, nil
}

// filter is the server-side filter of a subscription: the namespace's
// stream prefix, or the wanted types, or "not a system event" (the
// regular expression of the clients' ExcludeSystemEventsFilter).
func (s *Store) filter(types []string) *client.SubscriptionFilter {
	if s.ns != "" {
		return &client.SubscriptionFilter{Type: client.StreamFilterType, Prefixes: []string{s.ns}}
	}
	if len(types) == 0 {
		return &client.SubscriptionFilter{Type: client.EventFilterType, Regex: `^[^$]`}
	}
	quoted := make([]string, len(types))
	for i, t := range types {
		quoted[i] = regexp.QuoteMeta(t)
	}
	return &client.SubscriptionFilter{Type: client.EventFilterType, Regex: "^(?:" + strings.Join(quoted, "|") + ")$"}
}

// subscription is the store's side of a catch-up subscription; each
// server subscription it holds in turn is a feed.
type subscription struct {
	s     *Store
	types []string
	batch int

	closed chan struct{} // closed by shutdown
	once   sync.Once
	// turn is held by the Next in progress. Calls from several goroutines
	// take turns, as on the other backends: one taking events from the
	// feed while another does would interleave their batches, and a call
	// that finds the feed dropped would subscribe again from the last
	// batch recorded as delivered, delivering a second time what another
	// call holds but has not recorded yet. A channel, not a mutex, so that
	// a call waiting its turn still returns when its context ends or the
	// subscription closes.
	turn chan struct{}

	mu   sync.Mutex
	err  error               // why the subscription ended
	cur  *feed               // the server subscription; nil after a drop until Next subscribes again
	last eventstore.Position // After, then the last event Next returned
}

// feed is one server subscription and the goroutine that reads it.
type feed struct {
	inner  *client.Subscription
	ctx    context.Context // ends when the feed is stopped
	cancel context.CancelFunc
	events chan eventstore.Event // filled by pump, in position order
	// buffered is the PageBytes of the events in events: pump waits while
	// it is MaxPageBytes or more (the channel bounds their count only),
	// and Next signals drained when it has taken some.
	buffered atomic.Int64
	drained  chan struct{}
	done     chan struct{} // closed when pump has returned
	err      error         // why pump returned; read after done
	fatal    bool          // err is not the server's drop: subscribing again would meet it again
}

func (f *feed) stop() {
	f.cancel()
	f.inner.Close()
}

// feed returns the current server subscription, or subscribes again after
// the last event Next returned. The setup is a call in flight: Close waits
// for it, and a feed it opens once the subscription is closed is stopped.
func (sub *subscription) feed(ctx context.Context) (*feed, error) {
	sub.mu.Lock()
	f, after := sub.cur, sub.last
	sub.mu.Unlock()
	if f != nil {
		return f, nil
	}
	s := sub.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	s.ops.Add(1)
	defer s.ops.Done()
	s.mu.Unlock()

	life, cancel := context.WithCancel(s.life)
	// The setup waits for the server's confirmation; give up on it when
	// the caller's context ends.
	stop := context.AfterFunc(ctx, cancel)
	// The client is asked in a goroutine of its own (see call): the
	// setup ends with ctx or the store even if the client never answers.
	inner, err := call(life, s, s.conn(), func(c *client.Client) (*client.Subscription, error) {
		return c.SubscribeToAll(life, client.SubscribeToAllOptions{
			From:   serverPosition(after),
			Filter: s.filter(sub.types),
		})
	}, func(inner *client.Subscription) { inner.Close() })
	if !stop() {
		cancel()
		if err == nil {
			inner.Close()
		}
		return nil, fmt.Errorf("esdb: subscribe to $all: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		if invalidPosition(err) {
			return nil, badPosition(after, err)
		}
		return nil, s.fail(ctx, "subscribe to $all", err)
	}
	// The buffer holds a batch, up to a read's worth: a BatchSize of
	// math.MaxInt means "as many as there are", not a buffer that size.
	f = &feed{inner: inner, ctx: life, cancel: cancel, events: make(chan eventstore.Event, min(sub.batch, readPage)), drained: make(chan struct{}, 1), done: make(chan struct{})}
	go sub.pump(f, after)
	sub.mu.Lock()
	select {
	case <-sub.closed:
		sub.mu.Unlock()
		f.stop()
		<-f.done
		return nil, sub.reason()
	default:
	}
	if other := sub.cur; other != nil {
		// Another Next subscribed again first: keep one feed.
		sub.mu.Unlock()
		f.stop()
		<-f.done
		return other, nil
	}
	sub.cur = f
	sub.mu.Unlock()
	return f, nil
}

// pump moves events from the gRPC stream to the feed's buffer, which holds
// at most BatchSize events: a slow reader slows the server down (gRPC flow
// control), it does not grow memory.
func (sub *subscription) pump(f *feed, after eventstore.Position) {
	defer close(f.done)
	for {
		ev := f.inner.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			f.err = ev.SubscriptionDropped.Error
			if invalidPosition(f.err) {
				// EventStoreDB confirms a subscription before it reads
				// from the start position (24.2 on), so a position it
				// cannot read from arrives here, as a drop. Subscribing
				// again would meet it again.
				f.err, f.fatal = badPosition(after, f.err), true
			}
			return
		case ev.EventAppeared != nil:
			e, ok, err := sub.s.decode(ev.EventAppeared.OriginalEvent())
			if err != nil {
				f.err, f.fatal = err, true
				return
			}
			if !ok || e.Position.Compare(after) <= 0 || (len(sub.types) > 0 && !slices.Contains(sub.types, e.Type)) {
				continue
			}
			for f.buffered.Load() >= eventstore.MaxPageBytes {
				select {
				case <-f.drained:
				case <-f.ctx.Done():
					f.err = f.ctx.Err()
					return
				}
			}
			f.buffered.Add(int64(eventstore.PageBytes(&e)))
			select {
			case f.events <- e:
			case <-f.ctx.Done():
				f.err = f.ctx.Err()
				return
			}
		}
	}
}

// took records that Next took events of size bytes from f's buffer.
func (f *feed) took(size int) {
	f.buffered.Add(-int64(size))
	select {
	case f.drained <- struct{}{}:
	default:
	}
}

// dropped says why feed f ended, once the events it buffered have been
// delivered. A drop by the server is transient: the next Next subscribes
// again. An event the backend cannot read ends the subscription.
func (sub *subscription) dropped(f *feed) error {
	select {
	case <-sub.closed:
		return sub.reason()
	default:
	}
	if sub.s.life.Err() != nil {
		return eventstore.ErrClosed
	}
	if f.fatal {
		err := f.err
		if !errors.Is(err, errBadPosition) {
			err = fmt.Errorf("esdb: subscription to $all: %w", f.err)
		}
		sub.shutdown(err)
		return err
	}
	sub.mu.Lock()
	if sub.cur == f {
		sub.cur = nil
	}
	sub.mu.Unlock()
	return unavailable(fmt.Errorf("esdb: subscription to $all dropped by the server (Next subscribes again after the last event it returned): %w", f.err))
}

// shutdown ends the subscription once, for the reason given.
func (sub *subscription) shutdown(reason error) {
	sub.once.Do(func() {
		sub.mu.Lock()
		sub.err = reason
		close(sub.closed)
		f := sub.cur
		sub.mu.Unlock()
		if f != nil {
			f.stop()
		}
		sub.s.mu.Lock()
		delete(sub.s.subs, sub)
		sub.s.mu.Unlock()
	})
}

// wait returns once the feed's goroutine has, after shutdown.
func (sub *subscription) wait() {
	sub.mu.Lock()
	f := sub.cur
	sub.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

func (sub *subscription) reason() error {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.err
}

// Next waits for at least one event and returns up to BatchSize of them.
func (sub *subscription) Next(ctx context.Context) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-sub.closed:
		return nil, sub.reason()
	default:
	}
	select {
	case sub.turn <- struct{}{}:
		defer func() { <-sub.turn }()
	case <-sub.closed:
		return nil, sub.reason()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := sub.feed(ctx)
	if err != nil {
		return nil, err
	}
	var first eventstore.Event
	select {
	case first = <-f.events:
	case <-f.done:
		// What the feed buffered before it ended comes first.
		select {
		case first = <-f.events:
		default:
			return nil, sub.dropped(f)
		}
	case <-sub.closed:
		return nil, sub.reason()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := []eventstore.Event{first}
	size := eventstore.PageBytes(&first)
	defer func() { f.took(size) }()
	for len(out) < sub.batch && size < eventstore.MaxPageBytes {
		select {
		case e := <-f.events:
			out = append(out, e)
			size += eventstore.PageBytes(&e)
		default:
			sub.delivered(out)
			return out, nil
		}
	}
	sub.delivered(out)
	return out, nil
}

// delivered moves the place a new feed starts from past out. Concurrent
// Next calls may record their batches out of order; the place only moves
// forwards.
func (sub *subscription) delivered(out []eventstore.Event) {
	sub.mu.Lock()
	if p := out[len(out)-1].Position; p.Compare(sub.last) > 0 {
		sub.last = p
	}
	sub.mu.Unlock()
}

// Close ends the subscription; Next then returns ErrClosed.
func (sub *subscription) Close() error {
	sub.shutdown(eventstore.ErrClosed)
	sub.wait()
	return nil
}
