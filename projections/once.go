package projections

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// Querier is what Once and Processed need: a transaction, a connection or
// a pool whose search_path reaches the runtime's schema.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// OnceEvent records that consumer has handled the event and reports
// whether this is the first time. It is the idempotent-consumer guard of
// the processed_events table, for consumers whose effect lies outside the
// read-model database (a reaction that appends commands): call it inside
// the transaction that commits the consumer's checkpoint, act only when
// it returns true, and an event delivered twice changes nothing. If the
// transaction rolls back, the record goes with it and the event counts as
// unseen. Records are kept per consumer across rebuilds, so a replay of a
// reaction does not act again.
//
// The event is named by its id, stream and stream version: on
// EventStoreDB two streams may hold events with one id, and each is acted
// on once. A record of the id alone (made by Once, or before runtime
// migration 3) counts for every event with that id.
func OnceEvent(ctx context.Context, q Querier, consumer string, e eventstore.Event) (bool, error) {
	if consumer == "" {
		return false, fmt.Errorf("projections: OnceEvent needs a consumer name")
	}
	tag, err := q.Exec(ctx, `INSERT INTO processed_events (consumer, event_id, stream, stream_version)
		SELECT $1, $2, $3, $4 WHERE NOT EXISTS (
			SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2 AND stream = '' AND stream_version = 0)
		ON CONFLICT DO NOTHING`, consumer, e.ID, e.Stream, e.Version)
	if err != nil {
		return false, fmt.Errorf("projections: record event %s (%s@%d) for %q: %w", e.ID, e.Stream, e.Version, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Once is OnceEvent for an event named by its id alone: it reports
// whether consumer has recorded no event with that id yet, and records
// the id, which then counts for every event with it. That is exact where
// an id is unique in the log (PostgreSQL); on EventStoreDB, where two
// streams may hold events with one id, the second would be skipped: use
// OnceEvent.
func Once(ctx context.Context, q Querier, consumer string, eventID uuid.UUID) (bool, error) {
	if consumer == "" {
		return false, fmt.Errorf("projections: Once needs a consumer name")
	}
	tag, err := q.Exec(ctx, `INSERT INTO processed_events (consumer, event_id)
		SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)
		ON CONFLICT DO NOTHING`, consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("projections: record event %s for %q: %w", eventID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ProcessedEvent reports whether consumer has recorded the event with
// OnceEvent, or its id with Once.
func ProcessedEvent(ctx context.Context, q Querier, consumer string, e eventstore.Event) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2
		AND (stream, stream_version) IN (($3, $4), ('', 0)))`, consumer, e.ID, e.Stream, e.Version).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("projections: look up event %s (%s@%d) for %q: %w", e.ID, e.Stream, e.Version, consumer, err)
	}
	return ok, nil
}

// Processed reports whether consumer has recorded an event with this id,
// with Once or OnceEvent (on EventStoreDB, any of the events with the id:
// use ProcessedEvent).
func Processed(ctx context.Context, q Querier, consumer string, eventID uuid.UUID) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)`, consumer, eventID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("projections: look up event %s for %q: %w", eventID, consumer, err)
	}
	return ok, nil
}
