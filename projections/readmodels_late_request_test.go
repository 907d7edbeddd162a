package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// The request of a course's current attempt, parked and retried after the
// attempt's own outline, lessons, quiz, landing page and completion or
// failure were applied, clears only what earlier attempts left: not the
// generated lessons, quiz, landing page, completion or failure of the
// attempt it starts.
func TestCatalogLateRequestOfTheCurrentAttempt(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	type course struct {
		id     uuid.UUID
		stream string
	}
	newCourse := func() course { id := uuid.New(); return course{id, "course-" + id.String()} }
	c := func(co course, typ string, version int, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": co.id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, version, "acme", p)
	}
	req := func(co course, topic string, attempt int) eventstore.Event {
		return c(co, "course.generation.requested", 2, map[string]any{"topic": topic, "attempt": attempt, "language": "en"})
	}
	outline := func(co course, title string, slots ...int) eventstore.Event {
		var lessons []map[string]any
		for _, s := range slots {
			lessons = append(lessons, map[string]any{"slot": s, "title": "l"})
		}
		return c(co, "course.outline.created", 1, map[string]any{"title": title, "lessons": lessons})
	}
	lesson := func(co course, slot int) eventstore.Event {
		return c(co, "course.lesson.generated", 1, map[string]any{"slot": slot, "title": "l"})
	}
	quiz := func(co course, n int) eventstore.Event {
		return c(co, "course.quiz.created", 1, map[string]any{"quiz_id": uuid.New(), "question_count": n})
	}
	landing := func(co course, slug string) eventstore.Event {
		return c(co, "course.landing_page.created", 1, map[string]any{"headline": slug, "slug": slug})
	}
	failed := func(co course, stage string, attempt int) eventstore.Event {
		return c(co, "course.generation.failed", 1, map[string]any{"stage": stage, "reason": "model unavailable", "attempt": attempt})
	}
	completed := func(co course, title string, lessons, attempt int) eventstore.Event {
		return c(co, "course.generation.completed", 1, map[string]any{"title": title, "lesson_count": lessons, "attempt": attempt})
	}
	var late []eventstore.Event

	// a: attempt 1 generates a lesson, a quiz and a landing page, and
	// fails in review; attempt 2 completes with two lessons, its own quiz
	// and landing page. Its request, and one of its lessons, are late.
	a := newCourse()
	appendTo(t, store, a.stream, req(a, "old", 1), outline(a, "Old", 1), lesson(a, 1), quiz(a, 4), landing(a, "old"), failed(a, "review", 1))
	lateA := appendTo(t, store, a.stream, req(a, "new", 2), outline(a, "New", 1, 2), lesson(a, 1))
	appendTo(t, store, a.stream, lesson(a, 2), quiz(a, 7), landing(a, "new"), completed(a, "New", 2, 2))
	late = append(late, lateA[0], lateA[2])

	// b: the request of its first attempt is late; the attempt completes.
	b := newCourse()
	lateB := appendTo(t, store, b.stream, req(b, "first", 1))
	appendTo(t, store, b.stream, outline(b, "First", 1), lesson(b, 1), quiz(b, 3), landing(b, "first"), completed(b, "First", 1, 1))
	late = append(late, lateB[0])

	// c: attempt 1 fails in review with a quiz and a landing page; attempt
	// 2, whose request is late, generates a lesson and fails in turn.
	co := newCourse()
	appendTo(t, store, co.stream, req(co, "one", 1), outline(co, "One", 1, 2), lesson(co, 1), lesson(co, 2), quiz(co, 5),
		landing(co, "one"), failed(co, "review", 1))
	lateC := appendTo(t, store, co.stream, req(co, "two", 2))
	appendTo(t, store, co.stream, outline(co, "Two", 1, 2), lesson(co, 1), failed(co, "generating", 2))
	late = append(late, lateC[0])

	want := catalogInOrder(t, store)
	pool, got := catalogWithLate(t, store, late...)
	for _, tc := range []struct {
		course course
		want   string
	}{
		{a, "2 | new | 2 | 7 | new | completed | - | -"},
		{b, "1 | first | 1 | 3 | first | completed | - | -"},
		{co, "2 | two | 1 | - | - | - | generating | failed"},
	} {
		var row string
		if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' | ', attempt, topic, lessons_generated,
			coalesce(quiz_questions::text, '-'), coalesce(landing_page_slug, '-'), CASE WHEN completed_at IS NULL THEN '-' ELSE 'completed' END,
			coalesce(failure_stage, '-'), CASE WHEN failed_at IS NULL THEN '-' ELSE 'failed' END)
			FROM course_catalog WHERE course_id = $1`, tc.course.id).Scan(&row); err != nil {
			t.Fatal(err)
		}
		if row != tc.want {
			t.Errorf("course %s after its late request: %s, want %s", tc.course.id, row, tc.want)
		}
	}
	sameCatalog(t, "after the late requests", got, want)
}
