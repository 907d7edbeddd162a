package esdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brainhq/eventstream/eventstore"
)

// Append validates the events, appends them with the expected revision
// that matches expected, then reads them back: the read gives each event
// its position and timestamp, and tells a retry that EventStoreDB
// acknowledged by id alone from one whose content differs.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	res, _, err := s.appendEvents(ctx, stream, expected, false, events)
	return res, err
}

// AppendReporting is Append, and wrote is false for an idempotent retry,
// which wrote nothing (eventstore.WriteReporter).
//
// EventStoreDB answers a write and an idempotent retry with the same
// success message (a retry gets the original events' last revision and,
// from 21.10, their position; before, or while they are not yet
// replicated, no position), so the store reads the stream's last version
// before appending: a write stores its events after it, a retry found
// them at or before it. That read costs AppendReporting one more round
// trip than Append (none for StreamExists, which reads it anyway). Two
// appends of the same ids in flight at once may both report that they
// wrote; one of them was answered as a retry.
func (s *Store) AppendReporting(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (res eventstore.AppendResult, wrote bool, err error) {
	return s.appendEvents(ctx, stream, expected, true, events)
}

// appendEvents is Append; with report, it also tells whether it wrote
// (see AppendReporting), else wrote is true for every success.
func (s *Store) appendEvents(ctx context.Context, stream string, expected eventstore.ExpectedVersion, report bool, events []eventstore.Event) (_ eventstore.AppendResult, wrote bool, _ error) {
	parent := ctx
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	defer done()

	prepared, err := s.validator.Check(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if err := s.checkStream(stream); err != nil {
		return eventstore.AppendResult{}, false, err
	}
	data := make([]client.EventData, len(prepared))
	total := 0
	for i, p := range prepared {
		if data[i], err = encode(p); err != nil {
			return eventstore.AppendResult{}, false, fmt.Errorf("esdb: %w", err)
		}
		size := appendSize(data[i])
		if size > s.maxAppend {
			return eventstore.AppendResult{}, false, &eventstore.ValidationError{Index: i, Type: p.Type, SchemaVersion: p.Meta.SchemaVersion,
				Pointer: "/payload", Rule: "event-size",
				Message: fmt.Sprintf("event is %d bytes as EventStoreDB counts them; the server's maximum append size is %d", size, s.maxAppend)}
		}
		total += size
	}
	if total > s.maxAppend {
		return eventstore.AppendResult{}, false, &eventstore.ValidationError{Index: -1, Rule: "append-size",
			Message: fmt.Sprintf("%d events of %d bytes in all as EventStoreDB counts them; the server's maximum append size is %d", len(data), total, s.maxAppend)}
	}

	name := s.streamName(stream)
	// before is the stream's last version before the append (-1: not
	// read), which tells a write from a retry (see AppendReporting).
	before := int64(-1)
	if expected == eventstore.StreamExists {
		// EventStoreDB's stream_exists also holds for a stream that has
		// metadata and no events (IndexWriter.CheckCommit): check that the
		// stream has events first. A stream never loses its last
		// revision, so once it has events, stream_exists is exact.
		last, has, err := s.lastEvent(ctx, name)
		if errors.Is(err, ErrDeleted) {
			return eventstore.AppendResult{}, false, deleted(stream, err)
		}
		if err != nil {
			return eventstore.AppendResult{}, false, s.fail(parent, fmt.Sprintf("append to %q: read whether the stream exists", stream), err)
		}
		if !has {
			return eventstore.AppendResult{}, false, &eventstore.ConcurrencyError{Stream: stream, Expected: expected, Actual: 0}
		}
		before = last
	} else if report {
		// A failed read leaves before unknown: the append still goes,
		// and says what went wrong if the cluster is down; a success is
		// then reported as a write, as a store that cannot tell does.
		if last, _, err := s.lastEvent(ctx, name); err == nil {
			before = last
		}
	}
	ao := client.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}
	if !s.ownDeadline {
		// The client bounds an append by 10 s unless told otherwise,
		// whatever the caller's context allows: a large append to a
		// busy cluster would fail while its caller still waits. The
		// caller's context decides, as on every other backend (no
		// deadline: until it is cancelled or the store is closed).
		d := time.Duration(math.MaxInt64)
		if dl, ok := ctx.Deadline(); ok {
			d = max(time.Until(dl), time.Millisecond)
		}
		ao.Deadline = &d
	}
	res, err := call(ctx, s, s.conn(), func(c *client.Client) (*client.WriteResult, error) {
		return c.AppendToStream(ctx, name, ao, data...)
	}, nil)
	if err != nil {
		// A retry the server did not recognize may still be told apart
		// (see wrongExpectedVersion): it wrote nothing either way.
		out, err := s.appendError(parent, ctx, stream, expected, prepared, err)
		return out, false, err
	}
	n := uint64(len(prepared))
	if res.NextExpectedVersion+1 < n {
		// A write ends at revision n-1 or later; only an idempotent
		// acknowledgement can end before. With any or stream_exists the
		// server acknowledges an append whose ids are all stored in the
		// stream, wherever they are, and answers the revision of the
		// last id: ids stored in another order (a batch reversed, or
		// made of two earlier appends) can answer one too low to hold
		// the batch. That append is not a retry of any append: as when
		// the read-back below finds other events, it reuses stored ids
		// (storetest's Differential case).
		return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{ID: prepared[0].ID.String(), Stream: stream}
	}
	first := res.NextExpectedVersion + 1 - n
	stored, err := s.readStream(ctx, name, first, n)
	if err == nil && uint64(len(stored)) != n {
		err = fmt.Errorf("read back %d of %d events", len(stored), n)
	}
	if err != nil {
		// The append itself succeeded: retrying it with the same ids is
		// safe, EventStoreDB acknowledges it without writing twice.
		return eventstore.AppendResult{}, false, s.fail(parent, fmt.Sprintf("append to %q succeeded but reading it back failed", stream), err)
	}
	out := eventstore.AppendResult{Stream: stream, Events: make([]eventstore.Event, n)}
	for i, r := range stored {
		e, ok, err := s.decode(r)
		p := prepared[i]
		if err == nil && !ok {
			err = fmt.Errorf("revision %d is not an eventstream event", r.EventNumber)
		}
		if err != nil {
			return eventstore.AppendResult{}, false, fmt.Errorf("esdb: append to %q: %w", stream, err)
		}
		// EventStoreDB acknowledged an append whose ids it already held
		// (an idempotent retry) without looking at the content. Same
		// ids, other content is not a retry.
		if e.ID != p.ID || !eventstore.SameContent(e, p) {
			return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{ID: p.ID.String(), Stream: stream}
		}
		out.Events[i] = e
	}
	// A write stores its events after the stream's last version; a retry
	// found them there already. Hidden events (a soft-deleted or
	// truncated stream) read as no version, and so do the events a write
	// recreating the stream goes on after.
	return out, before < 0 || out.Events[0].Version > before, nil
}

// expectedRevision maps a stream version (from 1) to EventStoreDB's
// expected revision (from 0).
func expectedRevision(e eventstore.ExpectedVersion) client.ExpectedRevision {
	switch {
	case e == eventstore.Any:
		return client.Any{}
	case e == eventstore.StreamExists:
		return client.StreamExists{}
	case e == eventstore.NoStream || e == eventstore.Exact(0):
		return client.NoStream{}
	}
	return client.Revision(uint64(e) - 1)
}

// The client reports a wrong expected version as text only:
// "wrong expected version: expecting '…' but got '…'", where the current
// revision is a number or no_stream.
var currentRevision = regexp.MustCompile(`but got '([^']*)'`)

func (s *Store) appendError(parent, ctx context.Context, stream string, expected eventstore.ExpectedVersion, prepared []eventstore.Prepared, err error) (eventstore.AppendResult, error) {
	var e *client.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case client.ErrorCodeWrongExpectedVersion:
			actual, perr := s.actualVersion(ctx, stream, e)
			if perr != nil {
				return eventstore.AppendResult{}, s.fail(parent, fmt.Sprintf("append to %q: wrong expected version, and the actual version could not be read", stream), perr)
			}
			return s.wrongExpectedVersion(ctx, stream, expected, actual, prepared)
		case client.ErrorCodeStreamDeleted:
			return eventstore.AppendResult{}, deleted(stream, err)
		}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "Maximum Append Size") {
		return eventstore.AppendResult{}, &eventstore.ValidationError{Index: -1, Rule: "append-size",
			Message: fmt.Sprintf("refused by the server: %s (set WithMaxAppendSize to the server's limit to refuse it before sending)", st.Message())}
	}
	return eventstore.AppendResult{}, s.fail(parent, fmt.Sprintf("append to %q", stream), err)
}

// deleted is an append EventStoreDB refuses as stream deleted: the stream
// is tombstoned, whatever the expected version (or, if it was soft-deleted
// after the backend read that it has events, stream_exists on it).
func deleted(stream string, err error) error {
	if errors.Is(err, ErrDeleted) { // the backend's own read said so
		return fmt.Errorf("esdb: append to %q: %w: it is tombstoned, and can never be written again", stream, ErrDeleted)
	}
	return fmt.Errorf("esdb: append to %q: %w (a tombstoned stream can never be written again): %v", stream, ErrDeleted, err)
}

// actualVersion is the stream's version named in a wrong-expected-version
// answer, or, if the text cannot be read, the version read from the
// stream.
func (s *Store) actualVersion(ctx context.Context, stream string, e *client.Error) (int64, error) {
	if m := currentRevision.FindStringSubmatch(e.Error()); m != nil {
		if m[1] == "no_stream" {
			return 0, nil
		}
		if r, err := strconv.ParseInt(m[1], 10, 64); err == nil && r >= 0 {
			return r + 1, nil
		}
	}
	last, _, err := s.lastEvent(ctx, s.streamName(stream))
	if errors.Is(err, errNotFound) {
		return 0, nil // tombstoned: no events
	}
	return last, err
}

// wrongExpectedVersion tells the two reasons EventStoreDB answers "wrong
// expected version" apart. It follows the server's commit check
// (IndexWriter.CheckCommit): an append whose first event id is stored at
// the place the append expected, but whose other ids are not all stored,
// is "corrupted idempotency", which the server also reports as wrong
// expected version. For eventstream that append reuses a stored id with
// other content: ErrDuplicateEvent. So does an append whose ids are stored
// right after the expected version but in another order (a retry of [a, b]
// sent as [b, a]): the server compares the first id only and calls it a
// conflict, but the append can never be written (eventstore.SameLayout).
//
// One retry the server does not recognize is a retry still: that of an
// append that recreated a soft-deleted stream with no stream expected.
// The server compares its ids with the deleted events, from revision 0,
// while it stored them after those, where the stream now starts; the
// original result is returned (and the same ids stored there in another
// order are ErrDuplicateEvent).
//
// Every other case is a true conflict.
func (s *Store) wrongExpectedVersion(ctx context.Context, stream string, expected eventstore.ExpectedVersion, actual int64, prepared []eventstore.Prepared) (eventstore.AppendResult, error) {
	conflict := &eventstore.ConcurrencyError{Stream: stream, Expected: expected, Actual: actual}
	duplicate := &eventstore.DuplicateEventError{ID: prepared[0].ID.String(), Stream: stream}
	switch expected {
	case eventstore.Any:
		// any fails only when the first id is stored in this stream and
		// a later one is not.
		return eventstore.AppendResult{}, duplicate
	case eventstore.StreamExists:
		if actual == 0 {
			return eventstore.AppendResult{}, conflict
		}
		return eventstore.AppendResult{}, duplicate
	}
	v := int64(expected)
	if expected == eventstore.NoStream {
		v = 0
	}
	if v >= actual {
		return eventstore.AppendResult{}, conflict
	}
	// The server compared the event after the expected version with our
	// first event; the events where the append would have gone tell a
	// reordered retry from a conflict. Only those: a stream whose first
	// events are hidden (stream metadata, or a soft-deleted stream
	// recreated) is read from the first event the server still returns,
	// at a later version.
	evs, err := s.readStream(ctx, s.streamName(stream), uint64(v), uint64(len(prepared)))
	if err != nil {
		return eventstore.AppendResult{}, conflict
	}
	if v == 0 && len(evs) > 0 && evs[0].EventNumber > uint64(v) {
		if res, err, ok := s.recreated(stream, evs, prepared); ok {
			return res, err
		}
	}
	for _, e := range evs {
		if e.EventNumber >= uint64(v)+uint64(len(prepared)) {
			break
		}
		for _, p := range prepared {
			if e.EventID == p.ID {
				return eventstore.AppendResult{}, duplicate
			}
		}
	}
	return eventstore.AppendResult{}, conflict
}

// recreated decides an append expecting no stream that the server
// answered with wrong expected version, given the first events the
// stream returns, which start after hidden ones: if they are the
// append's events, in its order, it is a retry of the append that
// recreated the soft-deleted stream (ok, and its original result, or
// ErrDuplicateEvent if their content differs); if they hold some of its
// ids otherwise, ErrDuplicateEvent; else not ok.
func (s *Store) recreated(stream string, evs []*client.RecordedEvent, prepared []eventstore.Prepared) (eventstore.AppendResult, error, bool) {
	duplicate := &eventstore.DuplicateEventError{ID: prepared[0].ID.String(), Stream: stream}
	same := len(evs) == len(prepared)
	found := false
	for i, r := range evs {
		if i < len(prepared) && r.EventID != prepared[i].ID || r.EventNumber != evs[0].EventNumber+uint64(i) {
			same = false
		}
		for _, p := range prepared {
			found = found || r.EventID == p.ID
		}
	}
	if !same {
		return eventstore.AppendResult{}, duplicate, found
	}
	out := eventstore.AppendResult{Stream: stream, Events: make([]eventstore.Event, len(evs))}
	for i, r := range evs {
		e, ok, err := s.decode(r)
		if err != nil || !ok || !eventstore.SameContent(e, prepared[i]) {
			return eventstore.AppendResult{}, duplicate, true
		}
		out.Events[i] = e
	}
	return out, nil, true
}
