package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/catalog"
)

const (
	dumpCatalogRows = `SELECT t::text FROM course_catalog t ORDER BY tenant_id, course_id`
	dumpDistRows    = `SELECT t::text FROM course_distributions t ORDER BY tenant_id, distribution_id`
)

// catalogInOrder is the catalog of the log applied in log order.
func catalogInOrder(t *testing.T, store eventstore.Store) []string {
	t.Helper()
	pool := poolInZone(t, "UTC")
	rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	return append(dumpQuery(t, pool, dumpCatalogRows), dumpQuery(t, pool, dumpDistRows)...)
}

// catalogWithLate is the catalog of the log whose events late are parked
// the first time and retried, in log order, once every other event is
// applied (as an operator retries dead letters after a fix).
func catalogWithLate(t *testing.T, store eventstore.Store, late ...eventstore.Event) (*pgxpool.Pool, []string) {
	t.Helper()
	ids := map[uuid.UUID]bool{}
	for _, e := range late {
		ids[e.ID] = true
	}
	broken := true
	p := catalog.Projection()
	orig := p.Handler
	p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
		for _, e := range evs {
			if broken && ids[e.ID] {
				return projections.Permanent(errTest)
			}
		}
		return orig.Handle(ctx, tx, evs)
	})
	pool := poolInZone(t, "UTC")
	rt := newRuntime(t, pool, store, fastConfig(), p)
	if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	parked, err := rt.ListParked(context.Background(), catalog.Name)
	if err != nil || len(parked) != len(late) {
		t.Fatalf("parked %v %v, want %d", parked, err, len(late))
	}
	broken = false
	for _, d := range parked {
		if err := rt.RetryParked(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
	}
	return pool, append(dumpQuery(t, pool, dumpCatalogRows), dumpQuery(t, pool, dumpDistRows)...)
}

func sameCatalog(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n%s\nwant (the log applied in order)\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The outline, a lesson, the quiz and the landing page of a failed
// attempt, parked and retried after the next attempt was requested and
// outlined, change nothing of the newer attempt: not its title or planned
// lessons, not its count of generated lessons, no quiz or landing page it
// does not have.
func TestCatalogLateContentOfAnEarlierAttempt(t *testing.T) {
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
	tr := func(from, to string) eventstore.Event {
		return c("course.workflow.transitioned", 1, map[string]any{"from": from, "to": to})
	}
	stream := "course-" + course.String()
	appendTo(t, store, stream, c("course.generation.requested", 2, map[string]any{"topic": "old", "attempt": 1, "language": "de"}),
		tr("none", "requested"), tr("requested", "outlining"))
	old := appendTo(t, store, stream,
		c("course.outline.created", 1, map[string]any{"title": "Old outline", "lessons": []map[string]any{{"slot": 1, "title": "a"}, {"slot": 2, "title": "b"}, {"slot": 3, "title": "c"}}}),
		tr("outlining", "generating"),
		c("course.lesson.generated", 1, map[string]any{"slot": 1, "title": "a"}),
		c("course.quiz.created", 1, map[string]any{"quiz_id": uuid.New(), "question_count": 9}),
		c("course.landing_page.created", 1, map[string]any{"headline": "Old", "slug": "old"}))
	appendTo(t, store, stream,
		c("course.generation.failed", 1, map[string]any{"stage": "generating", "reason": "model unavailable", "attempt": 1}),
		tr("generating", "failed"),
		c("course.generation.requested", 2, map[string]any{"topic": "new", "attempt": 2, "language": "fr"}),
		tr("failed", "requested"), tr("requested", "outlining"),
		c("course.outline.created", 1, map[string]any{"title": "New outline", "lessons": []map[string]any{{"slot": 1, "title": "x"}, {"slot": 2, "title": "y"}}}),
		tr("outlining", "generating"),
		c("course.lesson.generated", 1, map[string]any{"slot": 1, "title": "x"}))

	want := catalogInOrder(t, store)
	pool, got := catalogWithLate(t, store, old[0], old[2], old[3], old[4])
	var row string
	if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' | ', title, lesson_count, lessons_generated,
		coalesce(quiz_questions::text, '-'), coalesce(landing_page_slug, '-')) FROM course_catalog`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if row != "New outline | 2 | 1 | - | -" {
		t.Errorf("after the late events of attempt 1: %s, want New outline | 2 | 1 | - | -", row)
	}
	sameCatalog(t, "after the late events of attempt 1", got, want)
}
