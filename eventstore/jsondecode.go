package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"
)

// JSONError is a payload that is not acceptable JSON: malformed, with a
// duplicate key, too deeply nested, too costly to decode (rule
// "expansion", see MaxJSONExpansion), not UTF-8, or carrying a character
// PostgreSQL's jsonb cannot store (NUL, a lone UTF-16 surrogate).
type JSONError struct {
	Rule    string
	Offset  int
	Message string
}

func (e *JSONError) Error() string { return e.Message }

// DecodeJSON decodes one JSON value the way validation sees it: objects as
// map[string]any, arrays as []any, numbers as json.Number (so values beyond
// float64 keep their digits). It refuses what a reader or PostgreSQL's
// jsonb would get wrong: invalid UTF-8, NUL characters, lone surrogates,
// duplicate object keys, nesting deeper than MaxJSONDepth, and trailing
// data, and a value that would take more than MaxJSONExpansion times its
// size in memory. It is one pass over the bytes, after a count of each
// array's elements when there are arrays; the validator runs it on every
// payload, so it is on the append hot path.
//
// DecodeJSON is for JSON on its way in (an append, a request body). JSON
// read back from a store is decoded with DecodeStoredJSON, which does not
// apply MaxJSONExpansion.
func DecodeJSON(b []byte) (any, error) { return decodeJSON(b, nil) }

// DecodeStoredJSON is DecodeJSON for JSON read back from a store (a stored
// event's payload or meta): the same value and the same checks, except
// MaxJSONExpansion. That limit bounds what a writer can make the process
// allocate; a stored value was accepted when it was written, and must
// always load. It may exceed the limit now: written by a release before
// the limit, imported, or read back in a denser form than it was sent in
// (PostgreSQL's jsonb gives it back without the writer's whitespace).
// Refusing it would leave its aggregate unloadable and a retry of its
// append unrecognised for good, and what it costs is bounded by what the
// store holds (MaxEventBytes a payload). Every other check stays: they
// are about what the value is (well-formed, UTF-8, no duplicate key to
// choose between, no character jsonb cannot hold), bound the decoder's
// recursion (MaxJSONDepth), or bound the work of comparing a number
// (ValueEqual) or checking it against a schema (MaxNumberExponent).
func DecodeStoredJSON(b []byte) (any, error) {
	v, _, err := decodeWithin(b, nil, noJSONBudget)
	return v, err
}

// MaxJSONExpansion bounds the memory a decoded JSON value takes: at most
// this many bytes for each byte of JSON, plus 1 MiB, as DecodeJSON
// estimates it (map, slice and interface sizes as the Go runtime allocates
// them). Only JSON dense with small objects comes near it: every object
// costs 48 bytes, or 336 once it has a member, however few bytes it takes
// in the JSON, so [{"a":0},{"a":0},...] is about 45 times its size
// ([{},{},...] 21 times, which passes). The first MiB holds about 3,000
// such objects; past it, DecodeJSON refuses the value (rule "expansion")
// before allocating more. Ordinary payloads take 2 to 10 times their
// size.
//
// The limit is on writes: the validator's check of every appended payload
// and meta, and the HTTP API's request bodies. JSON read back from a store
// is not held to it (DecodeStoredJSON; JSONEqual's stored side), since a
// stored event must load whatever the limit was when it was written.
const MaxJSONExpansion = 24

// jsonExpansionFree is what every value may take whatever its size, so
// that a small payload of a few hundred small objects is never refused.
const jsonExpansionFree = 1 << 20

// jsonBudget is what DecodeJSON lets a value of n bytes take.
func jsonBudget(n int) int { return MaxJSONExpansion*n + jsonExpansionFree }

// noJSONBudget is DecodeStoredJSON's budget: more than any value can
// spend, so the expansion rule never applies.
const noJSONBudget = math.MaxInt

// What DecodeJSON charges against MaxJSONExpansion (see mapMember for a
// map's members). They are what the Go runtime allocates on 64-bit
// platforms, rounded up.
const (
	costBox      = 16 // a string or json.Number put in an interface
	costSliceBox = 24 // a []any put in an interface
	costSlot     = 16 // one element of a []any
	costMap      = 48 // a map[string]any without members
)

// emptyArray is every empty JSON array: a []any with no room, so no
// caller can change it (an append makes a new one), and one decoded value
// of [[],[],...] does not box a slice header per element.
var emptyArray any = []any{}

// digitNumbers are the one-digit numbers, boxed once: a long array of small
// integers ([0,1,0,...]) boxes nothing.
var digitNumbers = [10]any{json.Number("0"), json.Number("1"), json.Number("2"), json.Number("3"), json.Number("4"),
	json.Number("5"), json.Number("6"), json.Number("7"), json.Number("8"), json.Number("9")}

// decodeJSON is DecodeJSON with an intern table: an object key found in
// keys is the table's string, not a new allocation.
func decodeJSON(b []byte, keys map[string]string) (any, error) {
	v, _, err := decodeWithin(b, keys, jsonBudget(len(b)))
	return v, err
}

// decodeWithin decodes b, refusing it (rule "expansion") once it would
// take more than budget bytes, and returns what the value took.
func decodeWithin(b []byte, keys map[string]string, budget int) (any, int, error) {
	if !utf8.Valid(b) {
		return nil, 0, &JSONError{Rule: "utf-8", Message: "JSON is not valid UTF-8"}
	}
	d := decoder{b: b, keys: keys, budget: budget}
	if len(b) >= countArraysFrom {
		if n := bytes.Count(b, []byte{'['}); n > 0 {
			d.counts = countArrays(b, n)
		}
	}
	d.ws()
	v, err := d.value(0)
	if err != nil {
		return nil, 0, err
	}
	d.ws()
	if d.i != len(d.b) {
		return nil, 0, d.fail("json", "data after the JSON value")
	}
	return v, budget - d.budget, nil
}

type decoder struct {
	b    []byte
	i    int
	keys map[string]string // read-only intern table, may be nil
	// counts is each array's element count, in the order the arrays
	// open (countArrays); next is the next array's.
	counts []int32
	next   int
	// budget is what the value may still allocate (MaxJSONExpansion).
	budget int
}

// countArraysFrom is the size from which DecodeJSON counts the arrays'
// elements first. Below it, arrays grow by append, which costs less than
// a second look at the bytes, and cannot allocate more than a fraction
// of jsonExpansionFree.
const countArraysFrom = 4 << 10

// countArrays counts the elements of each array of b, in the order the
// arrays open, so that each array is allocated once at its size: append
// grows a long slice by a quarter at a time and allocates about five
// times its final size on the way. It only counts commas outside strings;
// decoding checks the grammar, and on input it refuses a count is only a
// capacity. n (the number of '[' bytes) bounds the number of arrays.
func countArrays(b []byte, n int) []int32 {
	counts := make([]int32, 0, n)
	// open holds, for each open container, its index in counts, or -1
	// for an object. Past MaxJSONDepth decoding refuses the value, so
	// counting can stop.
	var open [MaxJSONDepth + 1]int32
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// To the closing quote: the first one not escaped, that is,
			// after an even number of backslashes.
			for {
				q := bytes.IndexByte(b[i+1:], '"')
				if q < 0 {
					return counts
				}
				i += 1 + q
				esc := 0
				for b[i-1-esc] == '\\' {
					esc++
				}
				if esc%2 == 0 {
					break
				}
			}
		case '[':
			if depth == len(open) {
				return counts
			}
			open[depth] = int32(len(counts))
			depth++
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
				j++
			}
			if j < len(b) && b[j] == ']' {
				counts = append(counts, 0)
			} else {
				counts = append(counts, 1)
			}
		case '{':
			if depth == len(open) {
				return counts
			}
			open[depth] = -1
			depth++
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 0 && open[depth-1] >= 0 {
				counts[open[depth-1]]++
			}
		}
	}
	return counts
}

// charge takes n bytes from the budget, and refuses the value once it is
// spent: before the allocation it stands for.
func (d *decoder) charge(n int) error {
	d.budget -= n
	if d.budget < 0 {
		return &JSONError{Rule: "expansion", Offset: d.i, Message: fmt.Sprintf(
			"invalid JSON at byte %d: decoded, this JSON of %d bytes would take more than %d times its size in memory (too many small objects or arrays)",
			d.i, len(d.b), MaxJSONExpansion)}
	}
	return nil
}

// mapMember is what adding member number k (from 0) to a map[string]any
// costs, growth included: its first group of 8 slots, then the table the
// ninth member moves it to, then about 144 bytes a member (the tables
// double, and the old ones are garbage: measured, 131 to 164 bytes a
// member on average from 57 to 10,000 members).
func mapMember(k int) int {
	switch {
	case k == 0:
		return 288
	case k == 8:
		return 1800
	case k > 8:
		return 144
	}
	return 0
}

func (d *decoder) fail(rule, msg string) error {
	return &JSONError{Rule: rule, Offset: d.i, Message: fmt.Sprintf("invalid JSON at byte %d: %s", d.i, msg)}
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, d.fail("json", "unexpected end of input")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		if depth >= MaxJSONDepth {
			return nil, &JSONError{Rule: "depth", Offset: d.i, Message: fmt.Sprintf("JSON nests deeper than %d levels", MaxJSONDepth)}
		}
		return d.object(depth)
	case c == '[':
		if depth >= MaxJSONDepth {
			return nil, &JSONError{Rule: "depth", Offset: d.i, Message: fmt.Sprintf("JSON nests deeper than %d levels", MaxJSONDepth)}
		}
		return d.array(depth)
	case c == '"':
		return d.str()
	case c == 't':
		return d.literal("true", true)
	case c == 'f':
		return d.literal("false", false)
	case c == 'n':
		return d.literal("null", nil)
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return nil, d.fail("json", fmt.Sprintf("unexpected character %q", d.b[d.i]))
}

func (d *decoder) literal(word string, v any) (any, error) {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		return nil, d.fail("json", "invalid literal")
	}
	d.i += len(word)
	return v, nil
}

func (d *decoder) object(depth int) (any, error) {
	d.i++ // {
	if err := d.charge(costMap); err != nil {
		return nil, err
	}
	obj := map[string]any{}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return obj, nil
	}
	for {
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, d.fail("json", "expected an object key")
		}
		at := d.i
		if err := d.charge(mapMember(len(obj))); err != nil {
			return nil, err
		}
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		if _, dup := obj[k]; dup {
			return nil, &JSONError{Rule: "duplicate-key", Offset: at, Message: fmt.Sprintf("JSON object has the key %q twice", truncate(k, 64))}
		}
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, d.fail("json", "expected ':' after an object key")
		}
		d.i++
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj[k] = v
		d.ws()
		if d.i >= len(d.b) {
			return nil, d.fail("json", "unterminated object")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return obj, nil
		default:
			return nil, d.fail("json", "expected ',' or '}' in an object")
		}
	}
}

func (d *decoder) array(depth int) (any, error) {
	d.i++ // [
	n := 0
	if d.next < len(d.counts) {
		n = max(int(d.counts[d.next]), 0) // a count past 2^31 wraps
	}
	d.next++
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return emptyArray, nil
	}
	if err := d.charge(costSliceBox + costSlot*max(n, 1)); err != nil {
		return nil, err
	}
	arr := make([]any, 0, n)
	for {
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		d.ws()
		if d.i >= len(d.b) {
			return nil, d.fail("json", "unterminated array")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return arr, nil
		default:
			return nil, d.fail("json", "expected ',' or ']' in an array")
		}
	}
}

// key reads an object key. A plain key (no escapes, no control
// characters: the same string str would return) is scanned once: it is
// the intern table's string when the table has it, else sliced directly.
// Any other key is left to str.
func (d *decoder) key() (string, error) {
	end := d.i + 1
	for end < len(d.b) && d.b[end] != '"' && d.b[end] != '\\' && d.b[end] >= 0x20 {
		end++
	}
	if end < len(d.b) && d.b[end] == '"' {
		raw := d.b[d.i+1 : end]
		d.i = end + 1
		if k, ok := d.keys[string(raw)]; ok {
			return k, nil
		}
		if err := d.charge(len(raw)); err != nil {
			return "", err
		}
		return string(raw), nil
	}
	return d.str()
}

// str reads a string. Strings without escapes (the common case) are sliced
// directly; escaped ones are checked for NUL and lone surrogates, then
// unquoted by encoding/json.
func (d *decoder) str() (string, error) {
	start := d.i
	d.i++ // "
	escaped := false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			raw := d.b[start : d.i+1]
			d.i++
			if len(raw) > 2 {
				// Its bytes (fewer once unescaped), and the box a value
				// puts it in.
				if err := d.charge(len(raw) - 2 + costBox); err != nil {
					return "", err
				}
			}
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", &JSONError{Rule: "json", Offset: start, Message: fmt.Sprintf("invalid JSON string at byte %d", start)}
			}
			return s, nil
		case c < 0x20:
			if c == 0 {
				return "", d.fail("nul", "NUL byte in a string")
			}
			return "", d.fail("json", "control character in a string")
		case c == '\\':
			escaped = true
			if err := d.escape(); err != nil {
				return "", err
			}
			continue
		}
		d.i++
	}
	return "", &JSONError{Rule: "json", Offset: start, Message: fmt.Sprintf("invalid JSON at byte %d: unterminated string", start)}
}

// escape checks one escape sequence at d.i (the backslash) and moves past it.
func (d *decoder) escape() error {
	if d.i+1 >= len(d.b) {
		return d.fail("json", "unterminated escape")
	}
	switch d.b[d.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		d.i += 2
		return nil
	case 'u':
		r, ok := d.hex4(d.i + 2)
		if !ok {
			return d.fail("json", "invalid \\u escape")
		}
		switch {
		case r == 0:
			return d.fail("nul", "\\u0000 (NUL) cannot be stored")
		case r >= 0xDC00 && r <= 0xDFFF:
			return d.fail("surrogate", "lone low surrogate escape")
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := rune(0), false
			if d.i+12 <= len(d.b) && d.b[d.i+6] == '\\' && d.b[d.i+7] == 'u' {
				lo, ok = d.hex4(d.i + 8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return d.fail("surrogate", "high surrogate escape without its low surrogate")
			}
			d.i += 12
			return nil
		}
		d.i += 6
		return nil
	}
	return d.fail("json", "invalid escape")
}

func (d *decoder) hex4(at int) (rune, bool) {
	if at+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// MaxNumberExponent bounds the decimal magnitude of a JSON number: its
// value, written out, has at most this many digits before or after the
// decimal point. Numbers beyond float64 are kept exactly within it;
// beyond it they are refused, since PostgreSQL's numeric would expand
// 1e100000 into 100,000 digits (or refuse it) and schema checks would
// have to do the same.
const MaxNumberExponent = 1000

// number reads a number per the JSON grammar and keeps its text.
func (d *decoder) number() (any, error) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	intDigits, fracDigits := 1, 0
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if intDigits = digits(); intDigits == 0 {
		return nil, d.fail("json", "invalid number")
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if fracDigits = digits(); fracDigits == 0 {
			return nil, d.fail("json", "invalid number")
		}
	}
	exp := 0
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		neg := false
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			neg = d.b[d.i] == '-'
			d.i++
		}
		expStart := d.i
		if digits() == 0 {
			return nil, d.fail("json", "invalid number")
		}
		for _, c := range d.b[expStart:d.i] {
			if exp > 10*MaxNumberExponent {
				break
			}
			exp = exp*10 + int(c-'0')
		}
		if neg {
			exp = -exp
		}
	}
	if intDigits+exp > MaxNumberExponent || fracDigits-exp > MaxNumberExponent {
		return nil, &JSONError{Rule: "number-range", Offset: start,
			Message: fmt.Sprintf("invalid JSON at byte %d: number %s has more than %d digits before or after the decimal point", start, truncate(string(d.b[start:d.i]), 32), MaxNumberExponent)}
	}
	if d.i-start == 1 {
		return digitNumbers[d.b[start]-'0'], nil
	}
	if err := d.charge(d.i - start + costBox); err != nil {
		return nil, err
	}
	return json.Number(d.b[start:d.i]), nil
}
