package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.WriteReporter = (*Store)(nil)
)

// Store is the in-memory event log. It is safe for concurrent use.
type Store struct {
	v *eventstore.Validator

	mu      sync.RWMutex
	log     []record         // log[i] has position Pos(i+1)
	streams map[string][]int // stream -> indexes into log, in version order
	byID    map[uuid.UUID]int
	wake    chan struct{} // closed and replaced on every append
	closed  bool
	done    chan struct{} // closed by Close
}

// record is a stored event. Meta is kept encoded so that every read hands
// out a fresh Extra map, as a database read would.
type record struct {
	ev       eventstore.Event // Meta.Extra is nil; see metaJSON
	metaJSON []byte
	hasExtra bool
}

// New returns an empty store that validates against reg.
func New(reg *schemas.Registry) (*Store, error) {
	v, err := eventstore.NewValidator(reg)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return &Store{
		v:       v,
		streams: map[string][]int{},
		byID:    map[uuid.UUID]int{},
		wake:    make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Features: positions are one gapless counter; ReadAll filters by tenant.
func (s *Store) Features() eventstore.Features {
	return eventstore.Features{GaplessPositions: true, TenantFilter: true}
}

// Append validates events, then appends them to stream if its version
// satisfies expected. See eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	res, _, err := s.AppendReporting(ctx, stream, expected, events...)
	return res, err
}

// AppendReporting is Append, and wrote is false for an idempotent retry,
// which wrote nothing (eventstore.WriteReporter).
func (s *Store) AppendReporting(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, bool, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if s.isClosed() {
		return eventstore.AppendResult{}, false, eventstore.ErrClosed
	}
	// Validation is the costly part and needs no lock.
	prepared, err := s.v.Check(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, false, eventstore.ErrClosed
	}
	if res, retry, err := s.retried(stream, prepared); retry || err != nil {
		return res, false, err
	}
	current := int64(len(s.streams[stream]))
	if !expected.Satisfied(current) {
		return eventstore.AppendResult{}, false, &eventstore.ConcurrencyError{Stream: stream, Expected: expected, Actual: current}
	}
	// PostgreSQL keeps microseconds; so does this store, so that a test
	// written against one passes against the other.
	now := time.Now().UTC().Truncate(time.Microsecond)
	res := eventstore.AppendResult{Stream: stream, Events: make([]eventstore.Event, len(prepared))}
	for i, p := range prepared {
		ev := p.Event
		ev.Stream = stream
		ev.Version = current + int64(i) + 1
		ev.Position = eventstore.Pos(uint64(len(s.log)) + 1)
		ev.Timestamp = now
		ev.Payload = bytes.Clone(p.Payload)
		hasExtra := len(ev.Meta.Extra) > 0
		ev.Meta.Extra = nil
		idx := len(s.log)
		s.log = append(s.log, record{ev: ev, metaJSON: p.MetaJSON, hasExtra: hasExtra})
		s.streams[stream] = append(s.streams[stream], idx)
		s.byID[ev.ID] = idx
		res.Events[i] = s.log[idx].event()
	}
	close(s.wake)
	s.wake = make(chan struct{})
	return res, true, nil
}

// retried reports whether the batch is a retry of stored events (every id
// stored, with the same content, laid out as the batch: see
// eventstore.SameLayout) and returns their stored form. Some ids stored but
// not all, any with other content, or all stored in another order or with
// gaps, is ErrDuplicateEvent.
func (s *Store) retried(stream string, prepared []eventstore.Prepared) (eventstore.AppendResult, bool, error) {
	found := 0
	var first *record
	for _, p := range prepared {
		idx, ok := s.byID[p.ID]
		if !ok {
			continue
		}
		found++
		r := &s.log[idx]
		if first == nil {
			first = r
		}
		if !eventstore.SameStoredContent(r.ev, r.metaJSON, p) {
			return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{ID: p.ID.String(), Stream: r.ev.Stream}
		}
	}
	if found == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	if found < len(prepared) {
		return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{ID: first.ev.ID.String(), Stream: first.ev.Stream}
	}
	res := eventstore.AppendResult{Stream: stream, Events: make([]eventstore.Event, len(prepared))}
	for i, p := range prepared {
		res.Events[i] = s.log[s.byID[p.ID]].event()
	}
	if !eventstore.SameLayout(res.Events) {
		return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{ID: first.ev.ID.String(), Stream: first.ev.Stream}
	}
	return res, true, nil
}

// event returns a copy of the stored event that the caller may change.
func (r *record) event() eventstore.Event {
	ev := r.ev
	ev.Payload = bytes.Clone(r.ev.Payload)
	if r.hasExtra {
		var m eventstore.Meta
		if err := json.Unmarshal(r.metaJSON, &m); err == nil {
			ev.Meta.Extra = m.Extra
		}
	}
	return ev
}

// ReadStream returns up to limit events of stream from version from.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	// An id no append can have is refused as the other backends refuse
	// it, not reported as a stream without events.
	if err := eventstore.CheckStreamID(stream); err != nil {
		return nil, err
	}
	idxs, ok := s.streams[stream]
	if !ok {
		return nil, fmt.Errorf("memory: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	}
	start := max(from, 1) - 1
	if start >= int64(len(idxs)) {
		return []eventstore.Event{}, nil
	}
	idxs = idxs[start:]
	if limit > 0 && limit < len(idxs) {
		idxs = idxs[:limit]
	}
	out := make([]eventstore.Event, len(idxs))
	for i, idx := range idxs {
		out[i] = s.log[idx].event()
	}
	return out, nil
}

// ReadAll returns one page of the log from opts.From (inclusive).
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Page{}, err
	}
	// Closed first, as the other backends do: a read of a closed store is
	// ErrClosed whatever it asks for, not a ValidationError.
	if s.isClosed() {
		return eventstore.Page{}, eventstore.ErrClosed
	}
	if err := eventstore.CheckFilter(opts.Types, opts.TenantID); err != nil {
		return eventstore.Page{}, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultPageSize
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.Page{}, eventstore.ErrClosed
	}
	i := firstAtOrAfter(opts.From)
	stop := len(s.log) // past the last event the page may look at
	if opts.ScanLimit > 0 && i < len(s.log) && len(s.log)-i > opts.ScanLimit {
		stop = i + opts.ScanLimit
	}
	out := []eventstore.Event{}
	size := 0
	for ; i < stop && len(out) < limit && size < eventstore.MaxPageBytes; i++ {
		r := &s.log[i]
		if opts.TenantID != "" && r.ev.Meta.TenantID != opts.TenantID {
			continue
		}
		if len(opts.Types) > 0 && !slices.Contains(opts.Types, r.ev.Type) {
			continue
		}
		out = append(out, r.event())
		size += eventstore.PageBytes(&out[len(out)-1])
	}
	next := eventstore.Pos(uint64(i) + 1)
	if next.Compare(opts.From) < 0 {
		next = opts.From // From was past any index the log can reach
	}
	return eventstore.Page{Events: out, Next: next, End: i >= len(s.log)}, nil
}

// firstAtOrAfter is the index of the first event whose position is >= p.
func firstAtOrAfter(p eventstore.Position) int {
	if p.Commit == 0 {
		return 0
	}
	if eventstore.Pos(p.Commit).Compare(p) >= 0 {
		return logIndex(p.Commit - 1)
	}
	return logIndex(p.Commit)
}

// firstAfter is the index of the first event whose position is > p.
func firstAfter(p eventstore.Position) int {
	if p.Commit > 0 && eventstore.Pos(p.Commit).Compare(p) > 0 {
		return logIndex(p.Commit - 1)
	}
	return logIndex(p.Commit)
}

// logIndex is i as an index of the log; one beyond any int is past every
// event the log can hold (it must not wrap to a negative index).
func logIndex(i uint64) int {
	return int(min(i, math.MaxInt))
}

// Head returns the position of the last event.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Position{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.Position{}, eventstore.ErrClosed
	}
	return eventstore.Pos(uint64(len(s.log))), nil
}

// Close ends every subscription; later calls fail with ErrClosed. Closing
// twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}
