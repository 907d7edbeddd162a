package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/schemas"
)

var ctx = context.Background()

// pool is a fresh schema with a pool on it; the projection runtime's
// generation schemas, outside it, are dropped when the test ends.
func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	u, _ := pgtest.Schema(t)
	p, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := projections.Uninstall(c, p); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		p.Close()
	})
	return p
}

type alertRow struct {
	Severity    string
	Occurrences int64
}

// TestFourEyesRefusalsBecomeAlerts: a requester trying to grant its own
// approval (self_approval, high) and an approver naming no one
// (approver_unnamed, medium), refused and recorded by the governance
// module as ir.approval_invalid v2, become security_alerts rows of the
// approval's tenant; the v1 events of before project as they did (v2 only
// adds reasons). Both with the runtime's upcaster (v1 arrives as v2, as
// `eventstream` wires it) and without (each version as stored), and with
// nothing parked. Before, the projection declared v1 only, so a v2 event
// was parked, never an alert.
func TestFourEyesRefusalsBecomeAlerts(t *testing.T) {
	t.Parallel()
	for _, upcast := range []bool{false, true} {
		name := "as stored"
		if upcast {
			name = "upcast"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, dom, svc := domainOnPostgres(t)

			// The log of before: v1 refusals.
			old := uuid.New()
			v1 := func(reason string) eventstore.Event {
				b, _ := json.Marshal(map[string]any{"approval_id": old, "ir_id": "ir-7", "reason": reason, "attempted_by": "mallory"})
				return eventstore.Event{Type: alerts.ApprovalInvalid, Source: "test", Payload: b, Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "acme"}}
			}
			if _, err := store.Append(ctx, "approval-"+old.String(), eventstore.Any,
				v1("token_mismatch"), v1("token_mismatch"), v1("already_consumed"), v1("tenant_mismatch"), v1("unknown_approval")); err != nil {
				t.Fatal(err)
			}

			// The four-eyes refusals, by the governance module.
			id := uuid.NewString()
			token, _, err := svc.Governance.CreateApproval(ctx, aggregates.CommandMeta{TenantID: "acme"},
				governance.CreateApproval{ApprovalID: id, IRID: "ir-8", RequestedBy: "planner"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				by   string
				rule error
			}{{"planner", governance.ErrSelfApproval}, {"Planner ", governance.ErrSelfApproval}, {"", governance.ErrApproverUnnamed}} {
				_, err := svc.Governance.ConsumeApproval(ctx, aggregates.CommandMeta{TenantID: "acme"}, governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by})
				if !errors.Is(err, c.rule) {
					t.Fatalf("consumed by %q: %v, want %v", c.by, err, c.rule)
				}
			}

			db := caughtUp(t, store, dom, upcast)

			rows, err := db.Query(ctx, `SELECT tenant_id, source, reason, severity, occurrences FROM security_alerts WHERE alert_type = 'approval_invalid'`)
			if err != nil {
				t.Fatal(err)
			}
			got := map[[3]string]alertRow{}
			var tenant, source, reason string
			var r alertRow
			if _, err := pgx.ForEachRow(rows, []any{&tenant, &source, &reason, &r.Severity, &r.Occurrences}, func() error {
				got[[3]string{tenant, source, reason}] = r
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			want := map[[3]string]alertRow{
				{"acme", "approval:" + id, "self_approval"}:              {"high", 2},
				{"acme", "approval:" + id, "approver_unnamed"}:           {"medium", 1},
				{"acme", "approval:" + old.String(), "token_mismatch"}:   {"high", 2},
				{"acme", "approval:" + old.String(), "already_consumed"}: {"high", 1},
				{"acme", "approval:" + old.String(), "tenant_mismatch"}:  {"critical", 1},
				{"acme", "approval:" + old.String(), "unknown_approval"}: {"medium", 1},
			}
			if len(got) != len(want) {
				t.Fatalf("alerts %v, want %v", got, want)
			}
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("alert %v is %+v, want %+v (all: %v)", k, got[k], w, got)
				}
			}
		})
	}
}

// Classify gives each reason of ir.approval_invalid, in either schema
// version, its severity.
func TestClassifyApprovalInvalidSeverity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		version          int
		reason, severity string
	}{
		{1, "tenant_mismatch", "critical"},
		{1, "token_mismatch", "high"},
		{1, "already_consumed", "high"},
		{1, "unknown_approval", "medium"},
		{2, "tenant_mismatch", "critical"},
		{2, "unknown_approval", "medium"},
		{2, "self_approval", "high"},
		{2, "approver_unnamed", "medium"},
		{2, "mission_mismatch", "high"},
	} {
		b, _ := json.Marshal(map[string]any{"approval_id": uuid.NewString(), "ir_id": "ir-1", "reason": c.reason})
		a, err := alerts.Classify(eventstore.Event{Type: alerts.ApprovalInvalid, Payload: b, Meta: eventstore.Meta{SchemaVersion: c.version, TenantID: "acme"}})
		if err != nil || a.Severity != c.severity || a.Reason != c.reason || a.Type != "approval_invalid" {
			t.Fatalf("v%d %s: %+v, %v; want severity %s", c.version, c.reason, a, err, c.severity)
		}
	}
}

// TestMissionMismatchBecomesAHighAlert: an approval created for one
// mission and presented, with its token, for another is refused and
// recorded by the governance module as ir.approval_invalid v2 with reason
// mission_mismatch, which becomes a high security_alerts row of the
// approval's tenant whose details name the mission presented. Both with
// the runtime's upcaster and without, with nothing parked. Before, the
// refusal left no event, so no alert.
func TestMissionMismatchBecomesAHighAlert(t *testing.T) {
	t.Parallel()
	for _, upcast := range []bool{false, true} {
		name := "as stored"
		if upcast {
			name = "upcast"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, dom, svc := domainOnPostgres(t)

			id, mission, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
			token, _, err := svc.Governance.CreateApproval(ctx, aggregates.CommandMeta{TenantID: "acme"},
				governance.CreateApproval{ApprovalID: id, IRID: "ir-9", MissionID: mission, RequestedBy: "planner"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				_, err := svc.Governance.ConsumeApproval(ctx, aggregates.CommandMeta{TenantID: "acme"},
					governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice", MissionID: other})
				if !errors.Is(err, governance.ErrApprovalMission) {
					t.Fatalf("consumed for another mission: %v, want %v", err, governance.ErrApprovalMission)
				}
			}

			db := caughtUp(t, store, dom, upcast)

			var tenant, source, reason, severity, presented string
			var n int64
			err = db.QueryRow(ctx, `SELECT tenant_id, source, reason, severity, occurrences, details->>'presented_mission_id'
				FROM security_alerts WHERE alert_type = 'approval_invalid'`).Scan(&tenant, &source, &reason, &severity, &n, &presented)
			if err != nil {
				t.Fatalf("the mission_mismatch alert: %v", err)
			}
			if tenant != "acme" || source != "approval:"+id || reason != "mission_mismatch" || severity != "high" || n != 2 || presented != other {
				t.Fatalf("alert %s %s %s %s ×%d presenting %q, want acme approval:%s mission_mismatch high ×2 presenting %s",
					tenant, source, reason, severity, n, presented, id, other)
			}
		})
	}
}

// domainOnPostgres is a PostgreSQL store in a schema of the test's own,
// the domain's aggregate registry and its services over that store.
func domainOnPostgres(t *testing.T) (*postgres.Store, *aggregates.Registry, *domain.Services) {
	t.Helper()
	reg := schemas.MustDefault()
	store, err := postgres.New(ctx, pool(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dom, err := domain.NewRegistry(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := domain.New(store, dom, domain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store, dom, svc
}

// caughtUp runs the alerts projection over store's log to its head, with
// the domain's upcaster or without, on a schema of the test's own, which
// it returns; nothing may be parked.
func caughtUp(t *testing.T, store eventstore.Store, dom *aggregates.Registry, upcast bool) *pgxpool.Pool {
	t.Helper()
	cfg := projections.Config{BatchSize: 100, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Retry: projections.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}
	if upcast {
		cfg.Upcast = dom.Upcast
	}
	db := pool(t)
	rt, err := projections.New(db, store, schemas.MustDefault(), cfg, alerts.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CatchUp(ctx, alerts.Name, 0); err != nil {
		t.Fatal(err)
	}
	if parked, err := rt.ListParked(ctx, alerts.Name); err != nil || len(parked) != 0 {
		t.Fatalf("parked %+v (%v), want none", parked, err)
	}
	return db
}

// TestRawAppendedLookAlikesRaiseNoAlert: the refused approval and the
// tampered DAG the governance module records become alerts; events of the
// same types that a tenant appended raw (Store.Append, or the HTTP API's
// append, which refuses raw appends only into the modules' streams) into
// a stream of its own, or into the stream of another approval or IR than
// the one they name, raise none and are not parked. Before, the
// projection took every such event as the module's, so any tenant could
// forge critical alerts.
func TestRawAppendedLookAlikesRaiseNoAlert(t *testing.T) {
	t.Parallel()
	store, dom, svc := domainOnPostgres(t)
	acme := aggregates.CommandMeta{TenantID: "acme"}

	// What the module decided: a wrong token, and a tampered DAG.
	id := uuid.NewString()
	if _, _, err := svc.Governance.CreateApproval(ctx, acme, governance.CreateApproval{ApprovalID: id, IRID: "ir-real"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Governance.ConsumeApproval(ctx, acme, governance.ConsumeApproval{ApprovalID: id, Token: "wrong"}); !errors.Is(err, governance.ErrTokenMismatch) {
		t.Fatalf("wrong token: %v, want %v", err, governance.ErrTokenMismatch)
	}
	plan := governance.IR{ID: "ir-real", Steps: []governance.Step{{ID: "a", Action: "http.get", Tier: 0}, {ID: "b", Action: "http.get", Tier: 1}}}
	if _, err := svc.Governance.ValidateIR(ctx, acme, governance.ValidateIR{IR: plan}); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Governance.CheckDAG(ctx, acme, governance.CheckDAG{IRID: "ir-real", Nodes: plan.Steps[:1]})
	if err != nil || len(res.Events) != 1 || res.Events[0].Type != alerts.DAGDiffFailed {
		t.Fatalf("tampered DAG: %+v, %v", res.Events, err)
	}

	// What a tenant appended raw.
	invalid := func(approval, reason string) eventstore.Event {
		b, _ := json.Marshal(map[string]any{"approval_id": approval, "ir_id": "ir-real", "reason": reason, "attempted_by": "mallory"})
		return eventstore.Event{Type: alerts.ApprovalInvalid, Source: "test", Payload: b, Meta: eventstore.Meta{SchemaVersion: 2, TenantID: "acme"}}
	}
	tamper := func(ir string) eventstore.Event {
		b, _ := json.Marshal(map[string]any{"ir_id": ir, "ir_sha256": strings.Repeat("0f", 32), "severity": "critical",
			"missing_steps": []string{"b"}, "unexpected_nodes": []string{}, "changed_nodes": []string{}})
		return eventstore.Event{Type: alerts.DAGDiffFailed, Source: "test", Payload: b, Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "acme"}}
	}
	other, fake := uuid.NewString(), uuid.NewString()
	for stream, evs := range map[string][]eventstore.Event{
		"web-x":                 {invalid(id, "tenant_mismatch"), invalid(fake, "token_mismatch"), tamper("ir-real"), tamper("ir-fake")},
		"approval-" + other:     {invalid(id, "tenant_mismatch")},
		"ir-ir-other":           {tamper("ir-real")},
		"approval-" + id + "-x": {invalid(id, "already_consumed")},
	} {
		if _, err := store.Append(ctx, stream, eventstore.Any, evs...); err != nil {
			t.Fatalf("raw append into %s: %v", stream, err)
		}
	}

	db := caughtUp(t, store, dom, true)
	rows, err := db.Query(ctx, `SELECT concat_ws(' ', tenant_id, alert_type, source, reason, severity, occurrences, last_stream)
		FROM security_alerts ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"acme approval_invalid approval:" + id + " token_mismatch high 1 approval-" + id,
		"acme dag_tampering ir:ir-real dag_diff_failed critical 1 ir-ir-real",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("security_alerts:\n%s\nwant only the module's\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The stream an alert must come from is the one analytics counts the
// same event's outcome in (analytics.OwnStream): the read models agree on
// which governance events the module recorded.
func TestAlertStreamIsAnalyticsOwnStream(t *testing.T) {
	t.Parallel()
	payload, _ := json.Marshal(map[string]any{"approval_id": uuid.NewString(), "ir_id": "ir-1", "reason": "token_mismatch"})
	for _, typ := range []string{alerts.ApprovalInvalid, alerts.DAGDiffFailed} {
		a, err := alerts.Classify(eventstore.Event{Type: typ, Payload: payload})
		want, module := analytics.OwnStream(typ, payload)
		if err != nil || !module || a.Stream != want {
			t.Errorf("%s: alert stream %q (%v), analytics.OwnStream %q", typ, a.Stream, err, want)
		}
	}
}
