package projections_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/projections/alerts"
	"github.com/brainhq/eventstream/projections/analytics"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/projections/catalog"
)

// An integer written as 12.0 or 1.2e1 passes the schemas, so every read
// model applies it rather than parking a valid event. Both stores: the
// PostgreSQL one keeps 12.0 as written (jsonb normalises 1.2e1 to 12),
// the memory one keeps both.
func TestReadModelsApplyIntegersWrittenWithAFractionOrAnExponent(t *testing.T) {
	t.Parallel()
	stores := map[string]func(testing.TB) eventstore.Store{
		"postgres": func(tb testing.TB) eventstore.Store { return logStore(tb) },
		"memory": func(tb testing.TB) eventstore.Store {
			s, err := memory.New(registry(tb))
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := open(t)
			course, dist := uuid.New(), uuid.New()
			c := func(typ string, extra map[string]any) eventstore.Event {
				p := map[string]any{"course_id": course}
				for k, v := range extra {
					p[k] = v
				}
				return ev(typ, 1, "acme", p)
			}
			n := func(s string) json.Number { return json.Number(s) }
			appendTo(t, store, "course-"+course.String(),
				c("course.generation.requested", map[string]any{"topic": "Event sourcing", "attempt": n("2.0")}),
				c("course.quiz.created", map[string]any{"quiz_id": uuid.New(), "question_count": n("1.2e1")}),
				c("course.generation.completed", map[string]any{"title": "ES", "lesson_count": n("30e-1"), "attempt": n("2e0")}))
			appendTo(t, store, "distribution-"+dist.String(),
				c("distribution.created", map[string]any{"distribution_id": dist, "channel": "web", "title": "ES", "version": "1.0.0"}),
				c("distribution.updated", map[string]any{"distribution_id": dist, "changes": map[string]any{"price_cents": n("4.9e3")}}))
			pool := database(t)
			rt := newRuntime(t, pool, store, fastConfig(), catalog.Projection(), analytics.Projection(), alerts.Projection(), audit.Projection())
			runUntilCaughtUp(t, rt)
			for _, p := range []string{catalog.Name, analytics.Name, alerts.Name, audit.Name} {
				if parked, err := rt.ListParked(context.Background(), p); err != nil || len(parked) != 0 {
					t.Fatalf("%s parked %v %v", p, parked, err)
				}
			}
			got := queryRows(t, pool, `SELECT attempt, quiz_questions, lesson_count FROM course_catalog WHERE course_id = $1`, course)
			if len(got) != 1 || got[0]["attempt"] != int64(2) || got[0]["quiz_questions"] != int32(12) || got[0]["lesson_count"] != int32(3) {
				t.Fatalf("catalog row %v, want attempt 2, 12 questions, 3 lessons", got)
			}
			got = queryRows(t, pool, `SELECT price_cents FROM course_distributions WHERE distribution_id = $1`, dist)
			if len(got) != 1 || got[0]["price_cents"] != int64(4900) {
				t.Fatalf("distribution row %v, want price_cents 4900", got)
			}
		})
	}
}
