package eventstore_test

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// allocated is the bytes f allocates, measured once (not timed).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// wideObject is one object of n members with distinct short keys.
func wideObject(n int) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + strconv.Itoa(i) + `":0`)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// TestDecodeJSONExpansion holds DecodeJSON to MaxJSONExpansion on the JSON
// that costs the most memory per byte: the bytes a decode allocates, the
// refused ones included, stay within MaxJSONExpansion times the input plus
// the first MiB (and the array counts, 4 bytes an array). Before the bound
// [[],[],...] took 35 times its size, [0,0,...] 51 times, [{},{},...] 43
// and [{"":0},...] 64.
func TestDecodeJSONExpansion(t *testing.T) {
	const size = 1 << 20 // MaxEventBytes
	for _, c := range []struct {
		name   string
		in     []byte
		refuse bool
	}{
		{"empty arrays", pathological("[]", size/3), false},
		{"one-element arrays", pathological("[0]", size/4), false},
		{"digits", pathological("0", size/2), false},
		{"numbers", pathological("10", size/3), false},
		{"strings", pathological(`"a"`, size/4), false},
		{"wide object", wideObject(size / 9), false},
		{"empty objects", pathological("{}", size/3), false},
		{"small objects", pathological(`{"":0}`, size/7), true},
		{"nested", pathological(`[{"":[{}]}]`, size/12), true},
	} {
		var err error
		got := allocated(func() { _, err = eventstore.DecodeJSON(c.in) })
		limit := uint64((eventstore.MaxJSONExpansion+2)*len(c.in) + 1<<20)
		t.Logf("%s: %d bytes of JSON allocated %d (%.1f times); %v", c.name, len(c.in), got, float64(got)/float64(len(c.in)), err)
		if got > limit {
			t.Errorf("%s: %d bytes of JSON allocated %d (%.1f times), want at most %d", c.name, len(c.in), got, float64(got)/float64(len(c.in)), limit)
		}
		var je *eventstore.JSONError
		switch {
		case c.refuse && (!errors.As(err, &je) || je.Rule != "expansion"):
			t.Errorf("%s: %v, want a *JSONError with rule expansion", c.name, err)
		case !c.refuse && err != nil:
			t.Errorf("%s: %v, want it decoded", c.name, err)
		}
	}
}

// TestDecodeJSONExpansionFree: a small payload is never refused for its
// cost, however many small objects it holds (the first MiB is free).
func TestDecodeJSONExpansionFree(t *testing.T) {
	in := pathological(`{"a":0}`, 2500) // 20 kB, about 900 kB decoded
	if _, err := eventstore.DecodeJSON(in); err != nil {
		t.Fatalf("2,500 small objects: %v, want them decoded", err)
	}
}

// TestDecodeStoredJSON: JSON read back from a store is not held to
// MaxJSONExpansion, so an event stored before the limit (or read back
// denser than it was sent) still loads; every other check still applies.
func TestDecodeStoredJSON(t *testing.T) {
	dense := pathological(`{"a":0}`, 20_000) // 160 kB, about 7 MB decoded
	var je *eventstore.JSONError
	if _, err := eventstore.DecodeJSON(dense); !errors.As(err, &je) || je.Rule != "expansion" {
		t.Fatalf("DecodeJSON = %v, want a *JSONError with rule expansion", err)
	}
	v, err := eventstore.DecodeStoredJSON(dense)
	if err != nil {
		t.Fatalf("DecodeStoredJSON = %v, want it decoded", err)
	}
	if got, want := len(v.([]any)), 20_000; got != want {
		t.Fatalf("DecodeStoredJSON gave %d elements, want %d", got, want)
	}
	for _, c := range []struct{ in, rule string }{
		{`{"a":1,"a":2}`, "duplicate-key"},
		{"\"\xff\"", "utf-8"},
		{`"\u0000"`, "nul"},
		{`"\ud800"`, "surrogate"},
		{strings.Repeat("[", eventstore.MaxJSONDepth+1) + strings.Repeat("]", eventstore.MaxJSONDepth+1), "depth"},
		{`1e1001`, "number-range"},
		{`{} {}`, "json"},
	} {
		if _, err := eventstore.DecodeStoredJSON([]byte(c.in)); !errors.As(err, &je) || je.Rule != c.rule {
			t.Errorf("DecodeStoredJSON(%.20q) = %v, want rule %s", c.in, err, c.rule)
		}
	}
}

// TestJSONEqualStoredBeyondExpansion: a stored value beyond
// MaxJSONExpansion still equals what a retry of its append sends, in any
// spelling (whitespace, escaped keys, other number forms), while the new
// side stays bounded: a dense value compared with a small stored one is
// refused within its own allowance.
func TestJSONEqualStoredBeyondExpansion(t *testing.T) {
	stored := pathological(`{"a":0}`, 20_000)
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"the same bytes", stored, true},
		{"spaced as jsonb gives it back", pathological(`{"a": 0}`, 20_000), true},
		{"escaped keys, other numbers", pathological(` { "\u0061" : 0.0e5 } `, 20_000), true},
		{"one element more", pathological(`{"a":0}`, 20_001), false},
		{"another value", pathological(`{"a":1}`, 20_000), false},
	} {
		if got := eventstore.JSONEqual(stored, c.b); got != c.want {
			t.Errorf("%s: JSONEqual = %v, want %v", c.name, got, c.want)
		}
	}
	in := pathological(`{"":0}`, (1<<20)/7)
	var equal bool
	got := allocated(func() { equal = eventstore.JSONEqual([]byte(`{}`), in) })
	if limit := uint64((eventstore.MaxJSONExpansion+2)*len(in) + 1<<20); equal || got > limit {
		t.Errorf("JSONEqual({}, %d bytes of small objects) = %v, allocated %d; want false within %d", len(in), equal, got, limit)
	}
}
