package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/catalog"
)

// A course requested with course.generation.requested v1, which has no
// language, is a course in "en" (the v2 schema's default, which the
// upcaster fills in): the catalog, which declares it understands v1,
// shows "en" whether or not the runtime upcasts, and a later attempt
// requested with v1 is in "en" too, not in the language of the attempt
// before it.
func TestCatalogReadsARequestV1AsEnglish(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	legacy, retried := uuid.New(), uuid.New()
	appendTo(t, store, "course-"+legacy.String(),
		ev("course.generation.requested", 1, "acme", map[string]any{"course_id": legacy, "topic": "Legacy", "attempt": 1}))
	appendTo(t, store, "course-"+retried.String(),
		ev("course.generation.requested", 2, "acme", map[string]any{"course_id": retried, "topic": "CQRS", "attempt": 1, "language": "fr"}),
		ev("course.generation.failed", 1, "acme", map[string]any{"course_id": retried, "stage": "requested", "reason": "x", "attempt": 1}),
		ev("course.generation.requested", 1, "acme", map[string]any{"course_id": retried, "topic": "CQRS", "attempt": 2}))

	reg, err := domain.NewRegistry(registry(t))
	if err != nil {
		t.Fatal(err)
	}
	upcasting := fastConfig()
	upcasting.Upcast = reg.Upcast
	for name, cfg := range map[string]projections.Config{"raw": fastConfig(), "upcast": upcasting} {
		pool := database(t)
		rt := newRuntime(t, pool, store, cfg, catalog.Projection())
		if _, err := rt.CatchUp(context.Background(), catalog.Name, 0); err != nil {
			t.Fatal(err)
		}
		for course, want := range map[uuid.UUID]string{legacy: "en", retried: "en"} {
			var got *string
			if err := pool.QueryRow(context.Background(), `SELECT language FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, course).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got == nil || *got != want {
				t.Errorf("%s: language of %s = %s, want %q", name, course, deref(got), want)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// A catalog generation made before migration 8, whose v1-requested
// course has no language, is given "en" by Migrate; a course no request
// reached keeps none.
func TestCatalogMigrationGivesV1CoursesTheirLanguage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := logStore(t)
	legacy, seen, dist := uuid.New(), uuid.New(), uuid.New()
	appendTo(t, store, "course-"+legacy.String(),
		ev("course.generation.requested", 1, "acme", map[string]any{"course_id": legacy, "topic": "Legacy", "attempt": 1}))
	appendTo(t, store, "distribution-"+dist.String(),
		ev("distribution.created", 1, "acme", map[string]any{"course_id": seen, "distribution_id": dist, "channel": "web", "title": "T", "version": "1.0.0"}))

	old := catalogBefore(t, 8)
	pool := database(t)
	rt := newRuntime(t, pool, store, fastConfig(), old)
	if _, err := rt.CatchUp(ctx, catalog.Name, 0); err != nil {
		t.Fatal(err)
	}
	// What the catalog wrote for a v1 request before.
	if _, err := pool.Exec(ctx, `UPDATE course_catalog SET language = NULL`); err != nil {
		t.Fatal(err)
	}
	newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	for course, want := range map[uuid.UUID]string{legacy: "en", seen: "NULL"} {
		var got *string
		if err := pool.QueryRow(ctx, `SELECT language FROM course_catalog WHERE tenant_id = 'acme' AND course_id = $1`, course).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if deref(got) != want {
			t.Errorf("language of %s after the migration = %s, want %s", course, deref(got), want)
		}
	}
}
