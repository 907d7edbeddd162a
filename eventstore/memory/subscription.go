package memory

import (
	"context"
	"slices"
	"sync"

	"github.com/brainhq/eventstream/eventstore"
)

// maxScan bounds how much of the log one Next looks at under the read lock
// when a Types filter skips most events, so that appends are not held up.
const maxScan = 10_000

type subscription struct {
	s     *Store
	types []string
	batch int

	// turn is held by the Next in progress, so that calls from several
	// goroutines take turns. A channel, not a mutex, so that a call
	// waiting its turn still returns when its context ends or the
	// subscription closes.
	turn chan struct{}
	next int // index into the log of the next event to look at; guarded by turn

	closeOnce sync.Once
	closed    chan struct{}
}

// Subscribe delivers the log after opts.After: stored events first, then
// new ones as they are appended. ctx bounds only the call itself.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, eventstore.ErrClosed
	}
	if err := eventstore.CheckFilter(opts.Types, ""); err != nil {
		return nil, err
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultPageSize
	}
	next := firstAfter(opts.After)
	return &subscription{
		s:      s,
		types:  slices.Clone(opts.Types),
		batch:  batch,
		next:   next,
		turn:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}, nil
}

// Next blocks until at least one event is available and returns up to
// BatchSize of them.
func (sub *subscription) Next(ctx context.Context) ([]eventstore.Event, error) {
	select {
	case sub.turn <- struct{}{}:
		defer func() { <-sub.turn }()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-sub.closed:
		return nil, eventstore.ErrClosed
	case <-sub.s.done:
		return nil, eventstore.ErrClosed
	}
	for {
		select {
		case <-sub.closed:
			return nil, eventstore.ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		evs, wake, err := sub.poll()
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		if wake == nil {
			continue // scanned maxScan filtered-out events; look further
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sub.closed:
			return nil, eventstore.ErrClosed
		case <-sub.s.done:
			return nil, eventstore.ErrClosed
		}
	}
}

// poll takes what is there. With nothing to deliver and the log read to
// its end, it returns the channel the next append closes.
func (sub *subscription) poll() ([]eventstore.Event, <-chan struct{}, error) {
	s := sub.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, eventstore.ErrClosed
	}
	var out []eventstore.Event
	scanned, size := 0, 0
	for sub.next < len(s.log) && len(out) < sub.batch && scanned < maxScan && size < eventstore.MaxPageBytes {
		r := &s.log[sub.next]
		sub.next++
		scanned++
		if len(sub.types) > 0 && !slices.Contains(sub.types, r.ev.Type) {
			continue
		}
		out = append(out, r.event())
		size += eventstore.PageBytes(&out[len(out)-1])
	}
	if len(out) > 0 || sub.next < len(s.log) {
		return out, nil, nil
	}
	return nil, s.wake, nil
}

// Close stops the subscription; a blocked Next returns ErrClosed.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}
