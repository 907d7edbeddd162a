package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
)

const sqlDrop = `'; DROP TABLE events; --`

// hostileCase is one value a user can type. rule == "" means it must be
// stored exactly as given and read back identically; otherwise the append
// must be refused with a *ValidationError carrying that rule, and nothing
// written.
type hostileCase struct {
	name   string
	stream string
	edit   func(e *eventstore.Event)
	rule   string
}

func hostileCases() []hostileCase {
	mb := strings.Repeat("x", 1<<20)
	nested := func(depth int) string {
		return strings.Repeat("[", depth) + strings.Repeat("]", depth)
	}
	note := func(raw string) func(e *eventstore.Event) {
		return func(e *eventstore.Event) {
			e.Payload = json.RawMessage(`{"writer":1,"seq":2,"i":3,"note":` + raw + `}`)
		}
	}
	payload := func(raw string) func(e *eventstore.Event) {
		return func(e *eventstore.Event) { e.Payload = json.RawMessage(raw) }
	}
	extra := func(k string, v any) func(e *eventstore.Event) {
		return func(e *eventstore.Event) { e.Meta.Extra = map[string]any{k: v} }
	}
	tenant := func(t string) func(e *eventstore.Event) { return func(e *eventstore.Event) { e.Meta.TenantID = t } }
	source := func(s string) func(e *eventstore.Event) { return func(e *eventstore.Event) { e.Source = s } }
	typ := func(t string) func(e *eventstore.Event) { return func(e *eventstore.Event) { e.Type = t } }
	return []hostileCase{
		// Stream ids: anything printable is data, kept verbatim.
		{name: "stream/sql", stream: sqlDrop},
		{name: "stream/quotes", stream: `it's "quoted"`},
		{name: "stream/semicolons", stream: "a;b;c"},
		{name: "stream/placeholder", stream: "$1"},
		{name: "stream/like-wildcards", stream: `%_\`},
		{name: "stream/or-true", stream: `x' OR '1'='1`},
		{name: "stream/control", stream: "line\nbreak\ttab\r"},
		{name: "stream/unicode", stream: "ünï🙂\u202eevil"},
		{name: "stream/255-bytes", stream: strings.Repeat("s", 255)},
		{name: "stream/256-bytes", stream: strings.Repeat("s", 256), rule: "stream-id"},
		{name: "stream/1MB", stream: mb, rule: "stream-id"},
		{name: "stream/nul", stream: "a\x00b", rule: "stream-id"},
		{name: "stream/invalid-utf8", stream: "a\xff\xfeb", rule: "stream-id"},
		{name: "stream/empty", stream: "", rule: "stream-id"},

		// Type names: a closed alphabet, so SQL cannot even be spelled.
		{name: "type/sql", edit: typ("a" + sqlDrop), rule: "type-name"},
		{name: "type/upper", edit: typ("Reliability.Probe"), rule: "type-name"},
		{name: "type/nul", edit: typ("reliability.probe\x00"), rule: "type-name"},
		{name: "type/invalid-utf8", edit: typ("reliability.\xff"), rule: "type-name"},
		{name: "type/1MB", edit: typ(strings.Repeat("a", 1<<20)), rule: "type-name"},
		{name: "type/unknown", edit: typ("no.such.type"), rule: "unknown-type"},

		// Tenants and other envelope strings.
		{name: "tenant/sql", edit: tenant(sqlDrop)},
		{name: "tenant/quotes-semicolons", edit: tenant(`"t";'u';`)},
		{name: "tenant/nul", edit: tenant("acme\x00"), rule: "nul"},
		{name: "tenant/invalid-utf8", edit: tenant("acme\xff"), rule: "utf-8"},
		{name: "tenant/256-chars", edit: tenant(strings.Repeat("t", 256)), rule: "maxLength"},
		{name: "tenant/1MB", edit: tenant(mb), rule: "event-size"},
		{name: "tenant/empty", edit: tenant(""), rule: "minLength"},
		{name: "source/sql", edit: source(`x'); DELETE FROM events; --`)},
		{name: "source/nul", edit: source("x\x00"), rule: "nul"},

		// Payloads.
		{name: "payload/sql-in-string", edit: note(`"` + strings.ReplaceAll(sqlDrop, `'`, `\u0027`) + `"`)},
		{name: "payload/escaped-nul", edit: note(`"a\u0000b"`), rule: "nul"},
		{name: "payload/raw-nul", edit: note("\"a\x00b\""), rule: "nul"},
		{name: "payload/invalid-utf8", edit: note("\"a\xffb\""), rule: "utf-8"},
		{name: "payload/lone-surrogate", edit: note(`"\ud800"`), rule: "surrogate"},
		{name: "payload/surrogate-pair", edit: note(`"\ud83d\ude00"`)},
		{name: "payload/just-under-1MiB", edit: note(`"` + strings.Repeat("x", (1<<20)-200) + `"`)},
		{name: "payload/1MB-over", edit: note(`"` + mb + `"`), rule: "event-size"},
		{name: "payload/nested-10000", edit: note(nested(10000)), rule: "depth"},
		{name: "payload/duplicate-key", edit: payload(`{"writer":1,"seq":2,"i":3,"i":4}`), rule: "duplicate-key"},
		{name: "payload/beyond-float64", edit: payload(`{"writer":1,"seq":123456789012345678901234567890,"i":3}`)},
		{name: "payload/huge-exponent", edit: payload(`{"writer":1,"seq":1e400,"i":3}`)},
		{name: "payload/exponent-beyond-limit", edit: payload(`{"writer":1,"seq":1e100000,"i":3}`), rule: "number-range"},
		{name: "payload/not-an-object", edit: payload(`["writer",1]`), rule: "type"},
		{name: "payload/trailing-garbage", edit: payload(`{"writer":1,"seq":2,"i":3}; DROP TABLE events`), rule: "json"},
		{name: "payload/schema-breach", edit: payload(`{"writer":1,"seq":2,"i":3,"` + sqlDrop + `":1}`), rule: "additionalProperties"},

		// Free-form meta.
		{name: "meta/sql-key", edit: extra(sqlDrop, sqlDrop)},
		{name: "meta/precise-decimal", edit: extra("amount", json.Number("123456789012345678901234567890.123456789012345678901"))},
		{name: "meta/nested-64", edit: extra("deep", nestedValue(63))},
		{name: "meta/nested-10000", edit: extra("deep", nestedValue(10000)), rule: "depth"},
		{name: "meta/nul-in-value", edit: extra("k", "a\x00b"), rule: "nul"},
	}
}

func nestedValue(depth int) any {
	var v any = []any{}
	for range depth - 1 {
		v = []any{v}
	}
	return v
}

// TestHostileValuesAreStoredVerbatimOrRefused runs the hostile table
// through the PostgreSQL store and the in-memory store. A refused value
// gives a *ValidationError with the expected rule and writes nothing; a
// stored one reads back identical (strings byte for byte, JSON as the same
// value, numbers beyond float64 digit for digit); and after all of it the
// events table is still there, holding exactly the stored events.
func TestHostileValuesAreStoredVerbatimOrRefused(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		url, schema := pgtest.Schema(t)
		pool := openPool(t, url, 4)
		s := openStore(t, pool, reg, postgres.Options{})
		stored := runHostile(t, s)
		ctx := context.Background()
		var table *string
		var n int
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1)::text, (SELECT count(*) FROM events)`, schema+".events").Scan(&table, &n); err != nil {
			t.Fatalf("the events table after the hostile values: %v", err)
		}
		if table == nil || n != stored {
			t.Fatalf("events table %v with %d rows, want it to exist with %d", table, n, stored)
		}
		// The SQL-looking stream is one stream among others, found by its
		// exact name only.
		evs, err := s.ReadStream(ctx, sqlDrop, 1, 0)
		if err != nil || len(evs) != 1 || evs[0].Stream != sqlDrop {
			t.Fatalf("ReadStream(%q) = %d events, %v", sqlDrop, len(evs), err)
		}
		if _, err := s.ReadStream(ctx, "%", 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream(%%) = %v, want ErrStreamNotFound (no LIKE matching)", err)
		}
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{TenantID: sqlDrop})
		if err != nil || len(page.Events) != 1 || page.Events[0].Meta.TenantID != sqlDrop {
			t.Fatalf("ReadAll(tenant %q) = %d events, %v", sqlDrop, len(page.Events), err)
		}
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		s, err := memory.New(reg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		runHostile(t, s)
	})
}

// runHostile appends each case to s and checks the outcome; it returns
// how many events were stored.
func runHostile(t *testing.T, s eventstore.Store) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stored, refused := 0, 0
	for i, c := range hostileCases() {
		e := probe(1, i, 0)
		if c.edit != nil {
			c.edit(&e)
		}
		stream := c.stream
		if stream == "" && !strings.HasPrefix(c.name, "stream/") {
			stream = fmt.Sprintf("hostile-%d", i)
		}
		before, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Append(ctx, stream, eventstore.NoStream, e)
		if c.rule != "" {
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("%s: Append = %v, want a ValidationError (rule %s)", c.name, err, c.rule)
				continue
			}
			if ve.Rule != c.rule {
				t.Errorf("%s: refused with rule %q (%v), want %q", c.name, ve.Rule, ve, c.rule)
			}
			if len(ve.Error()) > 2048 {
				t.Errorf("%s: the error is %d bytes long: it repeats the input instead of naming the problem", c.name, len(ve.Error()))
			}
			if after, err := s.Head(ctx); err != nil || after != before {
				t.Errorf("%s: refused, yet the head moved from %s to %s (%v)", c.name, before, after, err)
			}
			refused++
			continue
		}
		if err != nil {
			t.Errorf("%s: Append refused a value it should store: %v", c.name, err)
			continue
		}
		stored++
		got, err := s.ReadStream(ctx, stream, 1, 0)
		if err != nil || len(got) != 1 {
			t.Errorf("%s: ReadStream = %d events, %v", c.name, len(got), err)
			continue
		}
		sameEvent(t, c.name, e, stream, got[0])
		if got[0].ID != res.Events[0].ID || got[0].Position != res.Events[0].Position {
			t.Errorf("%s: read %s at %s, appended %s at %s", c.name, got[0].ID, got[0].Position, res.Events[0].ID, res.Events[0].Position)
		}
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: res.Events[0].Position, Limit: 1})
		if err != nil || len(page.Events) != 1 {
			t.Errorf("%s: ReadAll = %d events, %v", c.name, len(page.Events), err)
			continue
		}
		sameEvent(t, c.name+" (ReadAll)", e, stream, page.Events[0])
	}
	t.Logf("%d hostile values stored verbatim, %d refused with their rule", stored, refused)
	return stored
}

func sameEvent(t *testing.T, name string, sent eventstore.Event, stream string, got eventstore.Event) {
	t.Helper()
	if got.ID != sent.ID || got.Stream != stream || got.Type != sent.Type || got.Source != sent.Source ||
		got.Target != sent.Target || got.Meta.TenantID != sent.Meta.TenantID || got.Meta.Producer != sent.Meta.Producer {
		t.Errorf("%s: read back %q/%q/%q/%q, sent %q/%q/%q/%q", name,
			clip(got.Stream), clip(got.Type), clip(got.Source), clip(got.Meta.TenantID),
			clip(stream), clip(sent.Type), clip(sent.Source), clip(sent.Meta.TenantID))
	}
	if !sameJSON(t, sent.Payload, got.Payload) {
		t.Errorf("%s: payload read back as %s, sent %s", name, clip(string(got.Payload)), clip(string(sent.Payload)))
	}
	sentMeta, _ := json.Marshal(sent.Meta.Extra)
	gotMeta, _ := json.Marshal(got.Meta.Extra)
	if len(sent.Meta.Extra) == 0 && len(got.Meta.Extra) == 0 {
		return
	}
	if !sameJSON(t, sentMeta, gotMeta) {
		t.Errorf("%s: meta read back as %s, sent %s", name, clip(string(gotMeta)), clip(string(sentMeta)))
	}
}

// sameJSON compares two JSON documents as values; numbers compare exactly
// as decimals (jsonb may write 1e400 out in full, but not change it).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	x, err1 := eventstore.DecodeJSON(a)
	y, err2 := eventstore.DecodeJSON(b)
	if err1 != nil || err2 != nil {
		t.Errorf("decode: %v / %v", err1, err2)
		return false
	}
	return reflect.DeepEqual(exactNumbers(x), exactNumbers(y))
}

func exactNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = exactNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = exactNumbers(x)
		}
	case json.Number:
		r, ok := new(big.Rat).SetString(string(t))
		if ok {
			return r.RatString()
		}
	}
	return v
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}
