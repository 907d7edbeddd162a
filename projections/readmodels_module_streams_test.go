package projections_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
)

const dumpSkippedRows = `SELECT t::text FROM catalog_skipped_events t ORDER BY tenant_id, stream, event_type`

// forgedLog is a log of tenant acme with two courses and a distribution
// as the modules write them (each event in its aggregate's stream), and
// events of the same types no module decided.
type forgedLog struct {
	course, other, dist, fake uuid.UUID
	forged                    []eventstore.Event
}

// writeForgedLog writes it: course requested, other requested, dist
// created and viewed once, by the modules; and, appended raw, course
// completed and distributions published, priced, viewed and clicked in a
// producer's stream (web-x), a course event in another course's stream,
// a distribution event in another distribution's stream and a course
// event in a distribution's stream.
func writeForgedLog(t *testing.T, store eventstore.Store) forgedLog {
	t.Helper()
	l := forgedLog{course: uuid.New(), other: uuid.New(), dist: uuid.New(), fake: uuid.New()}
	c := func(id uuid.UUID, typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, "acme", p)
	}
	d := func(id uuid.UUID, typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": l.course, "distribution_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, "acme", p)
	}
	completed := func(id uuid.UUID) eventstore.Event {
		return c(id, "course.generation.completed", map[string]any{"title": "Forged", "lesson_count": 9, "attempt": 1})
	}
	cs, os, ds := "course-"+l.course.String(), "course-"+l.other.String(), "distribution-"+l.dist.String()

	// What the modules decided.
	appendTo(t, store, cs,
		c(l.course, "course.generation.requested", map[string]any{"topic": "Event sourcing", "attempt": 1}),
		c(l.course, "course.workflow.transitioned", map[string]any{"from": "none", "to": "requested"}))
	appendTo(t, store, os, c(l.other, "course.generation.requested", map[string]any{"topic": "CQRS", "attempt": 1}))
	appendTo(t, store, ds,
		d(l.dist, "distribution.created", map[string]any{"channel": "web", "title": "ES", "version": "1.0.0"}),
		d(l.dist, "distribution.viewed", map[string]any{"visitor_id": "v1"}))

	// What a tenant appended raw.
	forge := func(stream string, evs ...eventstore.Event) {
		l.forged = append(l.forged, appendTo(t, store, stream, evs...)...)
	}
	forge("web-x",
		completed(l.course),
		c(l.course, "course.workflow.transitioned", map[string]any{"from": "requested", "to": "completed"}),
		d(l.fake, "distribution.created", map[string]any{"channel": "web", "title": "Fake", "version": "9.9.9"}),
		d(l.fake, "distribution.published", map[string]any{"version": "9.9.9"}),
		d(l.dist, "distribution.updated", map[string]any{"changes": map[string]any{"price_cents": 1, "currency": "EUR"}}),
		d(l.dist, "distribution.published", map[string]any{"version": "6.6.6"}),
		d(l.dist, "distribution.viewed", map[string]any{"visitor_id": "v2"}),
		d(l.dist, "distribution.viewed", map[string]any{"visitor_id": "v3"}),
		d(l.dist, "distribution.enrollment_clicked", nil))
	forge(os, completed(l.course)) // course's completion in other's stream
	forge(cs, completed(l.other))  // and other's in course's
	forge("distribution-"+l.fake.String(),
		d(l.dist, "distribution.updated", map[string]any{"changes": map[string]any{"price_cents": 2, "currency": "USD"}}))
	forge(ds, c(l.course, "course.deployed.staging", map[string]any{"distribution_id": l.dist, "staging_url": "https://evil.example"}))
	return l
}

// catalogAll is every catalog table's rows, the skipped events' included.
func catalogAll(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	return append(append(dumpQuery(t, pool, dumpCatalogRows), dumpQuery(t, pool, dumpDistRows)...), dumpQuery(t, pool, dumpSkippedRows)...)
}

// The catalog shows only what the modules decided: a course or
// distribution event is applied only in the stream of the aggregate its
// payload names. The same event in that stream is applied. The others
// are counted per tenant, stream and type, not parked, and the audit log
// still records them.
func TestCatalogAppliesOnlyModuleStreams(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	l := writeForgedLog(t, store)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection(), audit.Projection())
	stop := run(t, rt)
	waitCaughtUp(t, rt)

	courses := dumpQuery(t, pool, `SELECT concat_ws(' | ', course_id, workflow_state, coalesce(title, '-'), lesson_count,
		completed_at IS NOT NULL, coalesce(staging_url, '-'), publication_status, coalesce(published_version, '-'), views, enrollment_clicks)
		FROM course_catalog ORDER BY topic`)
	want := []string{
		l.other.String() + " | requested | - | 0 | f | - | unpublished | - | 0 | 0",
		l.course.String() + " | requested | - | 0 | f | - | unpublished | - | 1 | 0",
	}
	if strings.Join(courses, "\n") != strings.Join(want, "\n") {
		t.Errorf("course_catalog:\n%s\nwant\n%s", strings.Join(courses, "\n"), strings.Join(want, "\n"))
	}
	dists := dumpQuery(t, pool, `SELECT concat_ws(' | ', distribution_id, title, version, published, coalesce(price_cents::text, '-'),
		coalesce(currency, '-'), coalesce(staging_url, '-'), views, enrollment_clicks) FROM course_distributions`)
	wantDist := l.dist.String() + " | ES | 1.0.0 | f | - | - | - | 1 | 0"
	if len(dists) != 1 || dists[0] != wantDist {
		t.Errorf("course_distributions:\n%s\nwant\n%s", strings.Join(dists, "\n"), wantDist)
	}

	skipped := dumpQuery(t, pool, `SELECT concat_ws(' ', tenant_id, stream, event_type, events) FROM catalog_skipped_events ORDER BY 1`)
	wantSkipped := []string{
		"acme course-" + l.course.String() + " course.generation.completed 1",
		"acme course-" + l.other.String() + " course.generation.completed 1",
		"acme distribution-" + l.dist.String() + " course.deployed.staging 1",
		"acme distribution-" + l.fake.String() + " distribution.updated 1",
		"acme web-x course.generation.completed 1",
		"acme web-x course.workflow.transitioned 1",
		"acme web-x distribution.created 1",
		"acme web-x distribution.enrollment_clicked 1",
		"acme web-x distribution.published 2",
		"acme web-x distribution.updated 1",
		"acme web-x distribution.viewed 2",
	}
	slices.Sort(wantSkipped)
	if strings.Join(skipped, "\n") != strings.Join(wantSkipped, "\n") {
		t.Errorf("catalog_skipped_events:\n%s\nwant\n%s", strings.Join(skipped, "\n"), strings.Join(wantSkipped, "\n"))
	}
	if parked, err := rt.ListParked(context.Background(), catalog.Name); err != nil || len(parked) != 0 {
		t.Errorf("parked %v %v, want none: a forged event is no failure to retry", parked, err)
	}
	forged := make([]uuid.UUID, len(l.forged))
	for i, e := range l.forged {
		forged[i] = e.ID
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE event_id = ANY($1)`, forged).Scan(&n); err != nil || n != len(forged) {
		t.Errorf("audit_events has %d of the %d forged events (%v)", n, len(forged), err)
	}

	// The same completion in the course's own stream is applied.
	appendTo(t, store, "course-"+l.course.String(),
		ev("course.generation.completed", 1, "acme", map[string]any{"course_id": l.course, "title": "Event sourcing in Go", "lesson_count": 3, "attempt": 1}))
	waitCaughtUp(t, rt)
	var row string
	if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' | ', workflow_state, title, lesson_count, completed_at IS NOT NULL)
		FROM course_catalog WHERE course_id = $1`, l.course).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if row != "completed | Event sourcing in Go | 3 | t" {
		t.Errorf("after the completion in course-%s: %s", l.course, row)
	}
	stop()

	before := catalogAll(t, pool)
	if _, err := rt.Rebuild(context.Background(), catalog.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, "rebuilt", catalogAll(t, pool), before)
}

// Applied one event per transaction, in one large batch, or with forged
// events parked and retried after later ones, the catalog skips the same
// events and records them alike: the first and last of a stream's
// skipped events are the first and last in the log, whatever order they
// were applied in.
func TestCatalogSkippedEventsSameInBatchesAndLate(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	l := writeForgedLog(t, store)
	// More forged completions into web-x, later in the log.
	again := ev("course.generation.completed", 1, "acme", map[string]any{"course_id": l.course, "title": "Again", "lesson_count": 1, "attempt": 1})
	more := appendTo(t, store, "web-x", again, again)

	withBatch := func(size int) []string {
		pool := poolInZone(t, "UTC")
		cfg := fastConfig()
		cfg.BatchSize = size
		rt := newRuntime(t, pool, store, cfg, catalog.Projection())
		if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
			t.Fatal(err)
		}
		return catalogAll(t, pool)
	}
	want := withBatch(1)
	var row string
	for _, r := range want {
		if strings.Contains(r, "web-x,course.generation.completed") {
			row = r
		}
	}
	if !strings.Contains(row, ",3,"+l.forged[0].ID.String()+",") || !strings.Contains(row, ","+more[1].ID.String()+",") {
		t.Fatalf("web-x's forged completions: %q, want 3 from %s to %s", row, l.forged[0].ID, more[1].ID)
	}
	sameCatalog(t, "in one batch", withBatch(1000), want)

	pool, _ := catalogWithLate(t, store, l.forged[0], more[1])
	sameCatalog(t, "with the first and last forged completions retried late", catalogAll(t, pool), want)
}
