// Package audit is the audit-log read model: every event of every type,
// as stored, one row each in audit_events, queryable by type, stream,
// tenant, correlation id and time range, with the payload and meta kept
// as jsonb.
package audit

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// Name is the projection's name.
const Name = "audit"

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Projection returns the audit projection.
func Projection() projections.Projection {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return projections.Projection{
		Name:     Name,
		AllTypes: true,
		Raw:      true,
		// The handler only inserts (COPY): a rebuild makes the secondary
		// indexes after loading.
		DeferIndexes: true,
		Migrations:   sub,
		Handler:      projections.HandlerFunc(handle),
		Rewind:       rewind,
	}
}

var columns = []string{
	"position", "prepare_position", "event_id", "type", "stream", "version", "source", "target",
	"tenant_id", "correlation_id", "causation_id", "producer", "schema_version", "occurred_at", "payload", "meta",
}

// handle copies the batch into audit_events with one COPY. The event id
// goes as a pgtype.UUID: pgx would encode a uuid.UUID through its
// driver.Valuer, after a failed attempt, at several times the cost.
func handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	rows := make([][]any, len(events))
	for i, e := range events {
		meta, err := eventstore.AppendMeta(make([]byte, 0, 160), e.Meta)
		if err != nil {
			return projections.Permanent(fmt.Errorf("audit: encode the meta of %s: %w", e.ID, err))
		}
		rows[i] = []any{
			int64(e.Position.Commit), int64(e.Position.Prepare), pgtype.UUID{Bytes: e.ID, Valid: true}, e.Type, e.Stream, e.Version, e.Source, nullable(e.Target),
			e.Meta.TenantID, nullable(e.Meta.CorrelationID), nullable(e.Meta.CausationID), nullable(e.Meta.Producer),
			e.Meta.SchemaVersion, e.Timestamp, []byte(e.Payload), meta,
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, columns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("audit: copy %d events: %w", len(events), err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func rewind(ctx context.Context, tx pgx.Tx, after eventstore.Position) error {
	_, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE (position, prepare_position) > ($1, $2)`,
		int64(after.Commit), int64(after.Prepare))
	return err
}
