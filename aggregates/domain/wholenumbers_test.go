package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// JSON Schema counts 1.0, 1e2, -0.0 and 100.00 as integers, so a producer
// outside Go (a float from Python's json.dumps, the HTTP API, `eventstream
// append`) writes them in integer fields, and the store takes them. The
// aggregate of such a stream loads, with the field's value: encoding/json
// refuses 1.0 for an int, and the aggregate could never be loaded again.
func TestAggregatesLoadWholeNumbersWrittenWithAFractionOrAnExponent(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			raw := func(typ, source string, version int, payload string) eventstore.Event {
				return eventstore.Event{Type: typ, Source: source, Payload: json.RawMessage(payload),
					Meta: eventstore.Meta{SchemaVersion: version, TenantID: "t1"}}
			}
			// v2, decoded as written; v1, through the upcaster.
			c2, c1 := uuid.NewString(), uuid.NewString()
			appendRaw(t, env, "course-"+c2,
				raw(coursefactory.TypeGenerationRequested, coursefactory.Source, 2,
					fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1e2,"language":"en"}`, c2)),
				raw(coursefactory.TypeOutlineCreated, coursefactory.Source, 1,
					fmt.Sprintf(`{"course_id":%q,"title":"Go","lessons":[{"slot":1.0,"title":"One"},{"slot":100.00,"title":"Hundred"}]}`, c2)),
				raw(coursefactory.TypeLessonGenerated, coursefactory.Source, 1,
					fmt.Sprintf(`{"course_id":%q,"slot":1.0,"title":"One","word_count":-0.0}`, c2)))
			appendRaw(t, env, "course-"+c1,
				raw(coursefactory.TypeGenerationRequested, coursefactory.Source, 1,
					fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":2.0}`, c1)))

			a, err := env.Courses.Load(ctx, c2)
			if err != nil {
				t.Fatalf("load course: %v", err)
			}
			if got := a.State; got.Attempt != 100 || got.Slots[1] != "One" || got.Slots[100] != "Hundred" || len(got.Slots) != 2 || !got.Lessons[1] {
				t.Fatalf("course state: attempt %d, slots %v, lessons %v; want attempt 100, slots 1 and 100, lesson 1", got.Attempt, got.Slots, got.Lessons)
			}
			if a, err := env.Courses.Load(ctx, c1); err != nil || a.State.Attempt != 2 || a.State.Language != coursefactory.DefaultLanguage {
				t.Fatalf("load v1 course: %+v, %v; want attempt 2", a, err)
			}

			d := uuid.NewString()
			appendRaw(t, env, "distribution-"+d,
				raw(distribution.TypeCreated, distribution.Source, 1,
					fmt.Sprintf(`{"distribution_id":%q,"course_id":%q,"channel":"web","title":"Go","version":"1.0.0"}`, d, c2)),
				raw(distribution.TypeUpdated, distribution.Source, 1,
					fmt.Sprintf(`{"distribution_id":%q,"course_id":%q,"changes":{"price_cents":4.9e3}}`, d, c2)))
			b, err := env.Distributions.Load(ctx, d)
			if err != nil {
				t.Fatalf("load distribution: %v", err)
			}
			if b.State.PriceCents == nil || *b.State.PriceCents != 4900 {
				t.Fatalf("price_cents %v, want 4900", b.State.PriceCents)
			}

			// A command against the loaded state still works.
			if _, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Publish{DistributionID: d}); err != nil {
				t.Fatalf("publish after the load: %v", err)
			}
			res, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.RecordView{DistributionID: d, VisitorID: uuid.NewString()})
			if err != nil || res.Aggregate.State.Views != 1 || *res.Aggregate.State.PriceCents != 4900 {
				t.Fatalf("command after the load: %+v, %v", res, err)
			}
		})
	}
}

// A number that is not whole, or whole but beyond the Go type, is still
// refused by the decode, with the error naming the event; a whole number
// at the edge of the type decodes exactly (no trip through float64).
func TestRegistryDecodesOnlyWholeNumbersThatFit(t *testing.T) {
	t.Parallel()
	reg, err := domain.NewRegistry(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	lesson := func(wordCount string) eventstore.Event {
		return eventstore.Event{ID: uuid.New(), Type: coursefactory.TypeLessonGenerated, Source: coursefactory.Source,
			Payload: json.RawMessage(`{"course_id":"0b3c5d1e-7f00-4a2b-9c3d-4e5f60718293","slot":1,"title":"One","word_count":` + wordCount + `}`),
			Meta:    eventstore.Meta{SchemaVersion: 1}}
	}
	for _, tc := range []struct {
		n    string
		want int
	}{{"7", 7}, {"7.0", 7}, {"0.7e1", 7}, {"700e-2", 7}, {"-0.0", 0}, {"0e99999", 0}, {"9.223372036854775807e18", math.MaxInt64}, {"-9223372036854775808.000", math.MinInt64}} {
		v, err := reg.Decode(lesson(tc.n))
		if err != nil {
			t.Errorf("word_count %s: %v", tc.n, err)
			continue
		}
		if got := v.(coursefactory.LessonGenerated).WordCount; got != tc.want {
			t.Errorf("word_count %s decodes as %d, want %d", tc.n, got, tc.want)
		}
	}
	for _, n := range []string{"1.5", "7.0001", "70e-2", "1e30", "9223372036854775808", "9.223372036854775808e18", "-9223372036854775809.0", "1e99999999999", `"7"`} {
		e := lesson(n)
		_, err := reg.Decode(e)
		var typeErr *json.UnmarshalTypeError
		if err == nil || !errors.As(err, &typeErr) || !strings.Contains(err.Error(), e.ID.String()) {
			t.Errorf("word_count %s: error %v, want a *json.UnmarshalTypeError naming event %s", n, err, e.ID)
		}
	}
}

func appendRaw(t *testing.T, env *dt.Env, stream string, events ...eventstore.Event) {
	t.Helper()
	for i := range events {
		events[i].ID = uuid.New()
	}
	if _, err := env.Store.Append(ctx, stream, eventstore.NoStream, events...); err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
}
