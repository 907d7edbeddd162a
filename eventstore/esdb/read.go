package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brainhq/eventstream/eventstore"
)

// readPage is how many events one read asks the server for.
const readPage = 4096

// drain reads a read stream to its end.
func drain(rs *client.ReadStream, err error) ([]*client.RecordedEvent, error) {
	out, _, err := drainUpTo(rs, err, math.MaxInt)
	return out, err
}

// drainUpTo is drain that stops once the records it holds reach maxBytes
// of data and metadata (cut is then true; the read may have had more).
func drainUpTo(rs *client.ReadStream, err error, maxBytes int) (out []*client.RecordedEvent, cut bool, _ error) {
	if err != nil {
		return nil, false, err
	}
	defer rs.Close()
	size := 0
	for {
		if size >= maxBytes {
			return out, true, nil
		}
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, false, nil
		}
		if err != nil {
			var e *client.Error
			if errors.As(err, &e) && e.Code() == client.ErrorCodeResourceNotFound {
				return out, false, errNotFound
			}
			if errors.As(err, &e) && e.Code() == client.ErrorCodeStreamDeleted {
				return out, false, errTombstoned
			}
			return out, false, err
		}
		r := ev.OriginalEvent()
		size += len(r.Data) + len(r.UserMetadata)
		out = append(out, r)
	}
}

// errTombstoned is a read of a tombstoned stream: EventStoreDB answers
// stream deleted (a soft-deleted stream reads as not found).
var errTombstoned = fmt.Errorf("%w: %w: it is tombstoned", errNotFound, ErrDeleted)

// readStream reads up to count events of an EventStoreDB stream forwards
// from revision from. A stream without events is errNotFound; reading past
// the end of a stream that has events returns none.
func (s *Store) readStream(ctx context.Context, name string, from, count uint64) ([]*client.RecordedEvent, error) {
	return call(ctx, s, s.conn(), func(c *client.Client) ([]*client.RecordedEvent, error) {
		return drain(c.ReadStream(ctx, name, client.ReadStreamOptions{From: client.Revision(from)}, count))
	}, nil)
}

// lastEvent reads a stream's last event: last is its version (0: none
// the server returns), has whether the stream has had events: the server
// answers a read of it without "stream not found". A stream whose events
// its metadata all hides has had events (its next revision goes on from
// its last one), and its last is 0; one with metadata only, or none at
// all, or soft-deleted, has not. A tombstoned stream is errTombstoned.
func (s *Store) lastEvent(ctx context.Context, name string) (last int64, has bool, err error) {
	evs, err := call(ctx, s, s.conn(), func(c *client.Client) ([]*client.RecordedEvent, error) {
		return drain(c.ReadStream(ctx, name, client.ReadStreamOptions{Direction: client.Backwards, From: client.End{}}, 1))
	}, nil)
	switch {
	case errors.Is(err, errNotFound) && !errors.Is(err, ErrDeleted):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	case len(evs) == 0:
		return 0, true, nil
	}
	return int64(evs[0].EventNumber) + 1, true, nil
}

// ErrDeleted: EventStoreDB refused a read of or an append to the stream
// as deleted: the stream is tombstoned (hard-deleted), and can never be
// written again. A read of it is also eventstore.ErrStreamNotFound.
var ErrDeleted = errors.New("stream deleted in EventStoreDB")

// ErrTruncated: the server no longer returns the first events asked for
// from a stream. EventStoreDB hides a stream's first events from stream
// reads when its metadata says so ($tb truncate-before, $maxCount,
// $maxAge) and answers with the events it still has, as if they were all;
// an aggregate rebuilt from them would start at a later version.
var ErrTruncated = errors.New("stream truncated by its EventStoreDB metadata ($tb, $maxCount or $maxAge)")

// truncated reports that a stream read from revision rev got first as its
// first event: stream revisions are contiguous, so a later one means the
// events in between are hidden.
func truncated(stream string, rev, first uint64) error {
	return fmt.Errorf("esdb: read stream %q from version %d: %w: the first version the server still returns is %d", stream, rev+1, ErrTruncated, first+1)
}

// ReadStream returns the stream's events from version from on (limit <= 0:
// all of them), reading in pages of readPage. Events the server no longer
// returns (hidden by stream metadata: $tb, $maxCount, $maxAge) are
// ErrTruncated, not a shorter stream: the first event of each read must be
// at the revision asked for. A read from version 1 of a stream that exists
// but returns no event at all is ErrTruncated too. A read from a later
// version that finds nothing is the end of the stream, as EventStoreDB
// cannot tell it apart from a stream whose events are all hidden (an
// append at the version the caller holds then fails as a conflict).
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	parent := ctx
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := eventstore.CheckStreamID(stream); err != nil {
		return nil, err
	}
	name := s.streamName(stream)
	rev := uint64(max(from, 1) - 1)
	remaining := uint64(math.MaxUint64)
	if limit > 0 {
		remaining = uint64(limit)
	}
	var out []eventstore.Event
	for remaining > 0 {
		count := min(remaining, readPage)
		page, err := s.readStream(ctx, name, rev, count)
		if errors.Is(err, ErrDeleted) {
			return nil, fmt.Errorf("esdb: stream %q: %w (%w: it is tombstoned)", stream, eventstore.ErrStreamNotFound, ErrDeleted)
		}
		if errors.Is(err, errNotFound) {
			return nil, fmt.Errorf("esdb: stream %q: %w", stream, eventstore.ErrStreamNotFound)
		}
		if err != nil {
			return nil, s.fail(parent, fmt.Sprintf("read stream %q", stream), err)
		}
		switch {
		case len(page) > 0 && page[0].EventNumber != rev:
			return nil, truncated(stream, rev, page[0].EventNumber)
		case len(page) == 0 && rev == 0:
			// The server did not say "stream not found": the stream
			// has events, and none is returned.
			return nil, fmt.Errorf("esdb: read stream %q from version 1: %w: the server returns none of its events", stream, ErrTruncated)
		}
		for _, r := range page {
			e, ok, err := s.decode(r)
			if err == nil && !ok {
				err = fmt.Errorf("revision %d (type %q) is not an eventstream event", r.EventNumber, r.EventType)
			}
			if err != nil {
				return nil, fmt.Errorf("esdb: read stream %q: %w", stream, err)
			}
			out = append(out, e)
		}
		if uint64(len(page)) < count {
			break
		}
		remaining -= count
		rev += count
	}
	return out, nil
}

// after is the position just past an event, for a Page.Next that has no
// next event to point at yet: the event's commit position with its
// prepare position plus one. Every event EventStoreDB writes through gRPC
// has commit = prepare, and the server refuses a position whose prepare is
// above its commit ("The commit position cannot be less than the prepare
// position", the Position struct the server builds from a request). So a
// position with prepare above commit is never an event's: serverPosition
// turns it back into the event's own position, and the reader drops that
// event.
func after(p client.Position) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare + 1}
}

// serverPosition is where the server starts for a position of this store:
// Start, the position itself, or for a position made by after, the event
// it follows (the caller drops the events before p).
func serverPosition(p eventstore.Position) client.AllPosition {
	switch {
	case p.IsZero():
		return client.Start{}
	case p.Prepare > p.Commit:
		return client.Position{Commit: p.Commit, Prepare: p.Commit}
	}
	return client.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// errBadPosition marks a position EventStoreDB cannot read $all from.
var errBadPosition = errors.New("not a position of this EventStoreDB log")

// invalidPosition reports whether err is EventStoreDB's refusal of a $all
// position that is not at the start of a record ("Trying to read from an
// invalid position", RpcExceptions.InvalidPositionException;
// kurrent-io/KurrentDB#3963, #3991, #4128). Its gRPC status is Unknown in
// 23.10 and InvalidArgument from 24.x on (KurrentDB included).
func invalidPosition(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unknown, codes.InvalidArgument:
		return strings.Contains(st.Message(), "invalid position")
	}
	return false
}

// badPosition says that p cannot be read from: it points inside a record,
// so it was not made by this store on this log (a PostgreSQL position, a
// position of another EventStoreDB database).
func badPosition(p eventstore.Position, err error) error {
	return fmt.Errorf("esdb: $all position %v: %w (positions must come from this store: an event's position or Page.Next): %v", p, errBadPosition, err)
}

func position(r *client.RecordedEvent) eventstore.Position {
	return eventstore.Position{Commit: r.Position.Commit, Prepare: r.Position.Prepare}
}

// scanLimit is how many events one ReadAll page looks at, at most: a
// filtered page over a long stretch of events it leaves out stops there
// (End false), so that one call's time stays bounded.
const scanLimit = 16 * readPage

// ReadAll returns a page of $all from opts.From (inclusive). Events that
// are not part of the log are skipped, and Types and TenantID are applied
// here, so a page may need several reads; a page stops early (End false,
// maybe with fewer events than the limit, Next the first event it did not
// look at) once it has looked at opts.ScanLimit events of the log (those
// the filters leave out included; when > 0), or at scanLimit records of
// $all (the log's and the others: system events, other programs' and
// namespaces' events), whichever comes first. ScanLimit counts events of
// the log only, as the other backends do, so that a page that has used
// its budget still steps over the records that are not in the log after
// its last event: it ends at the next event of the log, or is End.
//
// A read asks for what the page still needs plus two (one more says the
// page is not the end of the log, and one more for the event a position
// made by after points at). While reads keep none of their events (a
// filter over a long stretch of other events), each asks for twice as
// many, up to readPage, so that a small Limit does not cost one round trip
// per Limit+2 events. With a ScanLimit, a read asks for no more than the
// events the budget has left plus two, plus as many as the records not in
// the log the page has stepped over so far (so that reads over a stretch
// of them still grow). The page is the same whatever the read sizes: it
// ends at the same event, and End is still only set by a read that came
// back short (the end of the log at read time).
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	parent := ctx
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return eventstore.Page{}, err
	}
	defer done()
	if err := eventstore.CheckFilter(opts.Types, opts.TenantID); err != nil {
		return eventstore.Page{}, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultPageSize
	}
	page := eventstore.Page{Next: opts.From}
	from := opts.From
	// scanned counts the records of $all looked at, looked the events of
	// the log among them, foreign the others.
	scanned, looked, pageBytes := 0, 0, 0
	size := plusTwo(limit)
	for {
		want := min(size, readPage)
		if left := opts.ScanLimit - looked; opts.ScanLimit > 0 && left < readPage {
			want = min(want, left+2+scanned-looked)
		}
		// A read holds at most about MaxPageBytes of records, whatever
		// their count: a page's worth, or the filter's look-ahead.
		type read struct {
			batch []*client.RecordedEvent
			cut   bool
		}
		r, err := call(ctx, s, s.conn(), func(c *client.Client) (read, error) {
			rs, err := c.ReadAll(ctx, client.ReadAllOptions{From: serverPosition(from)}, uint64(want))
			batch, cut, err := drainUpTo(rs, err, eventstore.MaxPageBytes)
			return read{batch, cut}, err
		}, nil)
		batch, cut := r.batch, r.cut
		if err != nil {
			if invalidPosition(err) {
				return eventstore.Page{}, badPosition(from, err)
			}
			return eventstore.Page{}, s.fail(parent, fmt.Sprintf("read $all from %v", from), err)
		}
		kept := false
		for _, r := range batch {
			if position(r).Compare(from) < 0 {
				continue
			}
			if len(page.Events) == limit || scanned == scanLimit || pageBytes >= eventstore.MaxPageBytes {
				// The next page starts at this event.
				page.Next = position(r)
				return page, nil
			}
			e, ok, err := s.decode(r)
			if (ok || err != nil) && opts.ScanLimit > 0 && looked == opts.ScanLimit {
				// An event of the log (or one that is not readable:
				// the next page says so) past the budget.
				page.Next = position(r)
				return page, nil
			}
			if err != nil {
				return eventstore.Page{}, fmt.Errorf("esdb: read $all: %w", err)
			}
			scanned++
			page.Next = after(r.Position)
			if ok {
				looked++
			}
			if ok && wanted(e, opts) {
				page.Events = append(page.Events, e)
				pageBytes += eventstore.PageBytes(&e)
				kept = true
			}
		}
		if len(batch) < want && !cut {
			page.End = true
			return page, nil
		}
		if pageBytes >= eventstore.MaxPageBytes {
			return page, nil // Next is after its last event
		}
		from = page.Next
		if kept {
			size = plusTwo(limit - len(page.Events))
		} else {
			size = want * 2
		}
	}
}

// plusTwo is n+2 without wrapping: a Limit of math.MaxInt asks for as
// many events as a read holds.
func plusTwo(n int) int {
	if n > math.MaxInt-2 {
		return math.MaxInt
	}
	return n + 2
}

func wanted(e eventstore.Event, opts eventstore.ReadAllOptions) bool {
	if len(opts.Types) > 0 && !slices.Contains(opts.Types, e.Type) {
		return false
	}
	return opts.TenantID == "" || e.Meta.TenantID == opts.TenantID
}

// Head is the position of the last event of the log: $all read backwards
// from its end, past system events and events not written by eventstream.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	parent := ctx
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return eventstore.Position{}, err
	}
	defer done()
	var from client.AllPosition = client.End{}
	for count := uint64(16); ; count = min(count*4, readPage) {
		batch, err := call(ctx, s, s.conn(), func(c *client.Client) ([]*client.RecordedEvent, error) {
			return drain(c.ReadAll(ctx, client.ReadAllOptions{Direction: client.Backwards, From: from}, count))
		}, nil)
		if err != nil {
			return eventstore.Position{}, s.fail(parent, "read the head of $all", err)
		}
		for _, r := range batch {
			if _, ok, err := s.decode(r); err != nil {
				return eventstore.Position{}, fmt.Errorf("esdb: read the head of $all: %w", err)
			} else if ok {
				return position(r), nil
			}
		}
		if uint64(len(batch)) < count {
			return eventstore.Start, nil
		}
		// Backwards, a position is exclusive: the read goes on before
		// the last event seen.
		from = batch[len(batch)-1].Position
	}
}
