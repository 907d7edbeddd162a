package aggregates_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

func TestCheckAcceptsAMatchingRegistry(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t, testSchemas(t))
	if got, want := strings.Join(reg.Types(), ","), "test.counter.added,test.counter.alarm,test.counter.named"; got != want {
		t.Fatalf("Types() = %s, want %s", got, want)
	}
}

func TestCheckRefusesMismatches(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	type Orphan struct{ X int }
	cases := []struct {
		name  string
		build func(*aggregates.Registry)
		want  string
	}{
		{"go type without schema", func(r *aggregates.Registry) {
			aggregates.Register[Orphan](r, "test.counter.orphan", 1)
		}, `schemas/test.counter.orphan/v1.json does not exist`},
		{"schema without go type", func(r *aggregates.Registry) {
			aggregates.Register[Added](r, "test.counter.added", 1)
			aggregates.Register[Named](r, "test.counter.named", 3)
			r.RegisterUpcaster("test.counter.named", 1, upNamedV1)
			r.RegisterUpcaster("test.counter.named", 2, upNamedV2)
		}, `schemas/test.counter.alarm has no Go type`},
		{"registered at an old version", func(r *aggregates.Registry) {
			aggregates.Register[Named](r, "test.counter.named", 2)
		}, `test.counter.named is registered at v2 but schemas/ has v3`},
		{"missing upcaster", func(r *aggregates.Registry) {
			aggregates.Register[Named](r, "test.counter.named", 3)
			r.RegisterUpcaster("test.counter.named", 1, upNamedV1)
		}, `test.counter.named v2 has no upcaster to v3`},
		{"name registered twice", func(r *aggregates.Registry) {
			aggregates.Register[Added](r, "test.counter.added", 1)
			aggregates.Register[Alarm](r, "test.counter.added", 1)
		}, `"test.counter.added" registered twice`},
		{"go type registered twice", func(r *aggregates.Registry) {
			aggregates.Register[Added](r, "test.counter.added", 1)
			aggregates.Register[Added](r, "test.counter.alarm", 1)
		}, `registered twice (event types "test.counter.added" and "test.counter.alarm")`},
		{"not a struct", func(r *aggregates.Registry) {
			aggregates.Register[string](r, "test.counter.added", 1)
		}, `is not a struct`},
		{"upcaster for a missing version", func(r *aggregates.Registry) {
			aggregates.Register[Added](r, "test.counter.added", 1)
			r.RegisterUpcaster("test.counter.added", 1, upNamedV1)
		}, `upcaster test.counter.added v1→v2: both schema versions must exist`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := aggregates.NewRegistry(s)
			r.Own("test.")
			c.build(r)
			err := r.Check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check() = %v, want an error containing %q", err, c.want)
			}
			if _, err := aggregates.NewRepository(memStore(t, s), r, aggregates.Definition[Counter]{Name: "c", Source: "t", Apply: applyCounter}); err == nil {
				t.Fatal("NewRepository accepted a registry that failed Check")
			}
		})
	}
}

func TestCheckWithoutOwnershipCoversEverySchema(t *testing.T) {
	t.Parallel()
	r := aggregates.NewRegistry(testSchemas(t))
	aggregates.Register[Added](r, "test.counter.added", 1)
	err := r.Check()
	if err == nil || !strings.Contains(err.Error(), "schemas/course.outline.created has no Go type") {
		t.Fatalf("Check() = %v, want the domain schemas reported", err)
	}
}

// Renaming a Go type must not orphan stored events: names are explicit.
func TestRenamedGoTypeStillReadsStoredEvents(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	if _, err := repo.Handle(ctx, "c1", meta(), add("c1", 5)); err != nil {
		t.Fatal(err)
	}
	type AddedRenamed struct {
		CounterID string `json:"counter_id"`
		N         int    `json:"n"`
	}
	r2 := aggregates.NewRegistry(s)
	aggregates.Register[AddedRenamed](r2, "test.counter.added", 1)
	evs, err := store.ReadStream(ctx, "counter-c1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := r2.Decode(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(AddedRenamed); !ok || got.N != 5 {
		t.Fatalf("decoded %#v, want AddedRenamed{N: 5}", v)
	}
}

func TestDecodeUnknownType(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t, testSchemas(t))
	_, err := reg.Decode(eventstore.Event{ID: uuid.New(), Type: "course.outline.created", Payload: json.RawMessage(`{}`), Meta: eventstore.Meta{SchemaVersion: 1}})
	var ue *aggregates.UnknownEventError
	if !errors.As(err, &ue) || ue.Type != "course.outline.created" {
		t.Fatalf("Decode = %v, want *UnknownEventError", err)
	}
}
