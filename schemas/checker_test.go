package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v5"
)

// The checker must never accept a document that jsonschema/v5 refuses.
// These tests generate documents from every schema (valid ones, then
// mutated ones), decide each with both, and fail on a document the checker
// accepts and jsonschema/v5 refuses. They also make sure the comparison is
// not vacuous: both verdicts must occur often.

// keywordSchemas exercise the keywords the domain's schemas do not use (or
// use little): enums of numbers, const, exclusive bounds, type unions,
// $ref cycles, additionalProperties schemas, uniqueItems, property counts.
var keywordSchemas = fstest.MapFS{
	"envelope/v1.json": {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}`)},
	"k.numbers/v1.json": {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
		"properties":{
			"i":{"type":"integer","minimum":-3,"maximum":7},
			"x":{"type":"number","exclusiveMinimum":0.5,"exclusiveMaximum":10},
			"e":{"enum":[1,2.5,"two",true,null]},
			"c":{"const":3},
			"u":{"type":["integer","string"],"maxLength":2},
			"big":{"type":"integer","minimum":-99999999999999999999,"maximum":99999999999999999999}
		},"additionalProperties":false}`)},
	"k.tree/v1.json": {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","$ref":"#/$defs/node",
		"$defs":{"node":{"type":"object","required":["name"],"minProperties":1,"maxProperties":3,
			"properties":{"name":{"type":"string","minLength":2,"maxLength":4,"pattern":"^[a-zé]+$"},
				"kids":{"type":"array","maxItems":3,"items":{"$ref":"#/$defs/node"}},
				"tags":{"type":"array","uniqueItems":true,"minItems":1,"items":{"type":["string","boolean","null","number"]}}},
			"additionalProperties":{"type":"string","format":"date-time"}}}}`)},
	"k.oneof/v1.json": {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
		"properties":{"a":{"oneOf":[{"type":"string"},{"type":"integer"}]}}}`)},
}

// overflowSchemas have count bounds jsonschema/v5 reads through a float64
// into an int: 1e20 becomes -9223372036854775808 on amd64, and
// jsonschema/v5 then refuses every string, array or object. Load refuses
// them (countBoundsFit); they are compiled here directly so that the
// checker meets them anyway.
var overflowSchemas = map[string]string{
	"overflow.maxLength":     `{"type":"string","maxLength":100000000000000000000}`,
	"overflow.maxItems":      `{"type":"array","maxItems":1e20}`,
	"overflow.maxProperties": `{"type":"object","maxProperties":1e20}`,
	"overflow.nested":        `{"type":"object","properties":{"s":{"type":"string","maxLength":1e19}}}`,
}

func overflowSchemasUnderTest(t testing.TB) []schemaUnderTest {
	t.Helper()
	var out []schemaUnderTest
	for name, src := range overflowSchemas {
		c := jsonschema.NewCompiler()
		c.Draft = jsonschema.Draft2020
		c.AssertFormat = true
		if err := c.AddResource("mem:///"+name+".json", strings.NewReader(src)); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile("mem:///" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, schemaUnderTest{name, s, newChecker(s)})
	}
	return out
}

// TestCheckerRefusesOverflowedBounds: whatever jsonschema/v5 makes of a
// count bound it overflowed, the checker does not accept a document it
// refuses.
func TestCheckerRefusesOverflowedBounds(t *testing.T) {
	for _, s := range overflowSchemasUnderTest(t) {
		for _, doc := range []string{`"abc"`, `""`, `[1]`, `[]`, `{"a":1}`, `{}`, `{"s":"abc"}`} {
			v := decode(t, doc)
			if s.checker != nil && s.checker.valid(v) {
				if err := s.schema.Validate(v); err != nil {
					t.Errorf("%s: the checker accepts %s; jsonschema/v5: %v", s.name, doc, err)
				}
			}
		}
	}
}

func keywordRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := Load(keywordSchemas)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type schemaUnderTest struct {
	name    string
	schema  *jsonschema.Schema
	checker *checker
}

func schemasUnderTest(t testing.TB) []schemaUnderTest {
	t.Helper()
	var out []schemaUnderTest
	for _, r := range []*Registry{MustDefault(), keywordRegistry(t)} {
		out = append(out, schemaUnderTest{"envelope", r.envelope, r.envCheck})
		for _, typ := range r.Types() {
			for _, v := range r.Versions(typ) {
				k := key{typ, v}
				out = append(out, schemaUnderTest{fmt.Sprintf("%s/v%d", typ, v), r.schemas[k].schema, r.schemas[k].check})
			}
		}
	}
	return out
}

func TestCheckerCoversTheDomain(t *testing.T) {
	r := MustDefault()
	if r.envCheck == nil {
		t.Fatal("the envelope schema has no checker: every append would go through jsonschema/v5 alone")
	}
	for _, typ := range r.Types() {
		for _, v := range r.Versions(typ) {
			if !r.Checked(typ, v) {
				t.Errorf("%s/v%d has no checker: a keyword it uses is not implemented by checker.go", typ, v)
			}
		}
	}
	kr := keywordRegistry(t)
	if kr.Checked("k.oneof", 1) {
		t.Error("k.oneof uses oneOf, which the checker does not implement: it must have no checker")
	}
	for _, typ := range []string{"k.numbers", "k.tree"} {
		if !kr.Checked(typ, 1) {
			t.Errorf("%s has no checker", typ)
		}
	}
}

func TestCheckerNeverAcceptsWhatJSONSchemaRefuses(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const perSchema = 400
	total, accepted, refused, slowOnly := 0, 0, 0, 0
	for _, s := range schemasUnderTest(t) {
		if s.checker == nil {
			continue
		}
		for i := 0; i < perSchema; i++ {
			doc := generate(rnd, s.schema, 0)
			if i%4 != 0 {
				doc = mutate(rnd, doc, 0)
			}
			fast := s.checker.valid(doc)
			slow := s.schema.Validate(doc) == nil
			total++
			switch {
			case fast && !slow:
				b, _ := json.Marshal(doc)
				t.Fatalf("%s: the checker accepts a document jsonschema/v5 refuses:\n%s\njsonschema/v5: %v", s.name, b, s.schema.Validate(doc))
			case fast:
				accepted++
			case slow:
				slowOnly++ // harmless: jsonschema/v5 decides
			default:
				refused++
			}
		}
	}
	t.Logf("%d documents: %d accepted by both, %d refused by both, %d left to jsonschema/v5 and accepted by it", total, accepted, refused, slowOnly)
	if accepted < total/5 || refused < total/5 {
		t.Fatalf("the comparison is too one-sided to mean much: %d accepted, %d refused of %d", accepted, refused, total)
	}
	if slowOnly > total/20 {
		t.Fatalf("the checker sends %d of %d valid documents to jsonschema/v5: the fast path is not taken", slowOnly, total)
	}
}

func TestCheckerCases(t *testing.T) {
	r := keywordRegistry(t)
	for _, c := range []struct {
		typ, doc string
		valid    bool
	}{
		{"k.numbers", `{"i": 7}`, true},
		{"k.numbers", `{"i": 8}`, false},
		{"k.numbers", `{"i": -3}`, true},
		{"k.numbers", `{"i": -4}`, false},
		{"k.numbers", `{"i": 2.0}`, true}, // an integer, written with a fraction
		{"k.numbers", `{"i": 1e0}`, true},
		{"k.numbers", `{"i": 2.5}`, false},
		{"k.numbers", `{"x": 0.5}`, false},
		{"k.numbers", `{"x": 0.50001}`, true},
		{"k.numbers", `{"x": 10}`, false},
		{"k.numbers", `{"e": 2.50}`, true},
		{"k.numbers", `{"e": 25e-1}`, true},
		{"k.numbers", `{"e": "two"}`, true},
		{"k.numbers", `{"e": null}`, true},
		{"k.numbers", `{"e": false}`, false},
		{"k.numbers", `{"e": [1]}`, false},
		{"k.numbers", `{"c": 3}`, true},
		{"k.numbers", `{"c": 3.0}`, true},
		{"k.numbers", `{"c": "3"}`, false},
		{"k.numbers", `{"u": 12345}`, true},
		{"k.numbers", `{"u": "ab"}`, true},
		{"k.numbers", `{"u": "abc"}`, false},
		{"k.numbers", `{"u": true}`, false},
		{"k.numbers", `{"big": 99999999999999999999}`, true},
		{"k.numbers", `{"big": 100000000000000000000}`, false},
		{"k.numbers", `{"z": 1}`, false},
		{"k.tree", `{"name": "ab"}`, true},
		{"k.tree", `{"name": "éééé"}`, true}, // 4 runes, 8 bytes
		{"k.tree", `{"name": "ééééé"}`, false},
		{"k.tree", `{"name": "a"}`, false},
		{"k.tree", `{"name": "AB"}`, false},
		{"k.tree", `{}`, false},
		{"k.tree", `{"name": "ab", "kids": [{"name": "cd", "kids": [{"name": "ef"}]}]}`, true},
		{"k.tree", `{"name": "ab", "kids": [{"name": "cd", "kids": [{"name": "e"}]}]}`, false},
		{"k.tree", `{"name": "ab", "tags": ["a", "b", true, null]}`, true},
		{"k.tree", `{"name": "ab", "tags": ["a", "a"]}`, false},
		{"k.tree", `{"name": "ab", "tags": [1, 1.0]}`, false},
		{"k.tree", `{"name": "ab", "tags": [1, 2]}`, true},
		{"k.tree", `{"name": "ab", "tags": []}`, false},
		{"k.tree", `{"name": "ab", "at": "2026-11-27T03:00:00Z"}`, true},
		{"k.tree", `{"name": "ab", "at": "yesterday"}`, false},
		{"k.tree", `{"name": "ab", "at": "2026-11-27T03:00:00Z", "b": "2026-11-27T03:00:00Z", "c": "2026-11-27T03:00:00Z"}`, false},
		{"k.oneof", `{"a": 1}`, true},
		{"k.oneof", `{"a": 1.5}`, false},
	} {
		doc := decode(t, c.doc)
		err := r.Validate(c.typ, 1, doc)
		if got := err == nil; got != c.valid {
			t.Errorf("%s %s: valid = %v (%v), want %v", c.typ, c.doc, got, err, c.valid)
		}
		if k := r.schemas[key{c.typ, 1}].check; k != nil && k.valid(doc) && !c.valid {
			t.Errorf("%s %s: the checker accepts it", c.typ, c.doc)
		}
	}
}

func TestCrossCheckReportsADisagreement(t *testing.T) {
	t.Setenv(CrossCheckEnv, "1")
	r := keywordRegistry(t)
	if !r.crossCheck {
		t.Fatalf("%s=1 at Load does not turn the cross-check on", CrossCheckEnv)
	}
	k := key{"k.numbers", 1}
	doc := decode(t, `{"i": 8}`)
	// A checker with a bug: it accepts anything.
	c := r.schemas[k]
	c.check = &checker{minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	r.schemas[k] = c
	err := r.Validate("k.numbers", 1, doc)
	if !errors.Is(err, ErrCheckerDisagrees) {
		t.Fatalf("Validate with a checker that accepts too much = %v, want ErrCheckerDisagrees", err)
	}
}

func FuzzCheckerAgrees(f *testing.F) {
	for _, s := range []string{`{}`, `{"i": 1, "x": 2}`, `{"name": "ab", "kids": []}`, `{"e": 2.5}`,
		`{"course_id": "0b5a1c7e-3f1e-4d5c-9a63-1f2e3d4c5b6a", "slot": 3, "title": "x"}`} {
		f.Add(s)
	}
	tests := append(schemasUnderTest(f), overflowSchemasUnderTest(f)...)
	f.Fuzz(func(t *testing.T, s string) {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var doc any
		if dec.Decode(&doc) != nil || !tame(doc) {
			return
		}
		for _, st := range tests {
			if st.checker != nil && st.checker.valid(doc) {
				if err := st.schema.Validate(doc); err != nil {
					t.Fatalf("%s: the checker accepts %s; jsonschema/v5: %v", st.name, s, err)
				}
			}
		}
	})
}

// tame refuses numbers that eventstore.DecodeJSON refuses too (it bounds
// their size): big.Rat would spend minutes on 1e999999999.
func tame(v any) bool {
	switch v := v.(type) {
	case json.Number:
		i := strings.IndexAny(string(v), "eE")
		return len(v) <= 40 && (i < 0 || len(v)-i <= 4)
	case map[string]any:
		for _, x := range v {
			if !tame(x) {
				return false
			}
		}
	case []any:
		for _, x := range v {
			if !tame(x) {
				return false
			}
		}
	}
	return true
}

func decode(t testing.TB, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// samples match the patterns our schemas use, so that generated documents
// are often valid.
var samples = []string{"1.2.3", "0.10.0", strings.Repeat("ab12", 16), "EUR", "ir-1001.2", "a1:b_c-d.e",
	"my-course-1", "course.lesson", "intro_1.a", "en", "en-GB", "ab", "éé", "abcd"}

// generate builds a document that tries to satisfy s.
func generate(rnd *rand.Rand, s *jsonschema.Schema, depth int) any {
	if s.Ref != nil {
		return generate(rnd, s.Ref, depth)
	}
	if len(s.Constant) > 0 {
		return s.Constant[0]
	}
	if len(s.Enum) > 0 {
		return s.Enum[rnd.IntN(len(s.Enum))]
	}
	typ := "object"
	if len(s.Types) > 0 {
		typ = s.Types[rnd.IntN(len(s.Types))]
	} else if s.Items2020 != nil {
		typ = "array"
	}
	switch typ {
	case "object":
		doc := map[string]any{}
		names := make([]string, 0, len(s.Properties))
		for n := range s.Properties {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if slices.Contains(s.Required, n) || (depth < 4 && rnd.IntN(3) > 0) {
				doc[n] = generate(rnd, s.Properties[n], depth+1)
			}
		}
		if sch, ok := s.AdditionalProperties.(*jsonschema.Schema); ok && rnd.IntN(2) == 0 {
			doc[fmt.Sprintf("extra%d", rnd.IntN(9))] = generate(rnd, sch, depth+1)
		}
		return doc
	case "array":
		lo, hi := max(s.MinItems, 0), s.MaxItems
		if hi < 0 || hi > lo+3 {
			hi = lo + 3
		}
		if depth >= 4 {
			hi = lo
		}
		n := lo + rnd.IntN(hi-lo+1)
		out := make([]any, 0, n)
		for i := 0; i < n && s.Items2020 != nil; i++ {
			out = append(out, generate(rnd, s.Items2020, depth+1))
		}
		return out
	case "string":
		switch s.Format {
		case "uuid":
			return uuid.NewString()
		case "date-time":
			return time.Now().UTC().Format(time.RFC3339Nano)
		case "uri":
			return fmt.Sprintf("https://courses.example.com/c/%d", rnd.IntN(1000))
		}
		var fits []string
		for _, x := range samples {
			if (s.Pattern == nil || s.Pattern.MatchString(x)) && runeLen(x) >= s.MinLength && (s.MaxLength < 0 || runeLen(x) <= s.MaxLength) {
				fits = append(fits, x)
			}
		}
		if len(fits) > 0 && rnd.IntN(4) > 0 {
			return fits[rnd.IntN(len(fits))]
		}
		n := max(s.MinLength, 1) + rnd.IntN(8)
		if s.MaxLength >= 0 && n > s.MaxLength {
			n = s.MaxLength
		}
		return strings.Repeat("ab", n)[:n]
	case "integer", "number":
		lo, hi := int64(-5), int64(1000)
		if s.Minimum != nil {
			lo = ratFloor(s.Minimum)
		}
		if s.ExclusiveMinimum != nil {
			lo = ratFloor(s.ExclusiveMinimum) + 1
		}
		if s.Maximum != nil {
			hi = ratFloor(s.Maximum)
		}
		if s.ExclusiveMaximum != nil {
			hi = ratFloor(s.ExclusiveMaximum) - 1
		}
		if hi < lo {
			hi = lo
		}
		n := lo + rnd.Int64N(min(hi-lo, 1<<40)+1)
		if typ == "number" && rnd.IntN(3) == 0 {
			return json.Number(fmt.Sprintf("%d.25", n))
		}
		return json.Number(fmt.Sprint(n))
	case "boolean":
		return rnd.IntN(2) == 0
	}
	return nil
}

// mutate breaks a document in one of the ways clients do.
func mutate(rnd *rand.Rand, v any, depth int) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v)+1)
		for k, x := range v {
			out[k] = x
		}
		keys := make([]string, 0, len(out))
		for k := range out {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		switch r := rnd.IntN(6); {
		case r == 0 && len(keys) > 0:
			delete(out, keys[rnd.IntN(len(keys))])
		case r == 1:
			out["unexpected"] = "x"
		case len(keys) > 0 && depth < 5:
			k := keys[rnd.IntN(len(keys))]
			out[k] = mutate(rnd, out[k], depth+1)
		}
		return out
	case []any:
		out := slices.Clone(v)
		switch r := rnd.IntN(4); {
		case r == 0 && len(out) > 0:
			out = append(out, out[0]) // a duplicate item
		case r == 1:
			out = append(out, scalar(rnd))
		case len(out) > 0:
			i := rnd.IntN(len(out))
			out[i] = mutate(rnd, out[i], depth+1)
		default:
			return "not an array"
		}
		return out
	case string:
		switch rnd.IntN(7) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("é", 1+rnd.IntN(400))
		case 2:
			return v + "Z"
		case 3:
			return strings.ToUpper(v)
		case 4:
			return json.Number("7")
		case 5:
			return strings.Repeat("x", 2049)
		}
		return scalar(rnd)
	case json.Number:
		r, _ := new(big.Rat).SetString(string(v))
		switch rnd.IntN(7) {
		case 0:
			return ratNumber(new(big.Rat).Add(r, big.NewRat(1, 1)))
		case 1:
			return ratNumber(new(big.Rat).Sub(r, big.NewRat(1, 1)))
		case 2:
			if r.IsInt() {
				return json.Number(string(v) + ".0")
			}
			return json.Number(string(v) + "0")
		case 3:
			return json.Number(string(v) + "e1")
		case 4:
			return json.Number("-" + strings.TrimPrefix(string(v), "-"))
		case 5:
			return json.Number("123456789012345678901234567890")
		}
		return scalar(rnd)
	}
	return scalar(rnd)
}

func scalar(rnd *rand.Rand) any {
	switch rnd.IntN(6) {
	case 0:
		return nil
	case 1:
		return true
	case 2:
		return json.Number("0.5")
	case 3:
		return map[string]any{}
	case 4:
		return []any{}
	}
	return "s"
}

// ratNumber writes r as a JSON number.
func ratNumber(r *big.Rat) json.Number {
	if r.IsInt() {
		return json.Number(r.RatString())
	}
	return json.Number(r.FloatString(6))
}

func runeLen(s string) int { return len([]rune(s)) }

func ratFloor(r *big.Rat) int64 {
	f, _ := r.Float64()
	if f > 1<<50 {
		return 1 << 50
	}
	if f < -(1 << 50) {
		return -(1 << 50)
	}
	return int64(f)
}

func TestClassMatcherAgreesWithRegexp(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	alphabet := []rune("aAzZ09.-_:é\n xg")
	for _, c := range []struct {
		pattern string
		fast    bool // whether classMatcher takes it
	}{
		{`^[a-z0-9][a-z0-9._-]*$`, true},
		{`^[A-Za-z0-9][A-Za-z0-9._:-]*$`, true},
		{`^[0-9a-f]{64}$`, true},
		{`^[A-Z]{3}$`, true},
		{`^[a-z][a-z0-9_.:-]*$`, true},
		{`^x[0-9]+$`, true},
		{`^[a-z]{2,3}$`, true},
		{`^[a-z]{2,3}(-[A-Z]{2})?$`, false},
		{`^[a-z0-9]+(-[a-z0-9]+)*$`, false},
		{`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`, false},
		{`^[a-z]*[a-z]$`, false}, // an open run before another: needs backtracking
		{`[a-z]+`, false},        // not anchored
		{`^[^a-z]+$`, false},     // a negated class reaches beyond ASCII
		{`^(?i)[a-z]+$`, false},
		{`^[a-z]{0}$`, false},
	} {
		re := regexp.MustCompile(c.pattern)
		m := newClassMatcher(re)
		if (m != nil) != c.fast {
			t.Errorf("%s: classMatcher takes it = %v, want %v", c.pattern, m != nil, c.fast)
		}
		if m == nil {
			continue
		}
		matched := 0
		for i := 0; i < 3000; i++ {
			var s string
			if i < len(samples) {
				s = samples[i]
			} else {
				b := make([]rune, rnd.IntN(70))
				for j := range b {
					b[j] = alphabet[rnd.IntN(len(alphabet))]
				}
				s = string(b)
				switch rnd.IntN(3) {
				case 0:
					s = strings.Repeat("a", rnd.IntN(4)) + strings.Repeat("0", rnd.IntN(66))
				case 1:
					s = "x" + strings.Repeat("9", rnd.IntN(3))
				}
			}
			if got, want := m.match(s), re.MatchString(s); got != want {
				t.Fatalf("%s on %q: classMatcher %v, regexp %v", c.pattern, s, got, want)
			}
			if re.MatchString(s) {
				matched++
			}
		}
		if matched == 0 {
			t.Errorf("%s: no generated string matched; the comparison only covered refusals", c.pattern)
		}
	}
}

// TestTypeNameMatcher: the type-name rule has its matcher, and a pattern
// without one is a panic at init rather than a rule that refuses every
// name.
func TestTypeNameMatcher(t *testing.T) {
	if typeName == nil {
		t.Fatalf("no class matcher for %s", TypeNamePattern)
	}
	for _, s := range []string{"a", "a.b-c_d.9", "0x"} {
		if !ValidTypeName(s) {
			t.Errorf("ValidTypeName(%q) = false", s)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("mustClassMatcher of a pattern it cannot match did not panic")
		}
	}()
	mustClassMatcher(regexp.MustCompile(`^(ab|cd)$`))
}

// A schema may say const and enum at once; a value must satisfy both.
// The checker read only const, so it accepted a value that enum refuses.
func TestCheckerHonoursConstAndEnumTogether(t *testing.T) {
	r, err := Load(fstest.MapFS{
		"envelope/v1.json": {Data: []byte(`{"type":"object"}`)},
		"k.both/v1.json": {Data: []byte(`{"type":"object","properties":{
			"s":{"const":"a","enum":["b","c"]},
			"n":{"enum":[1,2],"const":2}}}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		doc   string
		valid bool
	}{
		{`{"s":"a"}`, false}, // const holds, enum does not
		{`{"s":"b"}`, false}, // enum holds, const does not
		{`{"n":2}`, true},
		{`{"n":1}`, false},
	} {
		doc := decode(t, c.doc)
		if k := r.schemas[key{"k.both", 1}].check; k != nil && k.valid(doc) && !c.valid {
			t.Errorf("%s: the checker accepts it", c.doc)
		}
		err := r.Validate("k.both", 1, doc)
		if got := err == nil; got != c.valid {
			t.Errorf("%s: valid = %v (%v), want %v", c.doc, got, err, c.valid)
		}
		var inv *Invalid
		if err != nil && !errors.As(err, &inv) {
			t.Errorf("%s: %v, want *Invalid", c.doc, err)
		}
	}
}
