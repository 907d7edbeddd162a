package projections_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/catalog"
)

func ev(typ string, version int, tenant string, payload map[string]any) eventstore.Event {
	b, _ := json.Marshal(payload)
	return eventstore.Event{Type: typ, Source: "test", Payload: b, Meta: eventstore.Meta{SchemaVersion: version, TenantID: tenant}}
}

func appendTo(tb testing.TB, store eventstore.Store, stream string, evs ...eventstore.Event) []eventstore.Event {
	tb.Helper()
	res, err := store.Append(context.Background(), stream, eventstore.Any, evs...)
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
	return res.Events
}

func queryRows(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) []map[string]any {
	tb.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

func dumpQuery(tb testing.TB, pool *pgxpool.Pool, sql string) []string {
	tb.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestSecurityAlerts(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	approval, other := uuid.New(), uuid.New()
	invalid := func(tenant string, id uuid.UUID, reason string) eventstore.Event {
		return ev(alerts.ApprovalInvalid, 1, tenant, map[string]any{"approval_id": id, "ir_id": "ir-7", "reason": reason, "attempted_by": "mallory"})
	}
	tamper := func(tenant, ir string) eventstore.Event {
		return ev(alerts.DAGDiffFailed, 1, tenant, map[string]any{"ir_id": ir, "ir_sha256": strings.Repeat("0f", 32), "severity": "critical",
			"missing_steps": []string{"s2"}, "unexpected_nodes": []string{"n9"}, "changed_nodes": []string{}})
	}
	// Each in the stream governance records it in (alerts take no other).
	first := appendTo(t, store, "approval-"+approval.String(), invalid("acme", approval, "token_mismatch"))[0]
	fill(t, store, 30, 10) // unrelated events in between
	appendTo(t, store, "approval-"+approval.String(), invalid("acme", approval, "token_mismatch"), invalid("acme", approval, "token_mismatch"))
	appendTo(t, store, "approval-"+other.String(), invalid("acme", other, "tenant_mismatch"), invalid("acme", other, "unknown_approval"))
	appendTo(t, store, "ir-ir-1", tamper("acme", "ir-1"), tamper("acme", "ir-1"))
	last := appendTo(t, store, "ir-ir-1", tamper("globex", "ir-1"))[0]

	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), alerts.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)

	got := queryRows(t, pool, `SELECT tenant_id, alert_type, source, reason, severity, occurrences, first_event_id::text AS first_id,
		first_seen, last_seen, ir_id FROM security_alerts WHERE tenant_id IN ('acme', 'globex') ORDER BY tenant_id, alert_type, source, reason`)
	type row struct {
		tenant, typ, source, reason, severity string
		n                                     int64
	}
	want := []row{
		{"acme", "approval_invalid", "approval:" + approval.String(), "token_mismatch", "high", 3},
		{"acme", "approval_invalid", "approval:" + other.String(), "tenant_mismatch", "critical", 1},
		{"acme", "approval_invalid", "approval:" + other.String(), "unknown_approval", "medium", 1},
		{"acme", "dag_tampering", "ir:ir-1", "dag_diff_failed", "critical", 2},
		{"globex", "dag_tampering", "ir:ir-1", "dag_diff_failed", "critical", 1},
	}
	// Sort order of sources depends on the uuids: compare as sets.
	if len(got) != len(want) {
		t.Fatalf("%d alerts, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g["tenant_id"] == w.tenant && g["alert_type"] == w.typ && g["source"] == w.source && g["reason"] == w.reason {
				found = true
				if g["severity"] != w.severity || g["occurrences"] != w.n {
					t.Fatalf("alert %v: severity %v occurrences %v, want %s %d", w, g["severity"], g["occurrences"], w.severity, w.n)
				}
				if w.reason == "token_mismatch" {
					if g["first_id"] != first.ID.String() || !g["first_seen"].(time.Time).Equal(first.Timestamp) ||
						!g["last_seen"].(time.Time).After(first.Timestamp) && !g["last_seen"].(time.Time).Equal(first.Timestamp) {
						t.Fatalf("repeating alert: %v, want first seen at %s (%s)", g, first.ID, first.Timestamp)
					}
					if g["ir_id"] != "ir-7" {
						t.Fatalf("ir_id %v", g["ir_id"])
					}
				}
				if w.tenant == "globex" && !g["first_seen"].(time.Time).Equal(last.Timestamp) {
					t.Fatalf("globex alert first seen %v, want %v", g["first_seen"], last.Timestamp)
				}
			}
		}
		if !found {
			t.Fatalf("missing alert %v in %v", w, got)
		}
	}

	// A rebuild gives the same rows.
	before := dumpQuery(t, pool, `SELECT t::text FROM security_alerts t ORDER BY 1`)
	if _, err := rt.Rebuild(context.Background(), alerts.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if after := dumpQuery(t, pool, `SELECT t::text FROM security_alerts t ORDER BY 1`); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("rebuilt alerts differ:\n%v\nwant\n%v", after, before)
	}
}

// courseFlow appends a course's life: requested, outlined, generated,
// completed, distributed, deployed, published, viewed and clicked; and a
// second course that fails, then is requested again (schema v2).
func courseFlow(t *testing.T, store eventstore.Store, tenant string) (done, retried, dist uuid.UUID) {
	done, retried, dist = uuid.New(), uuid.New(), uuid.New()
	c := func(typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": done}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, tenant, p)
	}
	tr := func(from, to string) eventstore.Event {
		return c("course.workflow.transitioned", map[string]any{"from": from, "to": to})
	}
	stream := "course-" + done.String()
	appendTo(t, store, stream,
		c("course.generation.requested", map[string]any{"topic": "Event sourcing", "attempt": 1}), tr("none", "requested"), tr("requested", "outlining"),
		c("course.outline.created", map[string]any{"title": "Event sourcing in Go", "lessons": []map[string]any{{"slot": 1, "title": "a"}, {"slot": 2, "title": "b"}, {"slot": 3, "title": "c"}}}),
		tr("outlining", "generating"))
	for slot := 1; slot <= 3; slot++ {
		appendTo(t, store, stream, c("course.lesson.generated", map[string]any{"slot": slot, "title": "lesson"}))
	}
	appendTo(t, store, stream,
		c("course.quiz.created", map[string]any{"quiz_id": uuid.New(), "question_count": 12}),
		c("course.landing_page.created", map[string]any{"headline": "Learn", "slug": "event-sourcing"}),
		tr("generating", "review"),
		c("course.generation.completed", map[string]any{"title": "Event sourcing in Go", "lesson_count": 3, "attempt": 1}),
		tr("review", "completed"))
	d := func(typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": done, "distribution_id": dist}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, tenant, p)
	}
	dstream := "distribution-" + dist.String()
	appendTo(t, store, dstream, d("distribution.created", map[string]any{"channel": "web", "title": "ES in Go", "version": "1.0.0"}))
	appendTo(t, store, stream, d("course.deployed.staging", map[string]any{"staging_url": "https://staging.example/courses/1"}), tr("completed", "deployed"))
	appendTo(t, store, dstream,
		d("distribution.updated", map[string]any{"changes": map[string]any{"price_cents": 4900, "currency": "EUR"}}),
		d("distribution.published", map[string]any{"version": "1.0.0"}),
		d("distribution.version_bumped", map[string]any{"bump": "minor", "from_version": "1.0.0", "to_version": "1.1.0"}),
		d("distribution.micro_niche_created", map[string]any{"niche_id": uuid.New(), "niche": "go developers"}))
	for i := 0; i < 5; i++ {
		appendTo(t, store, dstream, d("distribution.viewed", map[string]any{"visitor_id": "v"}))
	}
	appendTo(t, store, dstream, d("distribution.enrollment_clicked", nil), d("distribution.enrollment_clicked", nil))

	r := func(typ string, version int, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": retried}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, version, tenant, p)
	}
	rstream := "course-" + retried.String()
	appendTo(t, store, rstream,
		r("course.generation.requested", 1, map[string]any{"topic": "CQRS", "attempt": 1}),
		r("course.workflow.transitioned", 1, map[string]any{"from": "none", "to": "requested"}),
		r("course.generation.failed", 1, map[string]any{"stage": "requested", "reason": "model unavailable", "attempt": 1}),
		r("course.workflow.transitioned", 1, map[string]any{"from": "requested", "to": "failed"}))
	appendTo(t, store, rstream,
		r("course.generation.requested", 2, map[string]any{"topic": "CQRS", "attempt": 2, "language": "fr"}),
		r("course.workflow.transitioned", 1, map[string]any{"from": "failed", "to": "requested"}))
	return done, retried, dist
}

func TestCourseCatalog(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	done, retried, _ := courseFlow(t, store, "acme")
	fill(t, store, 40, 10) // other courses' requested/completed/failed events, views of unknown distributions
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)

	got := queryRows(t, pool, `SELECT title, topic, language, workflow_state, attempt, lesson_count, lessons_generated, quiz_questions,
		landing_page_slug, staging_url, distribution_count, distribution_status, publication_status, published_version,
		views, enrollment_clicks, completed_at IS NOT NULL AS completed, deployed_at IS NOT NULL AS deployed
		FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, done)
	if len(got) != 1 {
		t.Fatalf("%d catalog rows for the course", len(got))
	}
	want := map[string]any{
		"title": "Event sourcing in Go", "topic": "Event sourcing", "language": "en", "workflow_state": "deployed", "attempt": int64(1),
		"lesson_count": int32(3), "lessons_generated": int32(3), "quiz_questions": int32(12), "landing_page_slug": "event-sourcing",
		"staging_url": "https://staging.example/courses/1", "distribution_count": int32(1), "distribution_status": "active",
		"publication_status": "published", "published_version": "1.1.0", "views": int64(5), "enrollment_clicks": int64(2),
		"completed": true, "deployed": true,
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Fatalf("course_catalog.%s = %#v, want %#v (row %v)", k, got[0][k], v, got[0])
		}
	}
	got = queryRows(t, pool, `SELECT workflow_state, attempt, language, failure_reason, lessons_generated, distribution_status
		FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, retried)
	if len(got) != 1 || got[0]["workflow_state"] != "requested" || got[0]["attempt"] != int64(2) || got[0]["language"] != "fr" ||
		got[0]["failure_reason"] != nil || got[0]["distribution_status"] != "none" {
		t.Fatalf("the retried course: %v", got)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM course_catalog WHERE tenant_id IS NULL OR tenant_id = ''`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows without a tenant: %d %v", n, err)
	}

	// Unpublish and delete: the catalog follows; a rebuild gives the same rows.
	dist := queryRows(t, pool, `SELECT distribution_id::text AS id FROM course_distributions WHERE course_id = $1`, done)[0]["id"].(string)
	appendTo(t, store, "distribution-"+dist,
		ev("distribution.unpublished", 1, "acme", map[string]any{"course_id": done, "distribution_id": dist}),
		ev("distribution.deleted", 1, "acme", map[string]any{"course_id": done, "distribution_id": dist, "reason": "retired"}))
	waitCaughtUp(t, rt)
	got = queryRows(t, pool, `SELECT distribution_count, distribution_status, publication_status, views FROM course_catalog WHERE course_id = $1`, done)
	if got[0]["distribution_count"] != int32(0) || got[0]["distribution_status"] != "deleted" || got[0]["publication_status"] != "unpublished" || got[0]["views"] != int64(5) {
		t.Fatalf("after unpublish and delete: %v", got[0])
	}
	const dumpCatalog = `SELECT t::text FROM course_catalog t ORDER BY tenant_id, course_id`
	const dumpDists = `SELECT t::text FROM course_distributions t ORDER BY tenant_id, distribution_id`
	before := append(dumpQuery(t, pool, dumpCatalog), dumpQuery(t, pool, dumpDists)...)
	if _, err := rt.Rebuild(context.Background(), catalog.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	after := append(dumpQuery(t, pool, dumpCatalog), dumpQuery(t, pool, dumpDists)...)
	if strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("rebuilt catalog differs:\n%s\nwant\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// A course event parked and retried after later events were applied
// does not move the workflow state back.
func TestCatalogLateEventKeepsState(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	done, _, _ := courseFlow(t, store, "acme")
	late := eventsOf(t, store, "course.workflow.transitioned")[2] // requested -> outlining
	broken := true
	p := catalog.Projection()
	orig := p.Handler
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		for _, e := range evs {
			if broken && e.ID == late.ID {
				return projections.Permanent(errTest)
			}
		}
		return orig.Handle(ctx, tx, evs)
	})
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	runUntilCaughtUp(t, rt)
	parked, err := rt.ListParked(context.Background(), catalog.Name)
	if err != nil || len(parked) != 1 || parked[0].EventID != late.ID {
		t.Fatalf("parked %v %v", parked, err)
	}
	broken = false
	if err := rt.RetryParked(context.Background(), parked[0].ID); err != nil {
		t.Fatal(err)
	}
	var state string
	if err := pool.QueryRow(context.Background(), `SELECT workflow_state FROM course_catalog WHERE course_id = $1`, done).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "deployed" {
		t.Fatalf("workflow state after the late event: %s, want deployed", state)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("cannot apply")
