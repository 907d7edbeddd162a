package esdb

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/brainhq/eventstream/eventstore"
)

// Subscribe starts a catch-up subscription to $all after opts.After
// (exclusive, as EventStoreDB's subscription positions are). With Types,
// the server filters by event type; otherwise it leaves out system events.
// In a namespace the server filters by stream prefix instead, and the types
// are checked here. ctx bounds the setup only; the subscription lasts until
// it or the store is closed.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	life, cancel := context.WithCancel(s.life)
	// The setup is a call in flight: Close waits for it before it closes
	// the client.
	s.ops.Add(1)
	defer s.ops.Done()
	s.mu.Unlock()

	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultPageSize
	}
	// The setup waits for the server's confirmation; give up on it when
	// the caller's context ends.
	stop := context.AfterFunc(ctx, cancel)
	inner, err := s.client.SubscribeToAll(life, client.SubscribeToAllOptions{
		From:   serverPosition(opts.After),
		Filter: s.filter(opts.Types),
	})
	if !stop() {
		cancel()
		if err == nil {
			inner.Close()
		}
		return nil, fmt.Errorf("esdb: subscribe to $all: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		return nil, s.fail(ctx, "subscribe to $all", err)
	}
	sub := &subscription{
		s:      s,
		inner:  inner,
		cancel: cancel,
		after:  opts.After,
		types:  slices.Clone(opts.Types),
		batch:  batch,
		events: make(chan eventstore.Event, batch),
		closed: make(chan struct{}),
		pumped: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sub.shutdown(eventstore.ErrClosed)
		return nil, eventstore.ErrClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go sub.pump()
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

type subscription struct {
	s      *Store
	inner  *client.Subscription
	cancel context.CancelFunc
	after  eventstore.Position // events at or before it are not delivered
	types  []string
	batch  int

	events chan eventstore.Event // filled by pump, in position order
	closed chan struct{}         // closed by shutdown
	pumped chan struct{}         // closed when pump has returned

	once sync.Once
	mu   sync.Mutex
	err  error // why the subscription ended
}

// pump moves events from the gRPC stream to the buffer, which holds at
// most BatchSize events: a slow reader slows the server down (gRPC flow
// control), it does not grow memory.
func (sub *subscription) pump() {
	defer close(sub.pumped)
	for {
		ev := sub.inner.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			sub.shutdown(fmt.Errorf("esdb: subscription to $all dropped: %w", ev.SubscriptionDropped.Error))
			return
		case ev.EventAppeared != nil:
			e, ok, err := sub.s.decode(ev.EventAppeared.OriginalEvent())
			if err != nil {
				sub.shutdown(fmt.Errorf("esdb: subscription to $all: %w", err))
				return
			}
			if !ok || e.Position.Compare(sub.after) <= 0 || (len(sub.types) > 0 && !slices.Contains(sub.types, e.Type)) {
				continue
			}
			select {
			case sub.events <- e:
			case <-sub.closed:
				return
			}
		}
	}
}

// shutdown ends the subscription once, for the reason given.
func (sub *subscription) shutdown(reason error) {
	sub.once.Do(func() {
		sub.mu.Lock()
		sub.err = reason
		sub.mu.Unlock()
		close(sub.closed)
		sub.cancel()
		sub.inner.Close()
		sub.s.mu.Lock()
		delete(sub.s.subs, sub)
		sub.s.mu.Unlock()
	})
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
	var first eventstore.Event
	select {
	case first = <-sub.events:
	case <-sub.closed:
		return nil, sub.reason()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := []eventstore.Event{first}
	for len(out) < sub.batch {
		select {
		case e := <-sub.events:
			out = append(out, e)
		default:
			return out, nil
		}
	}
	return out, nil
}

// Close ends the subscription; Next then returns ErrClosed.
func (sub *subscription) Close() error {
	sub.shutdown(eventstore.ErrClosed)
	<-sub.pumped
	return nil
}
