package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
)

// clockStore gives every event the timestamp at(position), so a test
// controls the time of day its events carry (the stores stamp the append
// time).
type clockStore struct {
	eventstore.Store
	at func(eventstore.Position) time.Time
}

func (s clockStore) retime(evs []eventstore.Event) []eventstore.Event {
	out := make([]eventstore.Event, len(evs))
	for i, e := range evs {
		e.Timestamp = s.at(e.Position)
		out[i] = e
	}
	return out
}

func (s clockStore) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	page, err := s.Store.ReadAll(ctx, opts)
	page.Events = s.retime(page.Events)
	return page, err
}

func (s clockStore) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	sub, err := s.Store.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	return clockSub{sub, s}, nil
}

type clockSub struct {
	eventstore.Subscription
	s clockStore
}

func (c clockSub) Next(ctx context.Context) ([]eventstore.Event, error) {
	evs, err := c.Subscription.Next(ctx)
	return c.s.retime(evs), err
}

// everyTypeClock spreads the log over several UTC days, crossing midnight
// and a daylight-saving change in Europe and America; every third event
// is stamped five hours early, as events appended by concurrent writers
// may be (the log's order is the commit order, not the clock's).
func everyTypeClock(p eventstore.Position) time.Time {
	t := time.Date(2026, 3, 28, 21, 0, 0, 0, time.UTC).Add(time.Duration(p.Commit) * 37 * time.Minute)
	if p.Commit%3 == 0 {
		t = t.Add(-5 * time.Hour)
	}
	return t
}

// poolInZone is a fresh schema whose sessions run in the time zone tz.
func poolInZone(tb testing.TB, tz string) *pgxpool.Pool {
	tb.Helper()
	return poolInMode(tb, tz, pgx.QueryExecModeCacheStatement)
}

// poolInMode is poolInZone whose queries run in pgx's exec mode mode.
func poolInMode(tb testing.TB, tz string, mode pgx.QueryExecMode) *pgxpool.Pool {
	tb.Helper()
	return databaseWith(tb, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["timezone"] = tz
		cfg.ConnConfig.DefaultQueryExecMode = mode
	})
}

// everyTypeLog appends, for tenant, one stream per aggregate covering
// every domain event type, with optional fields both absent and present,
// unicode text and numbers past 2^53. It returns the events as written.
func everyTypeLog(t *testing.T, store eventstore.Store, tenant string, n int) []eventstore.Event {
	t.Helper()
	course, course2, dist, dist2 := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	mission, task, approval, approval2 := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	ir := fmt.Sprintf("ir-%d.x:y", n)
	sha := strings.Repeat("ab", 32)
	steps := []map[string]any{{"step_id": "s1", "action": "fetch", "tier": 0}, {"step_id": "s2", "action": "deploy.prod", "tier": 2}}
	var written []eventstore.Event
	seq := 0
	e := func(typ string, version int, payload map[string]any) eventstore.Event {
		seq++
		b, err := json.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		ev := eventstore.Event{ID: uuid.New(), Type: typ, Source: "svc/ünïcode-" + tenant, Payload: b,
			Meta: eventstore.Meta{SchemaVersion: version, TenantID: tenant}}
		switch seq % 4 {
		case 0: // bare meta, no target
		case 1:
			ev.Target = "target/→/" + tenant
			ev.Meta.CorrelationID = "corr-" + tenant
			ev.Meta.CausationID = uuid.NewString()
			ev.Meta.Producer = "prod 🚀"
			ev.Meta.Extra = map[string]any{"big": json.Number("123456789012345678901234567890"), "trace": map[string]any{"ids": []any{json.Number("1"), "二"}}, "nil": nil}
		case 2:
			ev.Meta.CorrelationID = "corr-" + tenant
			ev.Meta.Extra = map[string]any{"max_int64": json.Number("9223372036854775807"), "flag": true}
		case 3:
			ev.Target = "x"
			ev.Meta.Producer = "p"
		}
		return ev
	}
	app := func(stream string, evs ...eventstore.Event) {
		written = append(written, appendTo(t, store, stream, evs...)...)
	}
	c := func(typ string, version int, id uuid.UUID, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return e(typ, version, p)
	}
	tr := func(id uuid.UUID, from, to string) eventstore.Event {
		return c("course.workflow.transitioned", 1, id, map[string]any{"from": from, "to": to})
	}
	app("course-"+course.String(),
		c("course.generation.requested", 1, course, map[string]any{"topic": "Événements et 日本語 ✓", "attempt": 1}),
		tr(course, "none", "requested"),
		c("course.generation.failed", 1, course, map[string]any{"stage": "requested", "reason": "模型超时", "attempt": 1}),
		tr(course, "requested", "failed"),
		c("course.generation.requested", 2, course, map[string]any{"topic": "Événements", "attempt": 2, "language": "fr-CA", "requested_by": "zoë"}),
		tr(course, "failed", "requested"), tr(course, "requested", "outlining"),
		c("course.outline.created", 1, course, map[string]any{"title": "Événements 101", "summary": "ü",
			"lessons": []map[string]any{{"slot": 1, "title": "α"}, {"slot": 2, "title": "β"}}}),
		tr(course, "outlining", "generating"),
		c("course.lesson.generated", 1, course, map[string]any{"slot": 1, "title": "α"}),
		c("course.lesson.generated", 1, course, map[string]any{"slot": 2, "title": "β", "content_uri": "https://example.com/l/2", "word_count": int64(9007199254740993)}),
		c("course.quiz.created", 1, course, map[string]any{"quiz_id": uuid.New(), "question_count": 7}),
		c("course.landing_page.created", 1, course, map[string]any{"headline": "Lernen 🎓", "slug": "evenements-101"}),
		tr(course, "generating", "review"),
		c("course.generation.completed", 1, course, map[string]any{"title": "Événements 101", "lesson_count": 2, "attempt": 2}),
		tr(course, "review", "completed"))
	d := func(typ string, id uuid.UUID, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": course, "distribution_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return e(typ, 1, p)
	}
	app("distribution-"+dist.String(), d("distribution.created", dist, map[string]any{"channel": "web", "title": "Évé", "version": "1.0.0"}))
	app("course-"+course.String(), d("course.deployed.staging", dist, map[string]any{"staging_url": "https://staging.example/ü"}), tr(course, "completed", "deployed"))
	app("distribution-"+dist.String(),
		d("distribution.updated", dist, map[string]any{"changes": map[string]any{"price_cents": int64(9223372036854775807), "currency": "JPY", "tags": []string{"日本"}}}),
		d("distribution.updated", dist, map[string]any{"changes": map[string]any{"description": "only a description"}}),
		d("distribution.published", dist, map[string]any{"version": "1.0.0"}),
		d("distribution.viewed", dist, map[string]any{}),
		d("distribution.viewed", dist, map[string]any{"visitor_id": "v-ü", "referrer": "https://ref.example/?q=日本"}),
		d("distribution.enrollment_clicked", dist, map[string]any{}),
		d("distribution.micro_niche_created", dist, map[string]any{"niche_id": uuid.New(), "niche": "niche ü"}),
		d("distribution.micro_niche_created", dist, map[string]any{"niche_id": uuid.New(), "niche": "niche 2", "keywords": []string{"a", "b"}}),
		d("distribution.version_bumped", dist, map[string]any{"bump": "major", "from_version": "1.0.0", "to_version": "2.0.0", "reason": "Ω"}),
		d("distribution.version_bumped", dist, map[string]any{"bump": "patch", "from_version": "2.0.0", "to_version": "2.0.1"}),
		d("distribution.viewed", dist, map[string]any{"visitor_id": "v2"}))
	app("distribution-"+dist2.String(),
		d("distribution.created", dist2, map[string]any{"channel": "partner", "title": "second", "version": "0.1.0"}),
		d("distribution.viewed", dist2, map[string]any{}),
		d("distribution.published", dist2, map[string]any{"version": "0.1.0"}),
		d("distribution.unpublished", dist2, map[string]any{}),
		d("distribution.published", dist2, map[string]any{"version": "0.1.0"}),
		d("distribution.unpublished", dist2, map[string]any{"reason": "paused"}),
		d("distribution.enrollment_clicked", dist2, map[string]any{"visitor_id": "v3"}),
		d("distribution.deleted", dist2, map[string]any{}))
	// A view a producer sent into its own stream: analytics and the audit
	// log count it, the catalog (which shows only what the distribution
	// module decided) records it in catalog_skipped_events.
	app("web-"+tenant, d("distribution.viewed", dist, map[string]any{"visitor_id": "producer-stream"}))
	// A course the log knows only from a view (created before the log began).
	viewedOnly := uuid.New()
	app("distribution-"+viewedOnly.String(), e("distribution.viewed", 1, map[string]any{"course_id": course2, "distribution_id": viewedOnly}))

	m := func(typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"mission_id": mission}
		for k, v := range extra {
			p[k] = v
		}
		return e(typ, 1, p)
	}
	a := func(typ string, id uuid.UUID, extra map[string]any) eventstore.Event {
		p := map[string]any{"approval_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return e(typ, 1, p)
	}
	app("mission-"+mission.String(), m("mission.created", map[string]any{"ir_id": ir, "title": "Mission ✓", "steps": steps}))
	app("ir-"+ir,
		e("ir.validated_escalate", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "mission_id": mission, "steps": steps, "max_tier": 2, "escalated_steps": []string{"s2"}}),
		e("ir.validated_pass", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "steps": steps[:1], "max_tier": 0}),
		e("ir.validated_reject", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "step_id": "s2", "action": "deploy.prod", "rule": "no-prod"}),
		e("ir.dag_diff_ok", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "node_count": 2}),
		e("ir.dag_diff_failed", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "severity": "critical", "missing_steps": []string{"s2"}, "unexpected_nodes": []string{}, "changed_nodes": []string{"n1"}}),
		e("ir.dag_diff_failed", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "mission_id": mission, "severity": "critical", "missing_steps": []string{}, "unexpected_nodes": []string{"ü"}, "changed_nodes": []string{}}))
	app("mission-"+mission.String(), m("mission.validated", map[string]any{"ir_id": ir, "outcome": "escalate", "max_tier": 2}))
	app("approval-"+approval.String(),
		a("ir.approval_created", approval, map[string]any{"ir_id": ir, "token_sha256": sha, "expires_at": "2026-03-30T00:00:00Z"}),
		a("ir.approval_invalid", approval, map[string]any{"ir_id": ir, "reason": "token_mismatch", "attempted_by": "mallory ☠"}),
		a("ir.approval_invalid", approval, map[string]any{"ir_id": ir, "reason": "tenant_mismatch", "presented_tenant_id": "evil"}),
		a("ir.approval_invalid", approval, map[string]any{"ir_id": ir, "reason": "token_mismatch"}),
		a("ir.approval_consumed", approval, map[string]any{"ir_id": ir, "mission_id": mission, "consumed_by": "ops"}),
		a("ir.approval_invalid", approval, map[string]any{"ir_id": ir, "reason": "already_consumed"}))
	app("approval-"+approval2.String(),
		a("ir.approval_created", approval2, map[string]any{"ir_id": ir, "mission_id": mission, "token_sha256": sha, "expires_at": "2026-03-29T00:00:00+02:00", "requested_by": "r"}),
		a("ir.approval_expired", approval2, map[string]any{"ir_id": ir, "expires_at": "2026-03-29T00:00:00+02:00"}),
		a("ir.approval_invalid", approval2, map[string]any{"reason": "unknown_approval"}))
	app("mission-"+mission.String(),
		m("mission.approval_granted", map[string]any{"ir_id": ir, "approval_id": approval}),
		m("mission.started", map[string]any{"ir_id": ir, "approval_id": approval}),
		m("mission.task.created", map[string]any{"task_id": task, "step_id": "s1", "action": "fetch"}),
		m("mission.task.completed", map[string]any{"task_id": task, "step_id": "s1"}),
		m("mission.failed", map[string]any{"reason": "échec", "task_id": task}))
	other := uuid.New()
	app("mission-"+other.String(),
		e("mission.created", 1, map[string]any{"mission_id": other, "ir_id": ir, "title": "t", "steps": steps[:1], "created_by": "c"}),
		e("mission.started", 1, map[string]any{"mission_id": other, "ir_id": ir}),
		e("mission.completed", 1, map[string]any{"mission_id": other, "task_count": 1}))
	third := uuid.New()
	app("mission-"+third.String(),
		e("mission.created", 1, map[string]any{"mission_id": third, "ir_id": ir, "title": "t", "steps": steps[:1]}),
		e("mission.cancelled", 1, map[string]any{"mission_id": third}),
	)
	return written
}

// everyReadModel are the queries that dump all four read models.
var everyReadModel = []string{
	`SELECT t::text FROM audit_events t ORDER BY position`,
	`SELECT t::text FROM analytics_event_counts t ORDER BY tenant_id, day, event_type`,
	`SELECT t::text FROM analytics_outcomes t ORDER BY tenant_id, day, subject`,
	`SELECT t::text FROM analytics_generation_daily t ORDER BY tenant_id, day`,
	`SELECT t::text FROM security_alerts t ORDER BY tenant_id, alert_type, source, reason`,
	`SELECT t::text FROM course_catalog t ORDER BY tenant_id, course_id`,
	`SELECT t::text FROM course_distributions t ORDER BY tenant_id, distribution_id`,
	`SELECT t::text FROM catalog_skipped_events t ORDER BY tenant_id, stream, event_type`,
}

// dumpEvery dumps every read model as text, timestamps in UTC whatever
// the pool's time zone.
func dumpEvery(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL timezone = 'UTC'`); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range everyReadModel {
		r, err := tx.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if len(rows) == 0 {
			t.Fatalf("%s: no rows", q)
		}
		out = append(out, "-- "+q)
		out = append(out, rows...)
	}
	return out
}

func allFour() []projections.Projection {
	return []projections.Projection{audit.Projection(), analytics.Projection(), alerts.Projection(), catalog.Projection()}
}

// everyTypeStore is a log of every domain event type for three tenants,
// its events spread over several UTC days.
func everyTypeStore(t *testing.T) (clockStore, []eventstore.Event) {
	t.Helper()
	store := logStore(t)
	var written []eventstore.Event
	for i, tenant := range []string{"acme", "globex", "テナント-ü"} {
		written = append(written, everyTypeLog(t, store, tenant, i)...)
	}
	return clockStore{store, everyTypeClock}, written
}

// The four read models built live, one event per transaction, in a
// session far west of UTC, have the same rows as the ones a rebuild
// writes in large batches in a session far east of UTC, for a log of
// every domain event type of three tenants.
func TestEveryReadModelLiveEqualsRebuild(t *testing.T) {
	t.Parallel()
	store, written := everyTypeStore(t)

	live := poolInZone(t, "America/Los_Angeles")
	cfg := fastConfig()
	cfg.BatchSize = 1
	rt := newRuntime(t, live, store, cfg, allFour()...)
	runUntilCaughtUp(t, rt)
	want := dumpEvery(t, live)

	rebuilt := poolInZone(t, "Pacific/Kiritimati")
	cfg = fastConfig()
	cfg.BatchSize = 1000
	rt = newRuntime(t, rebuilt, store, cfg, allFour()...)
	for _, n := range rt.Names() {
		if _, err := rt.Rebuild(context.Background(), n, projections.RebuildOptions{}); err != nil {
			t.Fatalf("Rebuild %s: %v", n, err)
		}
	}
	got := dumpEvery(t, rebuilt)
	if len(got) != len(want) {
		t.Fatalf("rebuilt: %d rows, live: %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rebuilt row %d is\n%s\nlive\n%s", i, got[i], want[i])
		}
	}
	if n := len(dumpQuery(t, live, `SELECT t::text FROM audit_events t`)); n != len(written) {
		t.Fatalf("audit_events has %d rows, the log %d events", n, len(written))
	}
	seen := map[string]bool{}
	for _, e := range written {
		seen[e.Type] = true
	}
	for _, typ := range registry(t).Types() {
		if !seen[typ] {
			t.Errorf("the log has no %s event", typ)
		}
	}
}

// The catalog's updated_at is the latest timestamp of a row's own events
// whether they come one per transaction (live) or many per batch (a
// rebuild): a batch's views must not take another distribution's time,
// nor the last event's time when an earlier one is later on the clock.
func TestCatalogUpdatedAtSameInBatches(t *testing.T) {
	t.Parallel()
	base := logStore(t)
	course, a, b := uuid.New(), uuid.New(), uuid.New()
	d := func(typ string, id uuid.UUID, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": course, "distribution_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, "acme", p)
	}
	sa, sb := "distribution-"+a.String(), "distribution-"+b.String()
	appendTo(t, base, sa, d("distribution.created", a, map[string]any{"channel": "web", "title": "a", "version": "1.0.0"}))
	appendTo(t, base, sb, d("distribution.created", b, map[string]any{"channel": "web", "title": "b", "version": "1.0.0"}))
	appendTo(t, base, sa, d("distribution.viewed", a, nil), d("distribution.viewed", a, nil))
	appendTo(t, base, sb, d("distribution.enrollment_clicked", b, nil))
	at := func(h, m int) time.Time { return time.Date(2026, 5, 1, h, m, 0, 0, time.UTC) }
	clock := map[uint64]time.Time{1: at(10, 0), 2: at(10, 1), 3: at(12, 0), 4: at(10, 3), 5: at(10, 4)}
	store := clockStore{base, func(p eventstore.Position) time.Time { return clock[p.Commit] }}

	const q = `SELECT (SELECT string_agg(d.title || ' ' || d.updated_at::text, ', ' ORDER BY d.title) FROM course_distributions d)
		|| ' / ' || (SELECT c.updated_at::text FROM course_catalog c)`
	results := map[int]string{}
	for _, size := range []int{1, 1000} {
		pool := poolInZone(t, "UTC")
		cfg := fastConfig()
		cfg.BatchSize = size
		rt := newRuntime(t, pool, store, cfg, catalog.Projection())
		if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := pool.QueryRow(context.Background(), q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		results[size] = s
	}
	const want = "a 2026-05-01 12:00:00+00, b 2026-05-01 10:04:00+00 / 2026-05-01 12:00:00+00"
	for size, got := range results {
		if got != want {
			t.Errorf("batches of %d: updated_at %s, want %s", size, got, want)
		}
	}
}

// Every audit row holds its event's envelope exactly as written: the
// target absent (NULL) or set, correlation, causation and producer, the
// meta's free-form keys (nested, null, numbers past 2^64), the payload's
// unicode and large numbers, and the timestamp.
func TestAuditKeepsTheEnvelope(t *testing.T) {
	t.Parallel()
	store, written := everyTypeStore(t)
	pool := poolInZone(t, "Asia/Kathmandu")
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	if _, err := rt.CatchUp(context.Background(), audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	for _, e := range written {
		meta, err := json.Marshal(e.Meta)
		if err != nil {
			t.Fatal(err)
		}
		var target, corr, cause, producer *string
		var same bool
		var at time.Time
		var typ, stream, source, tenant string
		var version int64
		var schemaVersion int
		err = pool.QueryRow(context.Background(), `SELECT type, stream, version, source, target, tenant_id, correlation_id, causation_id,
				producer, schema_version, occurred_at, payload = $2::jsonb AND meta = $3::jsonb
			FROM audit_events WHERE event_id = $1`, e.ID, string(e.Payload), string(meta)).
			Scan(&typ, &stream, &version, &source, &target, &tenant, &corr, &cause, &producer, &schemaVersion, &at, &same)
		if err != nil {
			t.Fatalf("audit row of %s: %v", e.ID, err)
		}
		str := func(p *string) string {
			if p == nil {
				return "<null>"
			}
			return *p
		}
		opt := func(s string) string {
			if s == "" {
				return "<null>"
			}
			return s
		}
		got := fmt.Sprint(typ, stream, version, source, str(target), tenant, str(corr), str(cause), str(producer), schemaVersion, at.UTC(), same)
		want := fmt.Sprint(e.Type, e.Stream, e.Version, e.Source, opt(e.Target), e.Meta.TenantID, opt(e.Meta.CorrelationID), opt(e.Meta.CausationID),
			opt(e.Meta.Producer), e.Meta.SchemaVersion, everyTypeClock(e.Position), true)
		if got != want {
			t.Fatalf("audit row of %s (%s):\n%s\nwant\n%s", e.ID, meta, got, want)
		}
	}
}

// perStreamIDStore is a log whose event ids are unique per stream only,
// as on EventStoreDB: events appended under alias ids are read back with
// the id they alias.
type perStreamIDStore struct {
	eventstore.Store
	alias map[uuid.UUID]uuid.UUID
}

func (s perStreamIDStore) Features() eventstore.Features {
	f := s.Store.Features()
	f.PerStreamIDs = true
	return f
}

func (s perStreamIDStore) reid(evs []eventstore.Event) []eventstore.Event {
	out := make([]eventstore.Event, len(evs))
	for i, e := range evs {
		if id, ok := s.alias[e.ID]; ok {
			e.ID = id
		}
		out[i] = e
	}
	return out
}

func (s perStreamIDStore) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	page, err := s.Store.ReadAll(ctx, opts)
	page.Events = s.reid(page.Events)
	return page, err
}

func (s perStreamIDStore) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	sub, err := s.Store.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	return perStreamIDSub{sub, s}, nil
}

type perStreamIDSub struct {
	eventstore.Subscription
	s perStreamIDStore
}

func (c perStreamIDSub) Next(ctx context.Context) ([]eventstore.Event, error) {
	evs, err := c.Subscription.Next(ctx)
	return c.s.reid(evs), err
}

// On a backend whose event ids are unique per stream only (EventStoreDB),
// the same id in two streams is two events: the audit log records both
// instead of parking the second.
func TestAuditKeepsTheSameIDInTwoStreams(t *testing.T) {
	t.Parallel()
	base := logStore(t)
	viewed := func() eventstore.Event {
		return ev("distribution.viewed", 1, "acme", map[string]any{"distribution_id": uuid.New(), "course_id": uuid.New()})
	}
	first := appendTo(t, base, "distribution-1", viewed())[0]
	second := appendTo(t, base, "distribution-2", viewed())[0]
	store := perStreamIDStore{base, map[uuid.UUID]uuid.UUID{second.ID: first.ID}}

	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), audit.Projection())
	run(t, rt)
	waitCaughtUp(t, rt)
	parked, err := rt.ListParked(context.Background(), audit.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 0 {
		t.Fatalf("parked: %+v", parked)
	}
	got := dumpQuery(t, pool, `SELECT stream || ' ' || event_id::text FROM audit_events ORDER BY position`)
	want := []string{"distribution-1 " + first.ID.String(), "distribution-2 " + first.ID.String()}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit_events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Analytics counts each event once, on the UTC day of its timestamp,
// whatever the session's time zone: a session at UTC+14 would put
// evening events on the next day.
func TestAnalyticsCountsByUTCDay(t *testing.T) {
	t.Parallel()
	store, written := everyTypeStore(t)
	pool := poolInZone(t, "Pacific/Kiritimati")
	rt := newRuntime(t, pool, store, fastConfig(), analytics.Projection())
	if _, err := rt.CatchUp(context.Background(), analytics.Name, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	outcomes := map[string]int64{}
	for _, e := range written {
		day := everyTypeClock(e.Position).UTC().Format(time.DateOnly)
		want[e.Meta.TenantID+" "+day+" "+e.Type]++
		if subject, outcome, ok := analytics.Outcome(e.Type); ok {
			outcomes[e.Meta.TenantID+" "+day+" "+subject+" "+outcome]++
		}
	}
	got := map[string]int64{}
	for _, r := range queryRows(t, pool, `SELECT tenant_id || ' ' || day::text || ' ' || event_type AS k, events FROM analytics_event_counts`) {
		got[r["k"].(string)] = r["events"].(int64)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("analytics_event_counts:\n%v\nwant\n%v", got, want)
	}
	gotOutcomes := map[string]int64{}
	for _, r := range queryRows(t, pool, `SELECT tenant_id || ' ' || day::text || ' ' || subject AS k, created, completed, failed FROM analytics_outcomes`) {
		for _, o := range []string{"created", "completed", "failed"} {
			if n := r[o].(int64); n != 0 {
				gotOutcomes[r["k"].(string)+" "+o] = n
			}
		}
	}
	if fmt.Sprint(gotOutcomes) != fmt.Sprint(outcomes) {
		t.Fatalf("analytics_outcomes:\n%v\nwant\n%v", gotOutcomes, outcomes)
	}
}

// Every event delivered twice, live and in catch-up pages, changes none
// of the four read models.
func TestEveryReadModelUnchangedByRedelivery(t *testing.T) {
	t.Parallel()
	store, _ := everyTypeStore(t)
	clean := poolInZone(t, "UTC")
	rt := newRuntime(t, clean, store, fastConfig(), allFour()...)
	for _, n := range rt.Names() {
		if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := dumpEvery(t, clean)

	twice := twiceStore{store}
	live := poolInZone(t, "UTC")
	cfg := fastConfig()
	cfg.BatchSize = 7
	rt = newRuntime(t, live, twice, cfg, allFour()...)
	run(t, rt)
	waitCaughtUp(t, rt)
	pages := poolInZone(t, "UTC")
	rt = newRuntime(t, pages, twice, cfg, allFour()...)
	for _, n := range rt.Names() {
		if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	for name, pool := range map[string]*pgxpool.Pool{"live": live, "pages": pages} {
		if got := dumpEvery(t, pool); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s, every event twice:\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// The read models are the same on a pool in pgx's simple-protocol or exec
// mode (as behind PgBouncer in transaction mode), where parameters travel
// as text: the alerts' details used to go as bytea, which PostgreSQL
// refused as json, so every alert was parked.
func TestEveryReadModelUnderSimpleProtocol(t *testing.T) {
	t.Parallel()
	store, _ := everyTypeStore(t)
	build := func(pool *pgxpool.Pool) []string {
		rt := newRuntime(t, pool, store, fastConfig(), allFour()...)
		for _, n := range rt.Names() {
			if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
				t.Fatalf("CatchUp %s: %v", n, err)
			}
		}
		parked, err := rt.ListParked(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) > 0 {
			t.Fatalf("%d events parked, the first by %s: %s", len(parked), parked[0].Projection, parked[0].Error)
		}
		return dumpEvery(t, pool)
	}
	want := build(poolInZone(t, "UTC"))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		if got := build(poolInMode(t, "America/Los_Angeles", mode)); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%v:\n%s\nwant\n%s", mode, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// A request and a failure of an earlier attempt, parked and retried after
// the next attempt was requested, change nothing the newer attempt set:
// its topic, language, request time, and no failure.
func TestCatalogLateAttemptKeepsTheNewerOne(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course := uuid.New()
	c := func(typ string, version int, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": course}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, version, "acme", p)
	}
	stream := "course-" + course.String()
	old := appendTo(t, store, stream,
		c("course.generation.requested", 2, map[string]any{"topic": "old topic", "attempt": 1, "language": "de"}),
		c("course.generation.failed", 1, map[string]any{"stage": "outlining", "reason": "old failure", "attempt": 1}))
	appendTo(t, store, stream,
		c("course.workflow.transitioned", 1, map[string]any{"from": "failed", "to": "requested"}),
		c("course.generation.requested", 2, map[string]any{"topic": "new topic", "attempt": 2, "language": "fr"}),
		c("course.workflow.transitioned", 1, map[string]any{"from": "requested", "to": "outlining"}))
	late := map[uuid.UUID]bool{old[0].ID: true, old[1].ID: true}
	broken := true
	p := catalog.Projection()
	orig := p.Handler
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		for _, e := range evs {
			if broken && late[e.ID] {
				return projections.Permanent(errTest)
			}
		}
		return orig.Handle(ctx, tx, evs)
	})
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), p)
	if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT concat_ws(' | ', topic, language, attempt, workflow_state, coalesce(failure_reason, '-'), coalesce(failure_stage, '-'),
		failed_at IS NULL, requested_at = $2) FROM course_catalog WHERE course_id = $1`
	var want string
	var requestedAt time.Time
	if err := pool.QueryRow(context.Background(), `SELECT requested_at FROM course_catalog WHERE course_id = $1`, course).Scan(&requestedAt); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), q, course, requestedAt).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if want != "new topic | fr | 2 | outlining | - | - | t | t" {
		t.Fatalf("before the retries: %s", want)
	}
	parked, err := rt.ListParked(context.Background(), catalog.Name)
	if err != nil || len(parked) != 2 {
		t.Fatalf("parked %v %v", parked, err)
	}
	broken = false
	for _, d := range parked {
		if err := rt.RetryParked(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
	}
	var got string
	if err := pool.QueryRow(context.Background(), q, course, requestedAt).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("after the late events of attempt 1: %s, want %s", got, want)
	}
}
