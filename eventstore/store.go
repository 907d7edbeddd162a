package eventstore

import (
	"context"
	"encoding/json"
)

// Store is an append-only event log. Every method takes a context first and
// returns when it is done or when the context ends.
//
// Append validates every event (Validator.Check) before anything is
// written: a refused batch writes nothing. Appends are atomic per call. An
// event whose ID is already stored with the same content makes the append
// return the original result and write nothing (so a retried append is
// idempotent); the same ID with different content is ErrDuplicateEvent.
// A retry must send its events as they are stored: all of them stored,
// in this stream, at consecutive versions in the order sent (SameLayout).
// A part of a stored append sent so is a retry of that part. Stored events
// in another order or with a gap between them, or stored events sent with
// new ones, are ErrDuplicateEvent and write nothing.
//
// Reads never skip an event: an event that becomes visible later never has a
// position lower than one a reader has already been given.
type Store interface {
	// Append appends events to one stream if its version satisfies expected.
	// Errors: *ValidationError (ErrValidation), *ConcurrencyError
	// (ErrConcurrency), *DuplicateEventError (ErrDuplicateEvent).
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...Event) (AppendResult, error)

	// ReadStream returns up to limit events of one stream whose version is
	// >= from, in version order (limit <= 0: all). A stream with no events
	// is ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, from int64, limit int) ([]Event, error)

	// ReadAll returns one page of the whole log, in position order. A
	// filter no stored event can match (CheckFilter: a type that is not a
	// type name, a tenant id that is not UTF-8 or holds a NUL) is a
	// *ValidationError.
	ReadAll(ctx context.Context, opts ReadAllOptions) (Page, error)

	// Subscribe delivers the whole log after opts.After: first what is
	// stored (catch-up), then new events as they commit (live). Types
	// are checked as ReadAll's are.
	Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error)

	// Head returns the position of the last event in the log (Start if the
	// log is empty).
	Head(ctx context.Context) (Position, error)

	// Features declares what the backend supports; the conformance suite
	// skips what a backend lacks.
	Features() Features

	// Close releases the store's resources. Calls after Close fail with
	// ErrClosed.
	Close() error
}

// WriteReporter is a Store whose appends also tell whether they wrote
// their events or were an idempotent retry, which wrote nothing and
// returned the original result (see Store). A server's metrics use it to
// count written events apart from retries; a Store without it has its
// successful appends counted as writes.
type WriteReporter interface {
	// AppendReporting is Append, and wrote reports whether it wrote res's
	// events: false for an idempotent retry, and for every error.
	AppendReporting(ctx context.Context, stream string, expected ExpectedVersion, events ...Event) (res AppendResult, wrote bool, err error)
}

// ReadAllOptions selects a page of the whole log.
type ReadAllOptions struct {
	// From is the first position to return (inclusive). Start reads from
	// the beginning. Use Page.Next to continue.
	From Position
	// Limit is the page size; <= 0 means DefaultPageSize. A page also
	// stops at MaxPageBytes.
	Limit int
	// Types, when set, keeps only events of these types.
	Types []string
	// TenantID, when set, keeps only events of this tenant.
	TenantID string
	// ScanLimit, when > 0, bounds how many events of the log the page
	// looks at, those the filters leave out included. A filtered page
	// over a long stretch of events it leaves out then ends early: not
	// End, with fewer events than Limit or none, and Next the first event
	// it did not look at, so that the next page goes on from there. 0
	// looks as far as it takes to fill the page: the whole log, when few
	// events match. Every backend honours it; the EventStoreDB backend
	// counts the events of this log it looks at, not the other records of
	// $all (system events, other namespaces), which it steps over, and
	// bounds every page's scan of those on its own (End false, as here).
	ScanLimit int
}

// DefaultPageSize is the page size of ReadAll when none is given.
const DefaultPageSize = 1000

// MaxPageBytes bounds the bytes of payload and meta that one ReadAll page
// or one Subscription.Next returns, whatever its Limit or BatchSize: the
// page ends with the event that brings it to MaxPageBytes, so it always
// holds at least one event and the next page makes progress. Without it a
// page of DefaultPageSize events near MaxEventBytes would be a gigabyte.
// A page cut short is not End. The count is approximate: PostgreSQL
// counts the payload and meta columns' size as stored, or as text when it
// compressed them; the other backends count PageBytes.
const MaxPageBytes = 16 << 20

// PageBytes is what an event counts towards MaxPageBytes in the backends
// that do not count stored sizes: its payload and the meta's values.
func PageBytes(e *Event) int {
	n := len(e.Payload) + len(e.Meta.Producer) + len(e.Meta.TenantID) + len(e.Meta.CorrelationID) + len(e.Meta.CausationID)
	if len(e.Meta.Extra) > 0 {
		if b, err := json.Marshal(e.Meta.Extra); err == nil {
			n += len(b)
		}
	}
	return n
}

// Page is a slice of the whole log.
type Page struct {
	Events []Event
	// Next is the From of the following page.
	Next Position
	// End is true when the page reached the head of the log at read time.
	// A page cut short by Limit or MaxPageBytes is not End. A page of
	// exactly Limit events that ends at the head may be either: the
	// memory and EventStoreDB stores look one event further and say End,
	// PostgreSQL does not look and says not End, and the page after it is
	// then empty and End. A paging loop that stops at End is right with
	// both.
	End bool
}

// SubscribeOptions says where a subscription starts and what it delivers.
type SubscribeOptions struct {
	// After is exclusive: the subscription delivers events whose position
	// is greater. Start delivers the whole log.
	After Position
	// Types, when set, keeps only events of these types (filtered by the
	// backend, not the client, where the backend can).
	Types []string
	// BatchSize bounds how many events one Next returns; <= 0 means
	// DefaultPageSize. It also bounds what the subscription buffers. One
	// Next also stops at MaxPageBytes.
	BatchSize int
}

// Subscription delivers events in position order, each once.
type Subscription interface {
	// Next blocks until at least one event is available and returns up to
	// BatchSize of them. It returns ctx.Err() when ctx ends and ErrClosed
	// after Close. Any other error (the database is unreachable) is
	// transient: the subscription keeps its place, and calling Next again
	// resumes after the last event it returned.
	Next(ctx context.Context) ([]Event, error)
	// Close stops the subscription and releases what it holds.
	Close() error
}

// Features are the optional capabilities of a backend.
type Features struct {
	// GaplessPositions: positions are consecutive integers (PostgreSQL).
	GaplessPositions bool
	// TenantFilter: ReadAll filters by tenant on the server.
	TenantFilter bool
	// Persistent: data survives a new Store on the same location.
	Persistent bool
	// PerStreamIDs: event ids are unique per stream only, so the same id
	// appended to another stream is a new event there (EventStoreDB
	// checks ids per stream). Without it an id is unique in the whole log
	// and reusing it in another stream is ErrDuplicateEvent.
	PerStreamIDs bool
}
