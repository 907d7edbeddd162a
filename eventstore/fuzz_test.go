package eventstore_test

// Fuzz targets for what a user can type into an envelope (issue 8). Their
// seed corpora are committed under testdata/fuzz/<Target>; a crash the
// fuzzer finds is written there too and so becomes a regression test that
// every "go test" runs. .ci/fuzz runs each target for a while.

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// jsonRules are the rules DecodeJSON may refuse with.
var jsonRules = map[string]bool{
	"json": true, "utf-8": true, "nul": true, "surrogate": true,
	"duplicate-key": true, "depth": true, "number-range": true,
}

// FuzzDecodeJSON checks DecodeJSON against encoding/json: it never
// accepts what is not JSON, refuses valid JSON only for its documented
// reasons (never a syntax reason), and what it accepts survives a round
// trip unchanged.
//
// With an intern table of object keys (what the validator passes), the
// result and the error are exactly the same.
func FuzzDecodeJSON(f *testing.F) {
	interned := map[string]string{"title": "title", "n": "n", "a": "a", "tags": "tags", "": ""}
	for _, seed := range []string{`{"title": 1, "title": 2}`, `{"title": 1, "ti\u0074le": 2}`, `{"": {"": []}}`,
		`{"n": 1, "n\u0000": 2}`, `{"tags": ["a"], "a": {"title": "x"}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := eventstore.DecodeJSON(b)
		iv, ierr := eventstore.DecodeJSONInterned(b, interned)
		if !reflect.DeepEqual(v, iv) || !reflect.DeepEqual(err, ierr) {
			t.Fatalf("DecodeJSON(%q) = %#v, %v; with interned keys %#v, %v", b, v, err, iv, ierr)
		}
		if err != nil {
			var je *eventstore.JSONError
			if !errors.As(err, &je) {
				t.Fatalf("DecodeJSON(%q): error %T %v, want *JSONError", b, err, err)
			}
			if !jsonRules[je.Rule] || je.Message == "" {
				t.Fatalf("DecodeJSON(%q): rule %q, message %q", b, je.Rule, je.Message)
			}
			if json.Valid(b) && je.Rule == "json" {
				t.Fatalf("DecodeJSON refused valid JSON %q as a syntax error: %v", b, err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("DecodeJSON accepted invalid JSON %q", b)
		}
		re, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encode %q: %v", b, err)
		}
		w, err := eventstore.DecodeJSON(re)
		if err != nil {
			t.Fatalf("DecodeJSON refused its own output %q (from %q): %v", re, b, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip changed %q: %#v became %#v", b, v, w)
		}
	})
}

// streamIDOK is the documented rule, written independently of the code.
func streamIDOK(s string) bool {
	return len(s) >= 1 && len(s) <= eventstore.MaxStreamIDBytes && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// FuzzCheckStreamID checks the stream-id rule: 1–255 bytes of UTF-8
// without NUL, anything else (quotes, SQL, control characters) allowed.
func FuzzCheckStreamID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		err := eventstore.CheckStreamID(s)
		if got, want := err == nil, streamIDOK(s); got != want {
			t.Fatalf("CheckStreamID(%q) = %v; the rule says accept=%v", s, err, want)
		}
		if err != nil {
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || ve.Rule != "stream-id" || ve.Pointer != "/stream" || !errors.Is(err, eventstore.ErrValidation) || !utf8.ValidString(err.Error()) {
				t.Fatalf("CheckStreamID(%q): %#v, want a stream-id ValidationError", s, err)
			}
		}
	})
}

func typeNameOK(s string) bool {
	if len(s) < 1 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

// FuzzCheckTypeName checks the type-name rule: 1–255 characters of
// [a-z0-9._-], starting with a letter or digit.
func FuzzCheckTypeName(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		err := eventstore.CheckTypeName(s)
		if got, want := err == nil, typeNameOK(s); got != want {
			t.Fatalf("CheckTypeName(%q) = %v; the rule says accept=%v", s, err, want)
		}
		if err != nil {
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || ve.Rule != "type-name" || !utf8.ValidString(err.Error()) {
				t.Fatalf("CheckTypeName(%q): %#v, want a type-name ValidationError", s, err)
			}
		}
	})
}

func fuzzValidator(f *testing.F) (*eventstore.Validator, *schemas.Registry) {
	reg, err := schemas.Default()
	if err != nil {
		f.Fatal(err)
	}
	v, err := eventstore.NewValidator(reg)
	if err != nil {
		f.Fatal(err)
	}
	return v, reg
}

// checkOutcome is the contract of Validator.Check for one event: a
// refusal is a *ValidationError naming a rule and the event (or -1), and
// an acceptance means every documented rule holds for what will be
// written.
func checkOutcome(t *testing.T, reg *schemas.Registry, stream string, e eventstore.Event, out []eventstore.Prepared, err error) {
	t.Helper()
	if err != nil {
		var ve *eventstore.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrValidation) {
			t.Fatalf("Check refused with %T %v, want *ValidationError", err, err)
		}
		if ve.Rule == "" || ve.Message == "" || (ve.Index != 0 && ve.Index != -1) {
			t.Fatalf("Check refusal without rule, message or index: %#v", ve)
		}
		if !utf8.ValidString(err.Error()) {
			t.Fatalf("Check refusal message %q is not valid UTF-8", err.Error())
		}
		if ve.Pointer != "" && ve.Pointer[0] != '/' {
			t.Fatalf("Check refusal pointer %q is not a JSON pointer", ve.Pointer)
		}
		return
	}
	if len(out) != 1 {
		t.Fatalf("Check accepted one event and returned %d", len(out))
	}
	p := out[0]
	switch {
	case !streamIDOK(stream):
		t.Fatalf("Check accepted stream id %q", stream)
	case !typeNameOK(p.Type):
		t.Fatalf("Check accepted type %q", p.Type)
	case !reg.Has(p.Type, p.Meta.SchemaVersion):
		t.Fatalf("Check accepted %s v%d, which has no schema", p.Type, p.Meta.SchemaVersion)
	case p.Stream != stream:
		t.Fatalf("prepared stream %q, appended to %q", p.Stream, stream)
	case p.ID == [16]byte{}:
		t.Fatal("prepared event has no id")
	case p.Meta.TenantID == "":
		t.Fatal("Check accepted an event without a tenant")
	case len(p.Payload)+len(p.MetaJSON) > eventstore.MaxEventBytes:
		t.Fatalf("Check accepted %d bytes", len(p.Payload)+len(p.MetaJSON))
	}
	if e.ID != [16]byte{} && p.ID != e.ID {
		t.Fatalf("prepared id %s, given %s", p.ID, e.ID)
	}
	pl, err := eventstore.DecodeJSON(p.Payload)
	if err != nil {
		t.Fatalf("Check accepted a payload DecodeJSON refuses: %v", err)
	}
	if _, ok := pl.(map[string]any); !ok {
		t.Fatalf("Check accepted a payload that is not an object: %s", p.Payload)
	}
	if _, err := eventstore.DecodeJSON(p.MetaJSON); err != nil {
		t.Fatalf("Check produced meta JSON %q that DecodeJSON refuses: %v", p.MetaJSON, err)
	}
	for _, s := range []string{p.Source, p.Target, p.Meta.TenantID, p.Meta.Producer, p.Meta.CorrelationID, p.Meta.CausationID} {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Fatalf("Check accepted a string PostgreSQL cannot store: %q", s)
		}
	}
}

// FuzzValidatorCheck feeds the validator envelopes built from fuzzed
// fields, against the embedded schemas.
func FuzzValidatorCheck(f *testing.F) {
	v, reg := fuzzValidator(f)
	f.Fuzz(func(t *testing.T, stream, typ, source, tenant, correlation string, schemaVersion int, payload []byte) {
		e := eventstore.Event{
			Type: typ, Source: source, Payload: payload,
			Meta: eventstore.Meta{SchemaVersion: schemaVersion, TenantID: tenant, CorrelationID: correlation, Producer: "fuzz"},
		}
		out, err := v.Check(stream, eventstore.Any, []eventstore.Event{e})
		checkOutcome(t, reg, stream, e, out, err)
	})
}

// FuzzEnvelopeJSON decodes a whole JSON envelope (as an HTTP client or an
// NDJSON file sends it) into an Event and validates it: decoding may fail
// with an error, validation must follow its contract, nothing may panic.
func FuzzEnvelopeJSON(f *testing.F) {
	v, reg := fuzzValidator(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e eventstore.Event
		if _, err := eventstore.DecodeJSON(b); err != nil {
			return
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return
		}
		stream := e.Stream
		out, err := v.Check(stream, eventstore.Any, []eventstore.Event{e})
		checkOutcome(t, reg, stream, e, out, err)
		if err == nil {
			// What is accepted encodes back to JSON that decodes again.
			raw, err := json.Marshal(out[0].Event)
			if err != nil {
				t.Fatalf("an accepted event does not encode: %v", err)
			}
			var back eventstore.Event
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatalf("an accepted event does not decode from its own JSON %s: %v", raw, err)
			}
			if back.ID != out[0].ID || back.Type != out[0].Type || back.Stream != out[0].Stream || back.Meta.TenantID != out[0].Meta.TenantID {
				t.Fatalf("round trip changed the envelope: %s", raw)
			}
		}
	})
}
