package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// A creation, updates and a deployment to staging, parked and retried
// after later ones were applied, do not move a distribution's title,
// price, currency or staging URL back, nor the course's staging URL and
// deployment time: an update changes only the fields it names, each from
// the latest event in the log that set it.
func TestCatalogLateDistributionFields(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course, a, b := uuid.New(), uuid.New(), uuid.New()
	d := distEventsOf(course)
	update := func(id uuid.UUID, changes map[string]any) eventstore.Event {
		return d("distribution.updated", id, map[string]any{"changes": changes})
	}
	deployed := func(url string) eventstore.Event {
		return d("course.deployed.staging", a, map[string]any{"staging_url": url})
	}
	streamA, streamB, streamC := "distribution-"+a.String(), "distribution-"+b.String(), "course-"+course.String()
	var late []eventstore.Event
	// a: its first update (title, price, currency), an update of its
	// currency and staging URL, and the course's first deployment are
	// late; later updates change each of those fields again.
	appendTo(t, store, streamA, d("distribution.created", a, map[string]any{"channel": "web", "title": "A", "version": "1.0.0"}))
	late = append(late, appendTo(t, store, streamA, update(a, map[string]any{"title": "A1", "price_cents": 1000, "currency": "EUR"}))...)
	appendTo(t, store, streamA, update(a, map[string]any{"price_cents": 1500}), update(a, map[string]any{"title": "A2"}))
	late = append(late, appendTo(t, store, streamA, update(a, map[string]any{"currency": "USD", "staging_url": "https://s.example/a-1"}))...)
	appendTo(t, store, streamA, update(a, map[string]any{"staging_url": "https://s.example/a-2"}))
	late = append(late, appendTo(t, store, streamC, deployed("https://stage.example/1"))...)
	appendTo(t, store, streamC, deployed("https://stage.example/2"))
	appendTo(t, store, streamA, update(a, map[string]any{"currency": "GBP"}))
	// b: its creation is late, after an update of its title.
	late = append(late, appendTo(t, store, streamB, d("distribution.created", b, map[string]any{"channel": "partner", "title": "B", "version": "1.0.0"}))...)
	appendTo(t, store, streamB, update(b, map[string]any{"title": "B1"}))

	want := catalogInOrder(t, store)
	pool, got := catalogWithLate(t, store, late...)
	var row string
	if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' | ',
		(SELECT concat_ws(', ', title, price_cents, currency, staging_url) FROM course_distributions WHERE distribution_id = $1),
		(SELECT concat_ws(', ', title, channel) FROM course_distributions WHERE distribution_id = $2),
		(SELECT staging_url FROM course_catalog WHERE course_id = $3))`, a, b, course).Scan(&row); err != nil {
		t.Fatal(err)
	}
	const expected = "A2, 1500, GBP, https://stage.example/2 | B1, partner | https://stage.example/2"
	if row != expected {
		t.Errorf("after the late events: %s, want %s", row, expected)
	}
	sameCatalog(t, "after the late events", got, want)
}
