package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/catalog"
)

const (
	dumpCountRows    = `SELECT t::text FROM analytics_event_counts t ORDER BY tenant_id, day, event_type`
	dumpOutcomeRows  = `SELECT t::text FROM analytics_outcomes t ORDER BY tenant_id, day, subject`
	dumpGenDailyRows = `SELECT t::text FROM analytics_generation_daily t ORDER BY tenant_id, day`
)

// analyticsAll is every analytics table's rows.
func analyticsAll(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	return append(append(dumpQuery(t, pool, dumpCountRows), dumpQuery(t, pool, dumpOutcomeRows)...), dumpQuery(t, pool, dumpGenDailyRows)...)
}

// outcomeSums is the outcome tables summed over days, as text:
// "subject created completed failed" lines, then one
// "generation requested completed failed rate" line.
func outcomeSums(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows := dumpQuery(t, pool, `SELECT concat_ws(' ', subject, sum(created), sum(completed), sum(failed))
		FROM analytics_outcomes GROUP BY subject ORDER BY subject`)
	var gen string
	if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' ', 'generation', coalesce(sum(requested), 0), coalesce(sum(completed), 0),
		coalesce(sum(failed), 0), coalesce(max(success_rate)::text, '-')) FROM analytics_generation_daily`).Scan(&gen); err != nil {
		t.Fatal(err)
	}
	return strings.Join(append(rows, gen), "\n")
}

// Analytics' outcome tables count what the modules decided: an outcome
// or generation event of a module's type only in the stream of the
// aggregate its payload names. The same types appended raw anywhere else
// (a producer's stream, another aggregate's stream) are still counted in
// analytics_event_counts, but not as outcomes, so a tenant cannot raise
// its own success rate. The same event in its aggregate's stream counts,
// and a rebuild gives the live rows.
func TestAnalyticsOutcomesOnlyModuleStreams(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course, other, dist, mission, approval := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	ir := "ir-7"
	sha := strings.Repeat("ab", 32)
	c := func(id uuid.UUID, typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, "acme", p)
	}
	completed := func(id uuid.UUID) eventstore.Event {
		return c(id, "course.generation.completed", map[string]any{"title": "Go", "lesson_count": 3, "attempt": 1})
	}
	failed := func(id uuid.UUID) eventstore.Event {
		return c(id, "course.generation.failed", map[string]any{"stage": "generating", "reason": "timeout", "attempt": 1})
	}
	requested := func(id uuid.UUID) eventstore.Event {
		return c(id, "course.generation.requested", map[string]any{"topic": "Go", "attempt": 1})
	}
	cs, os := "course-"+course.String(), "course-"+other.String()

	// What the modules decided: other's generation failed, course's was
	// requested.
	appendTo(t, store, os, requested(other), failed(other))
	appendTo(t, store, cs, requested(course))
	total := 3

	// What a tenant appended raw: completions (and a failure, a request,
	// a mission, a DAG check, an approval and a distribution) in its own
	// stream; course's completion in other's stream and other's in
	// course's; an approval in its IR's stream.
	forged := appendTo(t, store, "web-x",
		completed(course), completed(course), completed(other),
		failed(course), requested(course),
		ev("mission.completed", 1, "acme", map[string]any{"mission_id": mission, "task_count": 1}),
		ev("ir.dag_diff_failed", 1, "acme", map[string]any{"ir_id": ir, "ir_sha256": sha, "severity": "critical",
			"missing_steps": []string{"s1"}, "unexpected_nodes": []string{}, "changed_nodes": []string{}}),
		ev("distribution.created", 1, "acme", map[string]any{"course_id": course, "distribution_id": dist, "channel": "web", "title": "Fake", "version": "1.0.0"}),
		// A producer's own views are legitimate analytics, counted below.
		ev("distribution.viewed", 1, "acme", map[string]any{"course_id": course, "distribution_id": dist, "visitor_id": "v1"}))
	forged = append(forged, appendTo(t, store, os, completed(course))...)
	forged = append(forged, appendTo(t, store, cs, completed(other))...)
	forged = append(forged, appendTo(t, store, "ir-"+ir,
		ev("ir.approval_created", 1, "acme", map[string]any{"approval_id": approval, "ir_id": ir, "token_sha256": sha, "expires_at": "2030-01-01T00:00:00Z"}))...)
	total += len(forged)

	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), analytics.Projection())
	stop := run(t, rt)
	waitCaughtUp(t, rt)

	want := "course.generation 0 0 1\ngeneration 2 0 1 0.0000"
	if got := outcomeSums(t, pool); got != want {
		t.Errorf("with forged outcomes in the log:\n%s\nwant (only other's failure, and the two requests in course streams)\n%s", got, want)
	}
	var events int
	if err := pool.QueryRow(context.Background(), `SELECT sum(events) FROM analytics_event_counts`).Scan(&events); err != nil || events != total {
		t.Errorf("analytics_event_counts sums to %d (%v), want %d: every event, forged or not, is counted", events, err, total)
	}
	var forgedCompletions int
	if err := pool.QueryRow(context.Background(), `SELECT sum(events) FROM analytics_event_counts WHERE event_type = 'course.generation.completed'`).Scan(&forgedCompletions); err != nil || forgedCompletions != 5 {
		t.Errorf("analytics_event_counts has %d course.generation.completed (%v), want the 5 forged ones", forgedCompletions, err)
	}

	// The same completion in the course's own stream counts, and so do
	// the mission's, the DAG check's, the approval's and the
	// distribution's in theirs.
	appendTo(t, store, cs, completed(course))
	appendTo(t, store, "mission-"+mission.String(), ev("mission.completed", 1, "acme", map[string]any{"mission_id": mission, "task_count": 1}))
	appendTo(t, store, "ir-"+ir, ev("ir.dag_diff_failed", 1, "acme", map[string]any{"ir_id": ir, "ir_sha256": sha, "severity": "critical",
		"missing_steps": []string{"s1"}, "unexpected_nodes": []string{}, "changed_nodes": []string{}}))
	appendTo(t, store, "approval-"+approval.String(),
		ev("ir.approval_created", 1, "acme", map[string]any{"approval_id": approval, "ir_id": ir, "token_sha256": sha, "expires_at": "2030-01-01T00:00:00Z"}))
	appendTo(t, store, "distribution-"+dist.String(),
		ev("distribution.created", 1, "acme", map[string]any{"course_id": course, "distribution_id": dist, "channel": "web", "title": "ES", "version": "1.0.0"}))
	waitCaughtUp(t, rt)
	want = strings.Join([]string{
		"course.generation 0 1 1",
		"distribution 1 0 0",
		"ir.approval 1 0 0",
		"ir.dag_diff 0 0 1",
		"mission 0 1 0",
		"generation 2 1 1 0.5000",
	}, "\n")
	if got := outcomeSums(t, pool); got != want {
		t.Errorf("after the same events in their aggregates' streams:\n%s\nwant\n%s", got, want)
	}
	stop()

	live := analyticsAll(t, pool)
	if _, err := rt.Rebuild(context.Background(), analytics.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, "analytics rebuilt", analyticsAll(t, pool), live)

	// One large batch and one event per transaction give the same rows.
	for _, size := range []int{1, 1000} {
		p := database(t)
		cfg := fastConfig()
		cfg.BatchSize = size
		r := newRuntime(t, p, store, cfg, analytics.Projection())
		if _, err := r.CatchUp(context.Background(), analytics.Name, 0); err != nil {
			t.Fatal(err)
		}
		sameCatalog(t, fmt.Sprintf("analytics in batches of %d", size), analyticsAll(t, p), live)
	}
}

// Analytics and the catalog agree on which course and distribution
// events a module decided: the ones the catalog counts in
// catalog_skipped_events are exactly the ones analytics.OwnStream puts
// outside their aggregate's stream.
func TestAnalyticsAndCatalogAgreeOnModuleStreams(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	writeForgedLog(t, store)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection(), analytics.Projection())
	for _, n := range rt.Names() {
		if _, err := rt.CatchUp(context.Background(), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	page, err := store.ReadAll(context.Background(), eventstore.ReadAllOptions{Limit: 10_000})
	if err != nil || !page.End {
		t.Fatalf("read the log: %v (end %v)", err, page.End)
	}
	counts := map[string]int{}
	for _, e := range page.Events {
		if !strings.HasPrefix(e.Type, "course.") && !strings.HasPrefix(e.Type, "distribution.") {
			continue
		}
		if want, ok := analytics.OwnStream(e.Type, e.Payload); !ok || e.Stream != want {
			counts[fmt.Sprintf("%s %s %s", e.Meta.TenantID, e.Stream, e.Type)]++
		}
	}
	var want []string
	for k, n := range counts {
		want = append(want, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(want)
	got := dumpQuery(t, pool, `SELECT concat_ws(' ', tenant_id, stream, event_type, events) FROM catalog_skipped_events ORDER BY 1`)
	if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("catalog_skipped_events:\n%s\nwant (outside analytics.OwnStream)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Every registered event type is a module's, and OwnStream names a
// stream of that module's category (aggregates/domain.CategoryOf), with
// the id the payload names: a new module or type must be given its
// aggregate's stream before analytics can count its outcomes.
func TestAnalyticsOwnStreamCoversEveryType(t *testing.T) {
	t.Parallel()
	ids := map[string]string{"course_id": "c1", "distribution_id": "d1", "ir_id": "i1", "approval_id": "a1", "mission_id": "m1"}
	payload, _ := json.Marshal(ids)
	for _, typ := range registry(t).Types() {
		want, ok := analytics.OwnStream(typ, payload)
		if !ok {
			t.Errorf("%s: OwnStream names no module stream", typ)
			continue
		}
		cat, ok := domain.CategoryOf(want)
		if id := strings.TrimPrefix(want, cat.Prefix); !ok || !slices.Contains(slices.Collect(maps.Values(ids)), id) {
			t.Errorf("%s: OwnStream is %q, no module's stream of an id the payload names", typ, want)
		}
	}
	// The streams the modules write them into.
	for typ, want := range map[string]string{
		"course.generation.completed":      "course-c1",
		"course.deployed.staging":          "course-c1",
		"distribution.created":             "distribution-d1",
		"distribution.micro_niche_created": "distribution-d1",
		"ir.approval_created":              "approval-a1",
		"ir.approval_invalid":              "approval-a1",
		"ir.dag_diff_failed":               "ir-i1",
		"ir.validated_pass":                "ir-i1",
		"mission.task.completed":           "mission-m1",
		"mission.failed":                   "mission-m1",
	} {
		if got, ok := analytics.OwnStream(typ, payload); !ok || got != want {
			t.Errorf("%s: OwnStream %q %v, want %q", typ, got, ok, want)
		}
	}
	if want, ok := analytics.OwnStream("course.generation.completed", []byte(`not json`)); !ok || want != "" {
		t.Errorf("an undecodable payload: %q %v, want no stream (no event is in it)", want, ok)
	}
	if _, ok := analytics.OwnStream("signup.completed", payload); ok {
		t.Error("a type of no module has a module stream")
	}
}
