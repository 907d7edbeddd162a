package eventstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

func TestPositionStringAndParse(t *testing.T) {
	for _, c := range []struct {
		pos  eventstore.Position
		text string
		js   string
	}{
		{eventstore.Start, "0", `0`},
		{eventstore.Pos(1), "1", `1`},
		{eventstore.Pos(18446744073709551615), "18446744073709551615", `18446744073709551615`},
		{eventstore.Position{Commit: 10, Prepare: 7}, "10/7", `"10/7"`},
		{eventstore.Position{Commit: 0, Prepare: 3}, "0/3", `"0/3"`},
	} {
		if got := c.pos.String(); got != c.text {
			t.Errorf("%#v.String() = %q, want %q", c.pos, got, c.text)
		}
		p, err := eventstore.ParsePosition(c.text)
		if err != nil || p != c.pos {
			t.Errorf("ParsePosition(%q) = %#v, %v; want %#v", c.text, p, err, c.pos)
		}
		b, err := json.Marshal(c.pos)
		if err != nil || string(b) != c.js {
			t.Errorf("json.Marshal(%#v) = %s, %v; want %s", c.pos, b, err, c.js)
		}
		var back eventstore.Position
		if err := json.Unmarshal(b, &back); err != nil || back != c.pos {
			t.Errorf("json.Unmarshal(%s) = %#v, %v; want %#v", b, back, err, c.pos)
		}
	}
}

func TestParsePositionAccepts(t *testing.T) {
	for in, want := range map[string]eventstore.Position{
		" 42 ": eventstore.Pos(42),
		"5/5":  eventstore.Pos(5),
	} {
		if got, err := eventstore.ParsePosition(in); err != nil || got != want {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	var p eventstore.Position
	if err := json.Unmarshal([]byte(`"42"`), &p); err != nil || p != eventstore.Pos(42) {
		t.Errorf(`json.Unmarshal("42") = %v, %v; want 42`, p, err)
	}
}

func TestParsePositionRefuses(t *testing.T) {
	for _, in := range []string{"", "x", "-1", "1.5", "1/", "/1", "1/2/3", "1/-2", "18446744073709551616", "0x10"} {
		if p, err := eventstore.ParsePosition(in); err == nil {
			t.Errorf("ParsePosition(%q) = %v, want an error", in, p)
		}
	}
	for _, in := range []string{`-3`, `"a/b"`, `1.5`, `true`, `"1/2/3"`} {
		var p eventstore.Position
		if err := json.Unmarshal([]byte(in), &p); err == nil {
			t.Errorf("json.Unmarshal(%s) = %v, want an error", in, p)
		}
	}
}

func TestPositionCompare(t *testing.T) {
	ordered := []eventstore.Position{
		eventstore.Start,
		{Commit: 0, Prepare: 1},
		eventstore.Pos(1),
		{Commit: 1, Prepare: 9},
		{Commit: 2, Prepare: 0},
		eventstore.Pos(2),
		eventstore.Pos(1 << 40),
	}
	for i, p := range ordered {
		for j, q := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := p.Compare(q); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", p, q, got, want)
			}
		}
	}
	if !eventstore.Start.IsZero() || eventstore.Pos(1).IsZero() || (eventstore.Position{Prepare: 1}).IsZero() {
		t.Error("IsZero is true only for Start")
	}
}

func TestExpectedVersionParseAndString(t *testing.T) {
	for in, want := range map[string]eventstore.ExpectedVersion{
		"":              eventstore.Any,
		"any":           eventstore.Any,
		"no-stream":     eventstore.NoStream,
		"exists":        eventstore.StreamExists,
		"stream-exists": eventstore.StreamExists,
		"0":             eventstore.Exact(0),
		"17":            eventstore.Exact(17),
	} {
		got, err := eventstore.ParseExpectedVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseExpectedVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, e := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.NoStream, eventstore.StreamExists, eventstore.Exact(0), eventstore.Exact(9)} {
		back, err := eventstore.ParseExpectedVersion(e.String())
		if err != nil || back != e {
			t.Errorf("ParseExpectedVersion(%q) = %v, %v; want %v back", e.String(), back, err, e)
		}
	}
	for _, in := range []string{"-1", "-2", "-3", "-4", "Any", "exact", "1.0", "1e3", "99999999999999999999"} {
		_, err := eventstore.ParseExpectedVersion(in)
		var ve *eventstore.ValidationError
		if !errors.As(err, &ve) || ve.Rule != "expected-version" || ve.Pointer != "/expected_version" {
			t.Errorf("ParseExpectedVersion(%q): %v, want a *ValidationError with rule expected-version", in, err)
		}
		if !errors.Is(err, eventstore.ErrValidation) {
			t.Errorf("ParseExpectedVersion(%q): errors.Is(err, ErrValidation) = false", in)
		}
	}
}

func TestExpectedVersionSatisfied(t *testing.T) {
	for _, c := range []struct {
		e       eventstore.ExpectedVersion
		current int64
		want    bool
	}{
		{eventstore.Any, 0, true},
		{eventstore.Any, 5, true},
		{eventstore.NoStream, 0, true},
		{eventstore.NoStream, 1, false},
		{eventstore.StreamExists, 0, false},
		{eventstore.StreamExists, 1, true},
		{eventstore.Exact(0), 0, true},
		{eventstore.Exact(0), 1, false},
		{eventstore.Exact(3), 3, true},
		{eventstore.Exact(3), 2, false},
		{eventstore.Exact(3), 4, false},
	} {
		if got := c.e.Satisfied(c.current); got != c.want {
			t.Errorf("%s.Satisfied(%d) = %v, want %v", c.e, c.current, got, c.want)
		}
	}
}

func TestMetaJSON(t *testing.T) {
	m := eventstore.Meta{
		SchemaVersion: 2,
		Producer:      "p",
		TenantID:      "t",
		CorrelationID: "c",
		CausationID:   "k",
		Extra: map[string]any{
			"trace":     "x",
			"n":         json.Number("12345678901234567890"),
			"nested":    map[string]any{"a": []any{1, "b"}},
			"tenant_id": "must not override the named field",
		},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["tenant_id"] != "t" {
		t.Fatalf("encoded tenant_id = %v: an Extra key overrode the named field", raw["tenant_id"])
	}
	var back eventstore.Meta
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.SchemaVersion != 2 || back.Producer != "p" || back.TenantID != "t" || back.CorrelationID != "c" || back.CausationID != "k" {
		t.Fatalf("decoded %+v", back)
	}
	if len(back.Extra) != 3 {
		t.Fatalf("decoded Extra %v, want trace, n and nested", back.Extra)
	}
	if back.Extra["trace"] != "x" {
		t.Errorf("Extra[trace] = %v", back.Extra["trace"])
	}
	if n, ok := back.Extra["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("Extra[n] = %#v, want json.Number 12345678901234567890 (no float64 rounding)", back.Extra["n"])
	}
	if _, ok := back.Extra["nested"].(map[string]any); !ok {
		t.Errorf("Extra[nested] = %#v, want an object", back.Extra["nested"])
	}
}

func TestMetaJSONOmitsEmptyOptionalFields(t *testing.T) {
	b, err := json.Marshal(eventstore.Meta{SchemaVersion: 1, TenantID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"schema_version":1,"tenant_id":"t"}`; got != want {
		t.Fatalf("encoded %s, want %s", got, want)
	}
	var m eventstore.Meta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Extra != nil {
		t.Fatalf("Extra = %v, want nil when there are no free-form keys", m.Extra)
	}
}

func TestMetaUnmarshalRefuses(t *testing.T) {
	for _, in := range []string{`[]`, `{"schema_version":"1"}`, `{"tenant_id":5}`, `{"producer":{}}`, `{"x":1`} {
		var m eventstore.Meta
		if err := json.Unmarshal([]byte(in), &m); err == nil {
			t.Errorf("json.Unmarshal(%s) into Meta succeeded: %+v", in, m)
		}
	}
}

func TestAppendResult(t *testing.T) {
	var empty eventstore.AppendResult
	if empty.Version() != 0 || !empty.Position().IsZero() {
		t.Fatalf("empty result: version %d position %v", empty.Version(), empty.Position())
	}
	r := eventstore.AppendResult{Events: []eventstore.Event{
		{Version: 4, Position: eventstore.Pos(10)},
		{Version: 5, Position: eventstore.Pos(11)},
	}}
	if r.Version() != 5 || r.Position() != eventstore.Pos(11) {
		t.Fatalf("result: version %d position %v, want 5 and 11", r.Version(), r.Position())
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{&eventstore.ConcurrencyError{Stream: "s", Expected: eventstore.NoStream, Actual: 3}, eventstore.ErrConcurrency},
		{&eventstore.ValidationError{Index: -1, Rule: "batch-size"}, eventstore.ErrValidation},
		{&eventstore.DuplicateEventError{ID: "x", Stream: "s"}, eventstore.ErrDuplicateEvent},
	} {
		wrapped := errors.Join(errors.New("context"), c.err)
		if !errors.Is(wrapped, c.want) {
			t.Errorf("%T does not match %v", c.err, c.want)
		}
		if errors.Is(c.err, eventstore.ErrStreamNotFound) {
			t.Errorf("%T matches ErrStreamNotFound", c.err)
		}
		if c.err.Error() == "" {
			t.Errorf("%T has an empty message", c.err)
		}
	}
	ce := &eventstore.ConcurrencyError{Stream: "orders-1", Expected: eventstore.Exact(2), Actual: 3}
	if got, want := ce.Error(), `eventstore: stream "orders-1": expected version 2, actual 3`; got != want {
		t.Errorf("ConcurrencyError message %q, want %q", got, want)
	}
}

// AppendMeta says what Meta.MarshalJSON says, escapes and free-form keys
// included, and the validator stores the same value.
func TestAppendMetaMatchesMarshalJSON(t *testing.T) {
	metas := []eventstore.Meta{
		{SchemaVersion: 1, TenantID: "acme"},
		{SchemaVersion: 2, TenantID: `quo"te\back`, Producer: "p\n\t\x01", CorrelationID: "c-1", CausationID: "é ü 😀 \u2028 <&>"},
		{SchemaVersion: 1, TenantID: "t", Extra: map[string]any{"trace": "abc", "n": json.Number("12345678901234567890"),
			"nested": map[string]any{"a": []any{true, nil}}, "tenant_id": "shadowed", "k\"ey": "<v>"}},
	}
	for _, m := range metas {
		got, err := eventstore.AppendMeta([]byte("prefix:"), m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte("prefix:")) {
			t.Fatalf("AppendMeta dropped what dst held: %s", got)
		}
		got = got[len("prefix:"):]
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(got) || !eventstore.JSONEqual(got, want) {
			t.Fatalf("AppendMeta:\n%s\nMarshalJSON:\n%s", got, want)
		}
	}
	if _, err := eventstore.AppendMeta(nil, eventstore.Meta{SchemaVersion: 1, TenantID: "t", Extra: map[string]any{"f": func() {}}}); err == nil {
		t.Fatal("AppendMeta encoded a func value")
	}
}

func BenchmarkAppendMeta(b *testing.B) {
	m := eventstore.Meta{SchemaVersion: 1, TenantID: "tenant-1", Producer: "svc", CorrelationID: "corr-123"}
	buf := make([]byte, 0, 160)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = eventstore.AppendMeta(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}
