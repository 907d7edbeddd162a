package aggregates_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// appendRaw stores an event at an old schema version, as an older
// producer would have.
func appendRaw(t *testing.T, store eventstore.Store, stream, typ string, version int, payload string) {
	t.Helper()
	_, err := store.Append(context.Background(), stream, eventstore.Any, eventstore.Event{
		Type: typ, Source: "old-producer", Payload: json.RawMessage(payload),
		Meta: eventstore.Meta{SchemaVersion: version, TenantID: "t1"},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpcastChainV1V2V3(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	reg := testRegistry(t, s)
	repo := counterRepo(t, store, reg, nil)
	ctx := context.Background()

	appendRaw(t, store, "counter-u1", "test.counter.named", 1, `{"counter_id":"u1","name":"first"}`)
	a, err := repo.Load(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.State, (Counter{Title: "first", Lang: "en"}); got != want {
		t.Fatalf("v1 read as %+v, want %+v", got, want)
	}

	appendRaw(t, store, "counter-u1", "test.counter.named", 2, `{"counter_id":"u1","name":"second","lang":"fr"}`)
	appendRaw(t, store, "counter-u1", "test.counter.named", 3, `{"counter_id":"u1","title":"third","lang":"de"}`)
	evs, err := store.ReadStream(ctx, "counter-u1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Named{{"u1", "first", "en"}, {"u1", "second", "fr"}, {"u1", "third", "de"}} {
		up, err := reg.Upcast(evs[i])
		if err != nil {
			t.Fatal(err)
		}
		if up.Meta.SchemaVersion != 3 {
			t.Fatalf("event %d upcast to v%d, want v3", i, up.Meta.SchemaVersion)
		}
		v, err := reg.Decode(evs[i])
		if err != nil {
			t.Fatal(err)
		}
		if v.(Named) != want {
			t.Fatalf("event %d decoded %+v, want %+v", i, v, want)
		}
	}

	// The log is untouched.
	evs, _ = store.ReadStream(ctx, "counter-u1", 1, 1)
	if got, want := evs[0].Meta.SchemaVersion, 1; got != want {
		t.Fatalf("stored schema version = %d, want %d", got, want)
	}
	if got, want := string(evs[0].Payload), `{"counter_id":"u1","name":"first"}`; !jsonEqual(got, want) {
		t.Fatalf("stored payload = %s, want %s", got, want)
	}
}

func TestUpcasterBreakingTheSchemaFailsTheRead(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	reg := aggregates.NewRegistry(s)
	aggregates.Register[Added](reg, "test.counter.added", 1)
	aggregates.Register[Named](reg, "test.counter.named", 3)
	aggregates.Register[Alarm](reg, "test.counter.alarm", 1)
	reg.RegisterUpcaster("test.counter.named", 1, func(p map[string]any) (map[string]any, error) { return p, nil }) // forgets lang
	reg.RegisterUpcaster("test.counter.named", 2, upNamedV2)
	reg.Own("test.")
	if err := reg.Check(); err != nil {
		t.Fatal(err)
	}
	appendRaw(t, store, "counter-u2", "test.counter.named", 1, `{"counter_id":"u2","name":"x"}`)
	_, err := counterRepo(t, store, reg, nil).Load(context.Background(), "u2")
	if err == nil || !strings.Contains(err.Error(), "breaks its schema") {
		t.Fatalf("Load = %v, want the broken upcaster reported", err)
	}
}

func TestUpcastLeavesOtherTypesAlone(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t, testSchemas(t))
	e := eventstore.Event{ID: uuid.New(), Type: "test.counter.added", Payload: json.RawMessage(`{"counter_id":"x","n":1}`), Meta: eventstore.Meta{SchemaVersion: 1}}
	up, err := reg.Upcast(e)
	if err != nil || string(up.Payload) != string(e.Payload) || up.Meta.SchemaVersion != 1 {
		t.Fatalf("Upcast changed an event with no upcaster: %v %s", err, up.Payload)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
