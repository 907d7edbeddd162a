package projections_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/catalog"
)

// A distribution row keeps the course of the event that made it: here a
// deployment of course A to staging for a distribution that is created
// afterwards for course B. The distribution's own events name B, yet A's
// figures are summed from the row, so they must follow its publication
// and views one event at a time (live) as in one batch (a rebuild): A's
// figures used to be recomputed only by a batch whose events named A, so
// live they stayed those of the deployment (unpublished, no views) and a
// rebuild showed the row published and viewed.
func TestCatalogFiguresFollowTheRowsCourseLiveAsRebuilt(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	a, b, d := uuid.New(), uuid.New(), uuid.New()
	ev := func(typ string, p map[string]any) eventstore.Event {
		raw, _ := json.Marshal(p)
		return eventstore.Event{ID: uuid.New(), Type: typ, Source: "s", Payload: raw, Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "acme"}}
	}
	appendTo(t, store, "course-"+a.String(),
		ev("course.deployed.staging", map[string]any{"course_id": a, "distribution_id": d, "staging_url": "https://staging.example/a"}))
	appendTo(t, store, "distribution-"+d.String(),
		ev("distribution.created", map[string]any{"course_id": b, "distribution_id": d, "channel": "web", "title": "t", "version": "1.0.0"}),
		ev("distribution.published", map[string]any{"course_id": b, "distribution_id": d, "version": "1.0.0"}),
		ev("distribution.viewed", map[string]any{"course_id": b, "distribution_id": d}))

	pool := database(t)
	cfg := fastConfig()
	cfg.BatchSize = 1
	rt := newRuntime(t, pool, store, cfg, catalog.Projection())
	runUntilCaughtUp(t, rt)
	dumpCatalog := func() []string {
		return append(dumpQuery(t, pool, dumpCatalogRows), dumpQuery(t, pool, dumpDistRows)...)
	}
	live := dumpCatalog()
	figures := `SELECT concat_ws(' ', distribution_count, publication_status, published_version, views) FROM course_catalog WHERE course_id = $1`
	var got string
	if err := pool.QueryRow(context.Background(), figures, a).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "1 published 1.0.0 1"; got != want {
		t.Errorf("live, course A's figures are %q, want %q", got, want)
	}

	rt = newRuntime(t, pool, store, fastConfig(), catalog.Projection())
	if _, err := rt.Rebuild(context.Background(), catalog.Name, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if rebuilt := dumpCatalog(); strings.Join(rebuilt, "\n") != strings.Join(live, "\n") {
		diffRows(t, live, rebuilt)
	}
}
