package projections

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what Once and Processed need: a transaction, a connection or
// a pool whose search_path reaches the runtime's schema.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Once records that consumer has handled the event and reports whether
// this is the first time. It is the idempotent-consumer guard of the
// processed_events table, for consumers whose effect lies outside the
// read-model database (a reaction that appends commands): call it inside
// the transaction that commits the consumer's checkpoint, act only when
// it returns true, and an event delivered twice changes nothing. If the
// transaction rolls back, the record goes with it and the event counts as
// unseen. Records are kept per consumer across rebuilds, so a replay of a
// reaction does not act again.
func Once(ctx context.Context, q Querier, consumer string, eventID uuid.UUID) (bool, error) {
	if consumer == "" {
		return false, fmt.Errorf("projections: Once needs a consumer name")
	}
	tag, err := q.Exec(ctx, `INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("projections: record event %s for %q: %w", eventID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Processed reports whether consumer has recorded the event with Once.
func Processed(ctx context.Context, q Querier, consumer string, eventID uuid.UUID) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)`, consumer, eventID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("projections: look up event %s for %q: %w", eventID, consumer, err)
	}
	return ok, nil
}
