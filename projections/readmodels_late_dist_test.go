package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// A publication, an unpublication and version bumps of a distribution,
// parked and retried after later ones were applied, do not move its
// publication or version back: the catalog does not show an unpublished
// course as published, nor an older version as the one published.
func TestCatalogLatePublicationAndVersion(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course, a, b := uuid.New(), uuid.New(), uuid.New()
	d := distEventsOf(course)
	bump := func(id uuid.UUID, from, to string) eventstore.Event {
		return d("distribution.version_bumped", id, map[string]any{"bump": "minor", "from_version": from, "to_version": to})
	}
	// a: published, then unpublished; its publication is applied late.
	lateA := appendTo(t, store, "distribution-"+a.String(),
		d("distribution.created", a, map[string]any{"channel": "web", "title": "a", "version": "1.0.0"}),
		d("distribution.published", a, map[string]any{"version": "1.0.0"}))
	appendTo(t, store, "distribution-"+a.String(), d("distribution.unpublished", a, nil))
	// b: unpublished, then published again and bumped twice; the
	// unpublication and the first bump are applied late.
	appendTo(t, store, "distribution-"+b.String(),
		d("distribution.created", b, map[string]any{"channel": "partner", "title": "b", "version": "1.0.0"}),
		d("distribution.published", b, map[string]any{"version": "1.0.0"}))
	lateB := appendTo(t, store, "distribution-"+b.String(), d("distribution.unpublished", b, nil), bump(b, "1.0.0", "1.1.0"))
	appendTo(t, store, "distribution-"+b.String(),
		d("distribution.published", b, map[string]any{"version": "1.1.0"}),
		bump(b, "1.1.0", "1.2.0"))

	want := catalogInOrder(t, store)
	pool, got := catalogWithLate(t, store, lateA[1], lateB[0], lateB[1])
	var row string
	if err := pool.QueryRow(context.Background(), `SELECT concat_ws(' | ', publication_status, published_version) FROM course_catalog`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if row != "published | 1.2.0" {
		t.Errorf("after the late events: %s, want published | 1.2.0", row)
	}
	sameCatalog(t, "after the late events", got, want)
}

// distEventsOf makes acme's events of distributions of course: an event of
// type typ for distribution id, its payload naming both, with extra's
// fields added.
func distEventsOf(course uuid.UUID) func(typ string, id uuid.UUID, extra map[string]any) eventstore.Event {
	return func(typ string, id uuid.UUID, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": course, "distribution_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return ev(typ, 1, "acme", p)
	}
}
