package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

func (s *suite) testValidation(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	seed := mustAppend(t, st, "val-seed", eventstore.NoStream, added("seed"))

	withPayload := func(p string) eventstore.Event {
		e := added("x")
		e.Payload = []byte(p)
		return e
	}
	change := func(e eventstore.Event, f func(*eventstore.Event)) eventstore.Event {
		f(&e)
		return e
	}
	nested := strings.Repeat("[", eventstore.MaxJSONDepth+10) + strings.Repeat("]", eventstore.MaxJSONDepth+10)
	// Nearly MaxEventBytes of small objects: decoded, about 45 times its
	// size (eventstore.MaxJSONExpansion).
	smallObjects := `{"name":"x","nested":[` + strings.Repeat(`{"a":0},`, (eventstore.MaxEventBytes-100)/8) + `{"a":0}]}`
	bigNote := strings.Repeat("n", eventstore.MaxEventBytes)
	almost := strings.Repeat("n", eventstore.MaxEventBytes-100)
	tooMany := make([]eventstore.Event, eventstore.MaxBatchEvents+1)
	for i := range tooMany {
		tooMany[i] = added("x")
	}
	// Appends past MaxAppendBytes, their events sharing one payload: 65
	// payloads of nearly 1 MiB (refused before the events are checked),
	// and 100 events of 600 kB of payload and 400 kB of meta each, whose
	// payloads alone pass but whose payloads and metas pass the bound at
	// event 67 (67 events hold at most 67,108,864 bytes with up to 1,624
	// bytes of envelope each, 68 do not with as little as none).
	heavyPayloads := make([]eventstore.Event, eventstore.MaxAppendBytes/eventstore.MaxEventBytes+1)
	heavy := withPayload(`{"name":"x","note":"` + almost + `"}`)
	for i := range heavyPayloads {
		heavyPayloads[i] = heavy
	}
	heavyMetas := make([]eventstore.Event, 100)
	half := withPayload(`{"name":"x","note":"` + strings.Repeat("n", 600_000-len(`{"name":"x","note":""}`)) + `"}`)
	pad := strings.Repeat("p", 400_000)
	for i := range heavyMetas {
		heavyMetas[i] = change(half, func(e *eventstore.Event) { e.Meta.Extra = map[string]any{"pad": pad} })
	}

	cases := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
		index    int
		pointer  string
		rule     string
	}{
		{"UnknownType", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Type = "storetest.item.unknown" })}, 0, "/type", "unknown-type"},
		{"UnknownSchemaVersion", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Meta.SchemaVersion = 9 })}, 0, "/meta/schema_version", "unknown-schema-version"},
		{"ZeroSchemaVersion", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Meta.SchemaVersion = 0 })}, 0, "/meta/schema_version", "minimum"},
		{"MissingTenant", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Meta.TenantID = "" })}, 0, "/meta/tenant_id", "minLength"},
		{"MissingSource", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Source = "" })}, 0, "/source", "minLength"},
		{"PayloadMissingField", "", eventstore.Any, []eventstore.Event{withPayload(`{"quantity":1}`)}, 0, "/payload/name", "required"},
		{"PayloadWrongType", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":5}`)}, 0, "/payload/name", "type"},
		{"PayloadExtraField", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"x","colour":"red"}`)}, 0, "/payload/colour", "additionalProperties"},
		{"PayloadBreaksNewerVersion", "", eventstore.Any, []eventstore.Event{change(renamed("x"), func(e *eventstore.Event) { e.Payload = []byte(`{"name":"x"}`) })}, 0, "/payload/reason", "required"},
		{"PayloadNotObject", "", eventstore.Any, []eventstore.Event{withPayload(`["name"]`)}, 0, "/payload", "type"},
		{"PayloadNull", "", eventstore.Any, []eventstore.Event{withPayload(`null`)}, 0, "/payload", "type"},
		{"PayloadMissing", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Payload = nil })}, 0, "/payload", "required"},
		{"MalformedJSON", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":`)}, 0, "/payload", "json"},
		{"TrailingData", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"x"} {}`)}, 0, "/payload", "json"},
		{"DuplicateKeys", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"a","name":"b"}`)}, 0, "/payload", "duplicate-key"},
		{"InvalidUTF8", "", eventstore.Any, []eventstore.Event{withPayload("{\"name\":\"\xff\"}")}, 0, "/payload", "utf-8"},
		{"NULInString", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"a\u0000b"}`)}, 0, "/payload", "nul"},
		{"TooDeep", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"x","nested":` + nested + `}`)}, 0, "/payload", "depth"},
		{"TooCostlyToDecode", "", eventstore.Any, []eventstore.Event{added("ok"), withPayload(smallObjects)}, 1, "/payload", "expansion"},
		{"EmptyStreamID", "-", eventstore.Any, []eventstore.Event{added("x")}, -1, "/stream", "stream-id"},
		{"StreamIDTooLong", strings.Repeat("s", eventstore.MaxStreamIDBytes+1), eventstore.Any, []eventstore.Event{added("x")}, -1, "/stream", "stream-id"},
		{"StreamIDNUL", "val-a\x00b", eventstore.Any, []eventstore.Event{added("x")}, -1, "/stream", "stream-id"},
		{"StreamIDNotUTF8", "val-a\xffb", eventstore.Any, []eventstore.Event{added("x")}, -1, "/stream", "stream-id"},
		{"StreamID256BytesOfUTF8", strings.Repeat("é", 128), eventstore.Any, []eventstore.Event{added("x")}, -1, "/stream", "stream-id"},
		{"BadTypeCharacters", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) { e.Type = "Storetest.Item Added" })}, 0, "/type", "type-name"},
		{"NegativeExpectedVersion", "", eventstore.ExpectedVersion(-4), []eventstore.Event{added("x")}, -1, "/expected_version", "expected-version"},
		{"NoEvents", "", eventstore.Any, nil, -1, "", "batch-size"},
		{"OverMaxBatchEvents", "", eventstore.Any, tooMany, -1, "", "batch-size"},
		{"PayloadOverMaxEventBytes", "", eventstore.Any, []eventstore.Event{withPayload(`{"name":"x","note":"` + bigNote + `"}`)}, 0, "/payload", "event-size"},
		{"PayloadAndMetaOverMaxEventBytes", "", eventstore.Any, []eventstore.Event{change(withPayload(`{"name":"x","note":"`+almost+`"}`), func(e *eventstore.Event) {
			e.Meta.Extra = map[string]any{"pad": strings.Repeat("p", 200)}
		})}, 0, "/meta", "event-size"},
		{"PayloadsOverMaxAppendBytes", "", eventstore.Any, heavyPayloads, -1, "", "batch-bytes"},
		{"PayloadsAndMetasOverMaxAppendBytes", "", eventstore.Any, heavyMetas, 67, "/meta", "batch-bytes"},
		{"MetaExtraNotUTF8", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) {
			e.Meta.Extra = map[string]any{"ok": "fine", "note": "a\xffb"}
		})}, 0, "/meta/note", "utf-8"},
		{"MetaExtraNestedNotUTF8", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) {
			e.Meta.Extra = map[string]any{"labels": map[string][]string{"team": {"core", "x\xc3"}}}
		})}, 0, "/meta/labels", "utf-8"},
		{"MetaExtraKeyNotUTF8", "", eventstore.Any, []eventstore.Event{change(added("x"), func(e *eventstore.Event) {
			e.Meta.Extra = map[string]any{"k\xff/": 1}
		})}, 0, "/meta/k\uFFFD~1", "utf-8"},
		{"InvalidInMiddleOfBatch", "", eventstore.Any, []eventstore.Event{added("ok"), withPayload(`{"quantity":1}`), added("ok")}, 1, "/payload/name", "required"},
		{"InvalidLastOfBatch", "", eventstore.Any, []eventstore.Event{added("ok"), added("ok"), change(added("x"), func(e *eventstore.Event) { e.Meta.TenantID = "" })}, 2, "/meta/tenant_id", "minLength"},
		// Validation comes before the expected-version check: the stream is
		// at version 1, yet the refusal is a validation error.
		{"ValidationBeforeConcurrency", "val-seed", eventstore.NoStream, []eventstore.Event{withPayload(`{}`)}, 0, "/payload/name", "required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stream := c.stream
			switch stream {
			case "":
				stream = "val-" + c.name
			case "-":
				stream = ""
			}
			_, err := st.Append(ctx, stream, c.expected, c.events...)
			wantValidation(t, err, c.index, c.pointer, c.rule)
			if eventstore.CheckStreamID(stream) == nil {
				evs, err := st.ReadStream(ctx, stream, 0, 0)
				if stream == "val-seed" {
					if err != nil {
						t.Fatal(err)
					}
					sameEvents(t, "seed stream after refusal", evs, seed.Events)
				} else if !errors.Is(err, eventstore.ErrStreamNotFound) {
					t.Fatalf("ReadStream(%q) after refusal: %d events, %v; want ErrStreamNotFound", stream, len(evs), err)
				}
			}
			all := readAll(t, st, eventstore.ReadAllOptions{})
			sameEvents(t, "ReadAll after refusal", all, seed.Events)
			if got, want := head(t, st), seed.Position(); got != want {
				t.Fatalf("Head after refusal = %v, want %v", got, want)
			}
		})
	}
}

// testValidationLimits checks that the limits themselves are accepted.
func (s *suite) testValidationLimits(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	t.Run("StreamID255Bytes", func(t *testing.T) {
		t.Parallel()
		stream := strings.Repeat("é", eventstore.MaxStreamIDBytes/2) + "x"
		if len(stream) != eventstore.MaxStreamIDBytes {
			t.Fatalf("test bug: stream id is %d bytes", len(stream))
		}
		mustAppend(t, st, stream, eventstore.NoStream, added("x"))
		evs, err := st.ReadStream(ctx, stream, 0, 0)
		if err != nil || len(evs) != 1 || evs[0].Stream != stream {
			t.Fatalf("ReadStream(255-byte id): %d events, %v", len(evs), err)
		}
	})
	t.Run("MaxBatchEvents", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("writes a MaxBatchEvents batch")
		}
		batch := make([]eventstore.Event, eventstore.MaxBatchEvents)
		for i := range batch {
			batch[i] = added("x")
		}
		res := mustAppend(t, st, "limit-batch", eventstore.NoStream, batch...)
		if got, want := res.Version(), int64(eventstore.MaxBatchEvents); got != want {
			t.Fatalf("version = %d, want %d", got, want)
		}
	})
	t.Run("LargeEvent", func(t *testing.T) {
		t.Parallel()
		note := strings.Repeat("n", eventstore.MaxEventBytes-1000)
		e := added("x")
		e.Payload = []byte(`{"name":"x","note":"` + note + `"}`)
		res := mustAppend(t, st, "limit-size", eventstore.NoStream, e)
		evs, err := st.ReadStream(ctx, "limit-size", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "large event", evs, res.Events)
	})
	t.Run("NumbersBeyondFloat64", func(t *testing.T) {
		t.Parallel()
		e := added("x")
		e.Payload = []byte(`{"name":"x","quantity":123456789012345678901234567890,"amount":0.1000000000000000000000000001}`)
		mustAppend(t, st, "limit-numbers", eventstore.NoStream, e)
		evs, err := st.ReadStream(ctx, "limit-numbers", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := eventstore.DecodeJSON(evs[0].Payload)
		if err != nil {
			t.Fatal(err)
		}
		m := v.(map[string]any)
		want, _ := eventstore.DecodeJSON([]byte(`{"name":"x","quantity":123456789012345678901234567890,"amount":0.1000000000000000000000000001}`))
		if !eventstore.ValueEqual(m, want) {
			t.Fatalf("payload read back as %s: digits lost", evs[0].Payload)
		}
	})
}
