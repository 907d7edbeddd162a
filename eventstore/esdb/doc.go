// Package esdb is the eventstore.Store backend on EventStoreDB / KurrentDB,
// through the official gRPC client (github.com/EventStore/EventStore-Client-Go/v4).
//
// What it promises, and where it differs from the PostgreSQL backend (the
// details are in docs/eventstoredb.md):
//
//   - Every append is validated by eventstore.Validator before anything is
//     sent; a refused append sends nothing.
//   - One stream version is one EventStoreDB revision: version n is
//     revision n-1. Expected versions map to expected revisions (Any → any,
//     NoStream and Exact(0) → no_stream, StreamExists → stream_exists,
//     Exact(n) → revision n-1). A wrong expected version is a
//     *eventstore.ConcurrencyError carrying the stream's actual version.
//     EventStoreDB's stream_exists also accepts a stream that has
//     metadata and no events, so StreamExists first checks that the
//     stream has events.
//   - Event ids are sent as EventStoreDB event ids, so a retried append is
//     acknowledged by the server without writing twice. The backend then
//     reads the acknowledged events back and compares their content: a
//     retry with the same ids but other content is an
//     *eventstore.DuplicateEventError, and so is a retry whose events are
//     stored in another order or with gaps (eventstore.SameLayout): the
//     server acknowledges those by id, or calls them a conflict when the
//     append's first id is not the one after its expected version, and
//     the backend tells them apart. EventStoreDB checks ids per stream
//     only: the same id appended to another stream is a new event there
//     (the PostgreSQL backend refuses it).
//   - The envelope's source, target and meta travel in the event metadata
//     as JSON; the payload is the event data, content type
//     application/json; the event type is the envelope's type.
//   - ReadStream checks that the server returns a stream from the version
//     asked for: a stream whose first events its EventStoreDB metadata
//     hides ($tb, $maxCount, $maxAge) is ErrTruncated, not a shorter
//     stream.
//   - A stream tombstoned in EventStoreDB reads as
//     eventstore.ErrStreamNotFound that is also ErrDeleted, and appends to
//     it are ErrDeleted. A soft-deleted one reads as ErrStreamNotFound, and
//     the next append recreates it with versions going on after the
//     deleted ones, as the server numbers them (ReadStream from version 1
//     is then ErrTruncated).
//   - Positions are $all commit/prepare positions. They are ordered but not
//     consecutive (Features.GaplessPositions is false).
//   - ReadAll pages over $all, skipping system events (types starting with
//     "$") and events not written by eventstream; Types and TenantID filter
//     in the client, because the client's ReadAll has no server-side
//     filter. Subscribe is a catch-up subscription to $all with a
//     server-side event-type filter.
//   - Appends larger than the server's MaxAppendSize (1 MiB by default on
//     EventStoreDB) are refused before sending, with a validation error
//     whose rule is "append-size"; set WithMaxAppendSize to the server's
//     value.
//
// Tests run against the in-process protocol stand-in in package esdbtest,
// and against a real server when EVENTSTORE_URL is set.
package esdb
