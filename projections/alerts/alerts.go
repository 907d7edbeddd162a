// Package alerts is the security-alert read model: every
// ir.approval_invalid (v1 and v2) and ir.dag_diff_failed event becomes,
// or counts towards, a row of security_alerts keyed by tenant, alert type,
// source (the approval or the IR concerned) and reason, with a severity
// (critical for DAG tampering and for an approval presented by another
// tenant, high for a requester granting its own request or an approval
// presented for another mission), when it was first and last seen, and
// how often.
//
// It shows what the governance module recorded: an event is an alert only
// in the stream the module records it in, the stream of the approval or
// IR its payload names (approval-<approval_id>, ir-<ir_id>; see
// Alert.Stream), which the API lets no one else append to. The same types
// appended raw anywhere else (a tenant's own stream, another approval's or
// IR's) raise no alert and are not parked; the audit log records them, as
// every event.
package alerts

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// Name is the projection's name.
const Name = "alerts"

// The event types the projection turns into alerts.
const (
	ApprovalInvalid = "ir.approval_invalid"
	DAGDiffFailed   = "ir.dag_diff_failed"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Projection returns the security-alert projection.
func Projection() projections.Projection {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return projections.Projection{
		Name: Name,
		// ir.approval_invalid v2 only adds reasons, which Classify reads
		// the same way in either version: a v1 event is applied as stored
		// when the runtime has no upcaster, and as v2 when it has one.
		Handles: append(projections.Types(1, DAGDiffFailed),
			projections.EventType{Type: ApprovalInvalid, Versions: []int{1, 2}}),
		Migrations: sub,
		Handler:    projections.HandlerFunc(handle),
	}
}

// Severity of a refused approval, by reason: a token presented for
// another tenant is an attack across tenants; a wrong or replayed token
// is an attack on one approval; an unknown approval is most often a
// stale link.
//
// The four-eyes reasons (v2) come from a holder of the right token. A
// requester who tries to grant its own request (self_approval) is
// deliberately getting round the control: high, as an attack on one
// approval. An approver who names no one (approver_unnamed) is most often
// a client that does not pass its user's name, which a security team
// still wants to hear about, but is not evidence of intent: medium.
//
// mission_mismatch (v2) also comes from a holder of the right token, who
// names another mission than the one the approval was created for: using
// an approval granted for one mission to authorise another is getting
// round the control, as self_approval is: high, an attack on one approval
// (not critical: it stays within the approval's tenant).
var approvalSeverity = map[string]string{
	"tenant_mismatch":  "critical",
	"token_mismatch":   "high",
	"already_consumed": "high",
	"self_approval":    "high",
	"mission_mismatch": "high",
	"unknown_approval": "medium",
	"approver_unnamed": "medium",
}

// Alert is what one event contributes to security_alerts.
type Alert struct {
	Type     string // approval_invalid or dag_tampering
	Source   string // approval:<id> or ir:<id>
	Reason   string
	Severity string
	IRID     string
	// Stream is the stream the governance module records the event in:
	// that of the approval or IR the payload names, as the module's
	// repository names it (aggregates.StreamPrefix of the aggregate's
	// name, then its id; analytics.OwnStream gives the same). The API
	// refuses raw appends into those streams, so an event of the type
	// anywhere else was appended raw by a tenant, not decided by the
	// module: handle raises no alert for it.
	Stream string
}

// Classify turns an event of a handled type into its alert.
func Classify(e eventstore.Event) (Alert, error) {
	switch e.Type {
	case ApprovalInvalid:
		var p struct {
			ApprovalID string `json:"approval_id"`
			IRID       string `json:"ir_id"`
			Reason     string `json:"reason"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return Alert{}, projections.Permanent(fmt.Errorf("alerts: decode %s %s: %w", e.Type, e.ID, err))
		}
		sev, ok := approvalSeverity[p.Reason]
		if !ok {
			sev = "high" // a reason added later is worth a look until classified
		}
		return Alert{Type: "approval_invalid", Source: "approval:" + p.ApprovalID, Reason: p.Reason, Severity: sev, IRID: p.IRID,
			Stream: aggregates.StreamPrefix(governance.ApprovalAggregate) + p.ApprovalID}, nil
	case DAGDiffFailed:
		var p struct {
			IRID     string `json:"ir_id"`
			Severity string `json:"severity"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return Alert{}, projections.Permanent(fmt.Errorf("alerts: decode %s %s: %w", e.Type, e.ID, err))
		}
		if p.Severity == "" {
			p.Severity = "critical"
		}
		return Alert{Type: "dag_tampering", Source: "ir:" + p.IRID, Reason: "dag_diff_failed", Severity: p.Severity, IRID: p.IRID,
			Stream: aggregates.StreamPrefix(governance.IRAggregate) + p.IRID}, nil
	}
	return Alert{}, projections.Permanent(fmt.Errorf("alerts: unexpected event type %q", e.Type))
}

const upsert = `INSERT INTO security_alerts AS t (tenant_id, alert_type, source, reason, severity, event_type, ir_id, occurrences,
	first_seen, first_event_id, first_position, first_prepare_position,
	last_seen, last_event_id, last_position, last_prepare_position, last_stream, last_correlation_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $11, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (tenant_id, alert_type, source, reason) DO UPDATE SET
	occurrences = t.occurrences + 1,
	severity = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.severity ELSE t.severity END,
	first_seen = CASE WHEN (excluded.first_position, excluded.first_prepare_position) < (t.first_position, t.first_prepare_position)
		THEN excluded.first_seen ELSE t.first_seen END,
	first_event_id = CASE WHEN (excluded.first_position, excluded.first_prepare_position) < (t.first_position, t.first_prepare_position)
		THEN excluded.first_event_id ELSE t.first_event_id END,
	first_prepare_position = CASE WHEN (excluded.first_position, excluded.first_prepare_position) < (t.first_position, t.first_prepare_position)
		THEN excluded.first_prepare_position ELSE t.first_prepare_position END,
	first_position = CASE WHEN (excluded.first_position, excluded.first_prepare_position) < (t.first_position, t.first_prepare_position)
		THEN excluded.first_position ELSE t.first_position END,
	last_seen = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_seen ELSE t.last_seen END,
	last_event_id = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_event_id ELSE t.last_event_id END,
	last_stream = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_stream ELSE t.last_stream END,
	last_correlation_id = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_correlation_id ELSE t.last_correlation_id END,
	details = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.details ELSE t.details END,
	last_prepare_position = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_prepare_position ELSE t.last_prepare_position END,
	last_position = CASE WHEN (excluded.last_position, excluded.last_prepare_position) > (t.last_position, t.last_prepare_position)
		THEN excluded.last_position ELSE t.last_position END`

// handle sends one upsert per event, in one round trip. The payload goes
// as a string: as []byte, pgx's simple-protocol and exec modes send it as
// a bytea literal, which PostgreSQL refuses as json.
func handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	b := &pgx.Batch{}
	for _, e := range events {
		a, err := Classify(e)
		if err != nil {
			return err
		}
		if e.Stream != a.Stream {
			// Appended raw, not recorded by the module: no alert, and
			// nothing to retry (see Alert.Stream).
			continue
		}
		b.Queue(upsert, e.Meta.TenantID, a.Type, a.Source, a.Reason, a.Severity, e.Type, nullable(a.IRID),
			e.Timestamp, e.ID, int64(e.Position.Commit), int64(e.Position.Prepare), e.Stream, nullable(e.Meta.CorrelationID), string(e.Payload))
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
