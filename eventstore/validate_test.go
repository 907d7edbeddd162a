package eventstore_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/storetest"
)

func TestDecodeJSONAccepts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want any
	}{
		{`{}`, map[string]any{}},
		{` {"a" : [1, "x", true, null, {"b": 2.5}]} `, map[string]any{"a": []any{json.Number("1"), "x", true, nil, map[string]any{"b": json.Number("2.5")}}}},
		{`123456789012345678901234567890`, json.Number("123456789012345678901234567890")},
		{`1e400`, json.Number("1e400")},
		{`0.1000000000000000000000000001`, json.Number("0.1000000000000000000000000001")},
		{`"héllo \u00e9"`, "héllo é"},
		{`[]`, []any{}},
		{strings.Repeat("[", eventstore.MaxJSONDepth) + strings.Repeat("]", eventstore.MaxJSONDepth), nil},
	} {
		got, err := eventstore.DecodeJSON([]byte(c.in))
		if err != nil {
			t.Errorf("DecodeJSON(%.40s): %v", c.in, err)
			continue
		}
		if c.want != nil && !eventstore.ValueEqual(got, c.want) {
			t.Errorf("DecodeJSON(%.40s) = %#v, want %#v", c.in, got, c.want)
		}
	}
	// Numbers beyond float64 keep every digit.
	v, _ := eventstore.DecodeJSON([]byte(`{"n":123456789012345678901234567890.000000000000000000001}`))
	if n := v.(map[string]any)["n"].(json.Number); n.String() != "123456789012345678901234567890.000000000000000000001" {
		t.Errorf("big number decoded as %s", n)
	}
}

func TestDecodeJSONRefuses(t *testing.T) {
	deep := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
	deepObj := strings.Repeat(`{"a":`, eventstore.MaxJSONDepth+1) + "1" + strings.Repeat("}", eventstore.MaxJSONDepth+1)
	for _, c := range []struct {
		name string
		in   string
		rule string
	}{
		{"Empty", ``, "json"},
		{"Whitespace", `   `, "json"},
		{"Truncated", `{"a":`, "json"},
		{"UnclosedArray", `[1, 2`, "json"},
		{"TrailingComma", `{"a":1,}`, "json"},
		{"TrailingCommaArray", `[1,]`, "json"},
		{"MissingColon", `{"a" 1}`, "json"},
		{"MissingComma", `[1 2]`, "json"},
		{"SingleQuotes", `{'a':1}`, "json"},
		{"BareWord", `{"a":nope}`, "json"},
		{"LeadingZero", `{"a":01}`, "json"},
		{"NaN", `{"a":NaN}`, "json"},
		{"TrailingValue", `{} {}`, "json"},
		{"TrailingGarbage", `{}x`, "json"},
		{"TrailingComment", `{} // c`, "json"},
		{"DuplicateKey", `{"a":1,"a":2}`, "duplicate-key"},
		{"DuplicateKeyNested", `{"x":{"a":1,"b":2,"a":1}}`, "duplicate-key"},
		{"DuplicateKeyEscaped", `{"a":1,"\u0061":2}`, "duplicate-key"},
		{"TooDeep10000", deep, "depth"},
		{"TooDeepByOne", strings.Repeat("[", eventstore.MaxJSONDepth+1) + strings.Repeat("]", eventstore.MaxJSONDepth+1), "depth"},
		{"TooDeepObjects", deepObj, "depth"},
		{"InvalidUTF8", "{\"a\":\"\xff\xfe\"}", "utf-8"},
		{"InvalidUTF8Key", "{\"\xc3\x28\":1}", "utf-8"},
		{"NULEscape", `{"a":"x\u0000y"}`, "nul"},
		{"NULInKey", `{"a\u0000":1}`, "nul"},
		{"RawControlChar", "{\"a\":\"x\x01y\"}", "json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := eventstore.DecodeJSON([]byte(c.in))
			if err == nil {
				t.Fatalf("DecodeJSON(%.40q) = %#v, want an error", c.in, v)
			}
			var je *eventstore.JSONError
			if !errors.As(err, &je) {
				t.Fatalf("DecodeJSON(%.40q): %v (%T), want *JSONError", c.in, err, err)
			}
			if je.Rule != c.rule {
				t.Fatalf("DecodeJSON(%.40q): rule %q (%v), want %q", c.in, je.Rule, err, c.rule)
			}
		})
	}
}

func newValidator(t *testing.T) *eventstore.Validator {
	t.Helper()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	v, err := eventstore.NewValidator(reg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func validEvent() eventstore.Event {
	return eventstore.Event{
		Type:    storetest.TypeAdded,
		Source:  "test",
		Payload: json.RawMessage(`{"name":"x"}`),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "t"},
	}
}

func TestNewValidatorNeedsRegistry(t *testing.T) {
	if _, err := eventstore.NewValidator(nil); err == nil {
		t.Fatal("NewValidator(nil) succeeded")
	}
}

func TestCheckPrepares(t *testing.T) {
	v := newValidator(t)
	given := uuid.New()
	a, b := validEvent(), validEvent()
	a.ID = given
	a.Stream = "ignored"
	b.Meta.Extra = map[string]any{"k": "v"}
	out, err := v.Check("s-1", eventstore.NoStream, []eventstore.Event{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("%d prepared events, want 2", len(out))
	}
	if out[0].ID != given {
		t.Errorf("given id %s replaced by %s", given, out[0].ID)
	}
	if out[1].ID == uuid.Nil || out[1].ID == given {
		t.Errorf("zero id became %s, want a fresh id", out[1].ID)
	}
	for i, p := range out {
		if p.Stream != "s-1" {
			t.Errorf("event %d stream %q, want s-1", i, p.Stream)
		}
		var m eventstore.Meta
		if err := json.Unmarshal(p.MetaJSON, &m); err != nil || m.TenantID != "t" || m.SchemaVersion != 1 {
			t.Errorf("event %d MetaJSON %s: %v", i, p.MetaJSON, err)
		}
	}
	if !strings.Contains(string(out[1].MetaJSON), `"k":"v"`) {
		t.Errorf("MetaJSON %s lacks the free-form key", out[1].MetaJSON)
	}
}

func TestCheckRefuses(t *testing.T) {
	v := newValidator(t)
	with := func(f func(*eventstore.Event)) []eventstore.Event {
		e := validEvent()
		f(&e)
		return []eventstore.Event{e}
	}
	one := []eventstore.Event{validEvent()}
	dupID := uuid.New()
	for _, c := range []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
		index    int
		pointer  string
		rule     string
	}{
		{"EmptyStream", "", eventstore.Any, one, -1, "/stream", "stream-id"},
		{"LongStream", strings.Repeat("x", 256), eventstore.Any, one, -1, "/stream", "stream-id"},
		{"StreamNotUTF8", "s\xff", eventstore.Any, one, -1, "/stream", "stream-id"},
		{"StreamNUL", "s\x00", eventstore.Any, one, -1, "/stream", "stream-id"},
		{"NegativeExpected", "s", eventstore.ExpectedVersion(-4), one, -1, "/expected_version", "expected-version"},
		{"NoEvents", "s", eventstore.Any, nil, -1, "", "batch-size"},
		{"TooManyEvents", "s", eventstore.Any, make([]eventstore.Event, eventstore.MaxBatchEvents+1), -1, "", "batch-size"},
		{"DuplicateID", "s", eventstore.Any, []eventstore.Event{
			func() eventstore.Event { e := validEvent(); e.ID = dupID; return e }(),
			func() eventstore.Event { e := validEvent(); e.ID = dupID; return e }(),
		}, 1, "/id", "unique-id"},
		{"TypeUppercase", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "Item.Added" }), 0, "/type", "type-name"},
		{"TypeSpace", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "item added" }), 0, "/type", "type-name"},
		{"TypeLeadingDot", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = ".item" }), 0, "/type", "type-name"},
		{"TypeEmpty", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "" }), 0, "/type", "type-name"},
		{"TypeTooLong", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = strings.Repeat("a", 256) }), 0, "/type", "type-name"},
		{"UnknownType", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "storetest.nope" }), 0, "/type", "unknown-type"},
		{"UnknownVersion", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Meta.SchemaVersion = 2 }), 0, "/meta/schema_version", "unknown-schema-version"},
		{"MissingTenant", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Meta.TenantID = "" }), 0, "/meta/tenant_id", "minLength"},
		{"TenantNotUTF8", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Meta.TenantID = "t\xff" }), 0, "/meta/tenant_id", "utf-8"},
		{"SourceNUL", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Source = "a\x00" }), 0, "/source", "nul"},
		{"TargetTooLong", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Target = strings.Repeat("t", 256) }), 0, "/target", "maxLength"},
		{"PayloadMissing", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = nil }), 0, "/payload", "required"},
		{"PayloadArray", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`[]`) }), 0, "/payload", "type"},
		{"PayloadString", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`"x"`) }), 0, "/payload", "type"},
		{"PayloadMalformed", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{`) }), 0, "/payload", "json"},
		{"PayloadDuplicateKey", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"name":"a","name":"a"}`) }), 0, "/payload", "duplicate-key"},
		{"PayloadSchema", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"name":""}`) }), 0, "/payload/name", "minLength"},
		{"PayloadExtraKeyQuoted", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"name":"x","it's a/b":1}`) }), 0, "/payload/it's a~1b", "additionalProperties"},
		{"PayloadTooBig", "s", eventstore.Any, with(func(e *eventstore.Event) {
			e.Payload = json.RawMessage(`{"name":"x","note":"` + strings.Repeat("n", eventstore.MaxEventBytes) + `"}`)
		}), 0, "/payload", "event-size"},
		{"MetaUnencodable", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Meta.Extra = map[string]any{"f": math.NaN()} }), 0, "/meta", "json"},
		{"MetaTooDeep", "s", eventstore.Any, with(func(e *eventstore.Event) {
			var x any = 1
			for range eventstore.MaxJSONDepth + 1 {
				x = []any{x}
			}
			e.Meta.Extra = map[string]any{"deep": x}
		}), 0, "/meta", "depth"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.events {
				if c.events[i].Type == "" && c.name == "TooManyEvents" {
					c.events[i] = validEvent()
				}
			}
			out, err := v.Check(c.stream, c.expected, c.events)
			if err == nil {
				t.Fatalf("Check succeeded with %d events, want a refusal", len(out))
			}
			if out != nil {
				t.Fatalf("Check returned %d prepared events with its error", len(out))
			}
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrValidation) {
				t.Fatalf("Check: %v (%T), want *ValidationError", err, err)
			}
			if ve.Index != c.index || ve.Pointer != c.pointer || ve.Rule != c.rule {
				t.Fatalf("Check: index %d pointer %q rule %q, want %d %q %q (%v)", ve.Index, ve.Pointer, ve.Rule, c.index, c.pointer, c.rule, err)
			}
			if ve.Message == "" {
				t.Fatal("ValidationError has no message")
			}
		})
	}
}

func TestCheckReportsEveryViolation(t *testing.T) {
	v := newValidator(t)
	e := validEvent()
	e.Payload = json.RawMessage(`{"quantity":-1,"colour":"red"}`)
	_, err := v.Check("s", eventstore.Any, []eventstore.Event{e})
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Check: %v, want *ValidationError", err)
	}
	got := map[string]string{ve.Pointer: ve.Rule}
	for _, c := range ve.Causes {
		got[c.Pointer] = c.Rule
	}
	want := map[string]string{"/payload/name": "required", "/payload/quantity": "minimum", "/payload/colour": "additionalProperties"}
	for p, r := range want {
		if got[p] != r {
			t.Errorf("violation at %s: rule %q, want %q (all: %v)", p, got[p], r, got)
		}
	}
	if !strings.Contains(err.Error(), "event 0 (storetest.item.added v1)") {
		t.Errorf("message %q does not name the event", err.Error())
	}
}

func TestCheckStreamIDBoundary(t *testing.T) {
	if err := eventstore.CheckStreamID(strings.Repeat("x", eventstore.MaxStreamIDBytes)); err != nil {
		t.Fatalf("a %d-byte stream id is refused: %v", eventstore.MaxStreamIDBytes, err)
	}
	if err := eventstore.CheckTypeName("a.b-c_d.9"); err != nil {
		t.Fatalf("CheckTypeName(a.b-c_d.9): %v", err)
	}
}

// TestRefusedTypeNameMessage checks that a refused type name reaches the
// error message quoted, cut at a rune boundary: one line of valid UTF-8,
// whatever the name holds.
func TestRefusedTypeNameMessage(t *testing.T) {
	v := newValidator(t)
	for _, c := range []struct {
		name, typ, want string // want: in the message
	}{
		{"LongMultiByte", strings.Repeat("日", 30), `("` + strings.Repeat("日", 21) + `…" v1)`},
		{"InvalidUTF8", "a\xffb", `("a\xffb" v1)`},
		{"Newline", "evil\ninjected", `("evil\ninjected" v1)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := validEvent()
			e.Type = c.typ
			_, err := v.Check("s", eventstore.Any, []eventstore.Event{e})
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || ve.Rule != "type-name" {
				t.Fatalf("Check with type %q: %v, want a type-name refusal", c.typ, err)
			}
			for _, err := range []error{err, eventstore.CheckTypeName(c.typ)} {
				msg := err.Error()
				if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r") {
					t.Errorf("message %q is not one line of valid UTF-8", msg)
				}
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) {
				t.Errorf("message %q does not contain %q", msg, c.want)
			}
		})
	}
}

// Free-form meta that is valid UTF-8 is stored as given, whatever Go
// values carry it: a replacement character written on purpose, a
// json.Marshaler (time.Time, json.RawMessage), bytes (written as base64,
// whatever they hold), a struct's exported fields and a typed map. Only
// strings that are not UTF-8 are refused (the conformance suite).
func TestCheckKeepsValidMetaExtra(t *testing.T) {
	type label struct {
		Team    string
		private string
	}
	e := validEvent()
	e.Meta.Extra = map[string]any{
		"note":   "ok \uFFFD",
		"when":   time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
		"raw":    json.RawMessage(`{"a":1}`),
		"bytes":  []byte{0xff, 0xfe},
		"label":  label{Team: "core", private: "\xff"},
		"labels": map[string]string{"team": "core"},
	}
	out, err := newValidator(t).Check("s", eventstore.Any, []eventstore.Event{e})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"note":"ok ` + "\uFFFD" + `"`, `"when":"2026-11-27T12:00:00Z"`, `"raw":{"a":1}`, `"bytes":"//4="`, `"label":{"Team":"core"}`} {
		if !strings.Contains(string(out[0].MetaJSON), want) {
			t.Errorf("meta %s: want %s", out[0].MetaJSON, want)
		}
	}
}

// metaName is unexported: encoding/json still writes the exported fields
// of a struct embedded with that type.
type metaName struct{ Name string }

type metaLabel struct {
	metaName
	Skipped string `json:"-"`
}

type metaLabelPtr struct{ *metaName }

// TestCheckMetaExtraUTF8 follows encoding/json's fields: a string it would
// write with its bad bytes replaced by U+FFFD is refused, one it never
// writes is not looked at.
func TestCheckMetaExtraUTF8(t *testing.T) {
	v := newValidator(t)
	for _, c := range []struct {
		name  string
		value any
		ok    bool
	}{
		{"EmbeddedUnexportedType", metaLabel{metaName: metaName{Name: "a\xffb"}}, false},
		{"EmbeddedUnexportedPointer", metaLabelPtr{&metaName{Name: "a\xffb"}}, false},
		{"EmbeddedNilPointer", metaLabelPtr{}, true},
		{"TaggedOut", metaLabel{metaName: metaName{Name: "ok"}, Skipped: "\xff"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := validEvent()
			e.Meta.Extra = map[string]any{"label": c.value}
			out, err := v.Check("s", eventstore.Any, []eventstore.Event{e})
			if c.ok {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if !utf8.Valid(out[0].MetaJSON) || strings.Contains(string(out[0].MetaJSON), `\ufffd`) {
					t.Fatalf("meta stored as %s", out[0].MetaJSON)
				}
				return
			}
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Check = %v (meta %s), want a *ValidationError", err, func() []byte {
					if out != nil {
						return out[0].MetaJSON
					}
					return nil
				}())
			}
			if ve.Index != 0 || ve.Pointer != "/meta/label" || ve.Rule != "utf-8" {
				t.Fatalf("Check: index %d pointer %q rule %q, want 0 %q %q", ve.Index, ve.Pointer, ve.Rule, "/meta/label", "utf-8")
			}
		})
	}
}

// TestCheckMetaExtraNUL: a NUL in a free-form meta value is refused at its
// key, as it is in the named meta fields.
func TestCheckMetaExtraNUL(t *testing.T) {
	v := newValidator(t)
	for _, c := range []struct {
		name    string
		extra   map[string]any
		pointer string
	}{
		{"String", map[string]any{"note": "a\x00b"}, "/meta/note"},
		{"Nested", map[string]any{"labels": map[string]any{"x": []any{"ok", "a\x00"}}}, "/meta/labels"},
		{"MapKey", map[string]any{"labels": map[string]string{"a\x00": "x"}}, "/meta/labels"},
		{"Key", map[string]any{"a/\x00": 1}, "/meta/a~1\x00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := validEvent()
			e.Meta.Extra = c.extra
			_, err := v.Check("s", eventstore.Any, []eventstore.Event{e})
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Check = %v, want a *ValidationError", err)
			}
			if ve.Index != 0 || ve.Pointer != c.pointer || ve.Rule != "nul" {
				t.Fatalf("Check: index %d pointer %q rule %q, want 0 %q %q (%v)", ve.Index, ve.Pointer, ve.Rule, c.pointer, "nul", err)
			}
		})
	}
}
