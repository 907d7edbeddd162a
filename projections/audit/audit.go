// Package audit is the audit-log read model: every event of every type,
// as stored, one row each in audit_events, queryable by type, stream,
// tenant, correlation id and time range, with the payload and meta kept
// as jsonb.
package audit

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"

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
		Name:       Name,
		AllTypes:   true,
		Raw:        true,
		Migrations: sub,
		Handler:    projections.HandlerFunc(handle),
		Rewind:     rewind,
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
		meta, err := encodeMeta(e.Meta)
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

// encodeMeta writes the meta as a JSON object. It is what
// eventstore.Meta.MarshalJSON writes (jsonb does not keep key order), at
// a fraction of the cost for the usual meta without free-form keys: the
// audit log encodes one per event, and MarshalJSON (a map through
// encoding/json) costs the catch-up about 1.5 µs of client CPU per event.
// It copies eventstore's own encoder and list of named keys, which are
// unexported; TestEncodeMetaMatchesMarshalJSON keeps the two in step until
// eventstore exports an append-style encoder to use instead.
func encodeMeta(m eventstore.Meta) ([]byte, error) {
	b := make([]byte, 0, 160)
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	b = appendField(b, "tenant_id", m.TenantID, true)
	b = appendField(b, "producer", m.Producer, false)
	b = appendField(b, "correlation_id", m.CorrelationID, false)
	b = appendField(b, "causation_id", m.CausationID, false)
	// Map order is fine: jsonb neither keeps key order nor compares by it.
	for k, x := range m.Extra {
		switch k {
		case "schema_version", "tenant_id", "producer", "correlation_id", "causation_id":
			continue
		}
		v, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		b = appendString(append(b, ','), k)
		b = append(append(b, ':'), v...)
	}
	return append(b, '}'), nil
}

func appendField(b []byte, key, value string, always bool) []byte {
	if value == "" && !always {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendString appends s as a JSON string. Envelope strings are valid
// UTF-8 without NUL (the store refuses others), so only quotes,
// backslashes and control characters need escaping.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
