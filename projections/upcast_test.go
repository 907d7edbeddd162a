package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// languages records the language each course.generation.requested v2
// arrives with.
func languages(mu *sync.Mutex, got map[uuid.UUID]string) projections.Projection {
	return projections.Projection{
		Name:    "languages",
		Handles: []projections.EventType{{Type: "course.generation.requested", Versions: []int{2}}},
		Handler: projections.EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			var p struct {
				Language *string `json:"language"`
			}
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				return err
			}
			if p.Language == nil {
				return errors.New("no language")
			}
			mu.Lock()
			got[e.ID] = *p.Language
			mu.Unlock()
			return nil
		}),
	}
}

func upcastV1(e eventstore.Event) (eventstore.Event, error) {
	if e.Type != "course.generation.requested" || e.Meta.SchemaVersion != 1 {
		return e, nil
	}
	var p map[string]any
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return e, err
	}
	p["language"] = "en"
	b, err := json.Marshal(p)
	if err != nil {
		return e, err
	}
	e.Payload, e.Meta.SchemaVersion = b, 2
	return e, nil
}

func TestUpcastBeforeTheHandler(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	course := uuid.New()
	evs := appendTo(t, store, "course-"+course.String(),
		ev("course.generation.requested", 1, "acme", map[string]any{"course_id": course, "topic": "Go", "attempt": 1}),
		ev("course.generation.requested", 2, "acme", map[string]any{"course_id": course, "topic": "Go", "attempt": 2, "language": "de"}))

	// With the upcaster, v1 arrives as v2 with the default language.
	var mu sync.Mutex
	got := map[uuid.UUID]string{}
	cfg := fastConfig()
	cfg.Upcast = upcastV1
	rt := newRuntime(t, database(t), store, cfg, languages(&mu, got))
	if _, err := rt.CatchUp(context.Background(), "languages", 0); err != nil {
		t.Fatal(err)
	}
	if got[evs[0].ID] != "en" || got[evs[1].ID] != "de" {
		t.Fatalf("languages: %v", got)
	}

	// Without it, the v1 event is a version the projection does not
	// declare: it is parked at once (no retries) and says why.
	got = map[uuid.UUID]string{}
	rt = newRuntime(t, database(t), store, fastConfig(), languages(&mu, got))
	if _, err := rt.CatchUp(context.Background(), "languages", 0); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[evs[1].ID] != "de" {
		t.Fatalf("languages without upcasting: %v", got)
	}
	parked, err := rt.ListParked(context.Background(), "languages")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != evs[0].ID || parked[0].Attempts != 1 ||
		!strings.Contains(parked[0].Error, "does not handle course.generation.requested v1") {
		t.Fatalf("parked: %+v", parked)
	}
}
