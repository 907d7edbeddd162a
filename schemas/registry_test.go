package schemas_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/brainhq/eventstream/schemas"
)

const envelope = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}`

func schema(required ...string) *fstest.MapFile {
	q := make([]string, len(required))
	for i, r := range required {
		q[i] = `"` + r + `"`
	}
	return &fstest.MapFile{Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":[` + strings.Join(q, ",") + `]}`)}
}

func withEnvelope(files fstest.MapFS) fstest.MapFS {
	files["envelope/v1.json"] = &fstest.MapFile{Data: []byte(envelope)}
	return files
}

func TestLoad(t *testing.T) {
	reg, err := schemas.Load(withEnvelope(fstest.MapFS{
		"a.b/v1.json": schema("x"),
		"a.b/v2.json": schema("x", "y"),
		"c-d/v1.json": schema(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reg.Types(), []string{"a.b", "c-d"}; !slices.Equal(got, want) {
		t.Fatalf("Types() = %v, want %v (the envelope is not an event type)", got, want)
	}
	if got, want := reg.Versions("a.b"), []int{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("Versions(a.b) = %v, want %v", got, want)
	}
	if reg.Latest("a.b") != 2 || reg.Latest("nope") != 0 {
		t.Fatalf("Latest: %d, %d", reg.Latest("a.b"), reg.Latest("nope"))
	}
	if !reg.Has("a.b", 2) || reg.Has("a.b", 3) || reg.Has("envelope", 1) {
		t.Fatal("Has answers wrongly")
	}
	if src, ok := reg.Source("c-d", 1); !ok || !strings.Contains(string(src), `"required":[]`) {
		t.Fatalf("Source(c-d, 1) = %s, %v", src, ok)
	}
	if err := reg.Validate("a.b", 1, map[string]any{"x": 1}); err != nil {
		t.Fatalf("valid payload: %v", err)
	}
	err = reg.Validate("a.b", 2, map[string]any{"x": 1})
	var inv *schemas.Invalid
	if !errors.As(err, &inv) || len(inv.Violations) != 1 || inv.Violations[0].Pointer != "/y" || inv.Violations[0].Rule != "required" {
		t.Fatalf("payload missing y at v2: %v, want one violation at /y (required)", err)
	}
	if err := reg.Validate("nope", 1, map[string]any{}); !errors.Is(err, schemas.ErrUnknownType) {
		t.Fatalf("unknown type: %v, want ErrUnknownType", err)
	}
	if err := reg.Validate("a.b", 3, map[string]any{}); !errors.Is(err, schemas.ErrUnknownVersion) {
		t.Fatalf("unknown version: %v, want ErrUnknownVersion", err)
	}
	// Versions returns a copy.
	vs := reg.Versions("a.b")
	vs[0] = 99
	if reg.Versions("a.b")[0] != 1 {
		t.Fatal("changing the slice Versions returned changed the registry")
	}
}

func TestLoadLaterFSAddsTypes(t *testing.T) {
	reg, err := schemas.Load(
		withEnvelope(fstest.MapFS{"a/v1.json": schema()}),
		fstest.MapFS{"a/v2.json": schema(), "b/v1.json": schema()},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reg.Types(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("Types() = %v, want %v", got, want)
	}
	if got, want := reg.Versions("a"), []int{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("Versions(a) = %v, want %v", got, want)
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		fss  []fstest.MapFS
		want string
	}{
		{"HoleInVersions", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": schema(), "a/v3.json": schema()})}, "hole"},
		{"NoV1", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v2.json": schema()})}, "hole"},
		{"MisnamedFile", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/version1.json": schema()})}, "v<N>.json"},
		{"ZeroVersion", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v0.json": schema()})}, "v<N>.json"},
		{"LeadingZero", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v01.json": schema()})}, "v<N>.json"},
		{"UppercaseV", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/V1.json": schema()})}, "v<N>.json"},
		{"BadTypeName", []fstest.MapFS{withEnvelope(fstest.MapFS{"Bad.Type/v1.json": schema()})}, "type name"},
		{"TypeNameWithSpace", []fstest.MapFS{withEnvelope(fstest.MapFS{"a b/v1.json": schema()})}, "type name"},
		{"MissingEnvelope", []fstest.MapFS{{"a/v1.json": schema()}}, "envelope/v1.json is missing"},
		{"EnvelopeV2Only", []fstest.MapFS{{"envelope/v2.json": {Data: []byte(envelope)}, "a/v1.json": schema()}}, "envelope/v1.json is missing"},
		{"Empty", []fstest.MapFS{{}}, "envelope/v1.json is missing"},
		{"DuplicateAcrossFS", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": schema()}), {"a/v1.json": schema("x")}}, "defined twice"},
		{"DuplicateEnvelope", []fstest.MapFS{withEnvelope(fstest.MapFS{}), withEnvelope(fstest.MapFS{})}, "defined twice"},
		{"NotJSON", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":`)}})}, "a/v1.json"},
		{"NotASchema", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"nonsense"}`)}})}, "a/v1.json"},
		// jsonschema/v5 reads count bounds through a float64 into an int:
		// these would refuse every value on amd64 and mean "no bound"
		// elsewhere, so they are refused, naming the keyword.
		{"MaxLengthOverflows", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"string","maxLength":100000000000000000000}`)}})}, "maxLength is too large"},
		{"MaxItemsOverflowsInOneOf", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"oneOf":[{"type":"array","maxItems":1e20},{"type":"string"}]}`)}})}, "maxItems is too large"},
		{"MaxPropertiesPastFloatPrecision", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"properties":{"o":{"maxProperties":1152921504606846977}}}`)}})}, "maxProperties is too large"},
		{"EnvelopeMinLengthOverflows", []fstest.MapFS{{"envelope/v1.json": {Data: []byte(`{"properties":{"id":{"minLength":1e19}}}`)}}}, "minLength is too large"},
		// encoding/json keeps the last of two equal keys: the first
		// definition would be lost without a word.
		{"DuplicateProperty", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"object","properties":{"t":{"type":"string","maxLength":3},"u":{},"t":{"type":"string"}}}`)}})}, `key "t" appears twice in the object at "/properties/"`},
		{"DuplicateKeyword", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"object","required":["a"],"properties":{"a":{"maxLength":3,"maxLength":300}}}`)}})}, `key "maxLength" appears twice in the object at "/properties/a/"`},
		{"DuplicateKeyInArray", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"enum":[{"x":1},{"x":1,"x":2}]}`)}})}, `key "x" appears twice in the object at "/enum/1/"`},
		{"DuplicateKeyInEnvelope", []fstest.MapFS{{"envelope/v1.json": {Data: []byte(`{"type":"object","type":"array"}`)}}}, "envelope/v1.json"},
		// jsonschema/v5 reads the first JSON value of a file and looks past
		// it for a delimiter only: an object closed too early, so that the
		// rest ("required") trails it, compiled without that rest.
		{"TrailingData", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"object","properties":{"a":{"type":"string"}}}, "required":["a"]}`)}})}, "a/v1.json: not one JSON value"},
		{"TrailingWord", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"type":"object"} x`)}})}, "a/v1.json: not one JSON value"},
		// encoding/json replaces each invalid byte with U+FFFD: a Latin-1
		// "café" in an enum would become "caf\uFFFD" and refuse "café".
		{"NotUTF8", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte("{\"enum\":[\"caf\xe9\"]}")}})}, "a/v1.json: not valid UTF-8"},
		{"BrokenRef", []fstest.MapFS{withEnvelope(fstest.MapFS{"a/v1.json": {Data: []byte(`{"$ref":"#/$defs/missing"}`)}})}, "a/v1.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fss := make([]fs.FS, len(c.fss))
			for i, f := range c.fss {
				fss[i] = f
			}
			reg, err := schemas.Load(fss...)
			if err == nil {
				t.Fatalf("Load succeeded (types %v), want an error mentioning %q", reg.Types(), c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestDefaultCompiles(t *testing.T) {
	reg, err := schemas.Default()
	if err != nil {
		t.Fatalf("the embedded schemas do not load: %v", err)
	}
	for _, typ := range reg.Types() {
		if !schemas.TypeNamePattern.MatchString(typ) {
			t.Errorf("embedded type %q breaks the type name pattern", typ)
		}
		if got := reg.Versions(typ); len(got) == 0 || got[0] != 1 {
			t.Errorf("embedded type %q has versions %v", typ, got)
		}
	}
}

// pointerSchemas have property names that a JSON pointer writes escaped
// (~0, ~1) and ones it writes as they are (a space, a percent sign,
// non-ASCII letters).
var pointerSchemas = withEnvelope(fstest.MapFS{
	"p/v1.json": {Data: []byte(`{"type":"object",
		"properties":{"a b":{"type":"string"},"é/~":{"type":"string"},
			"m":{"type":"object","additionalProperties":{"type":"integer"}}},
		"additionalProperties":false}`)},
	"q/v1.json": {Data: []byte(`{"type":"object","required":["it's \\ \"q\"/~"]}`)},
})

// TestViolationPointers: a violation's pointer is an RFC 6901 JSON
// pointer into the document, whatever the keys hold.
func TestViolationPointers(t *testing.T) {
	reg, err := schemas.Load(pointerSchemas)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ typ, doc, pointer, rule string }{
		{"p", `{"a b": 1}`, "/a b", "type"},
		{"p", `{"é/~": 1}`, "/é~1~0", "type"},
		{"p", `{"m": {"x%41y": "s"}}`, "/m/x%41y", "type"},
		{"p", `{"m": {"ü": "s"}}`, "/m/ü", "type"},
		// The name of an extra or missing property is read back from
		// jsonschema/v5's message, where it is quoted and escaped.
		{"p", `{"it's": 1}`, "/it's", "additionalProperties"},
		{"p", `{"a\\b": 1}`, `/a\b`, "additionalProperties"},
		{"p", `{"a\tb\"": 1}`, "/a\tb\"", "additionalProperties"},
		{"p", `{"\\'": 1}`, `/\'`, "additionalProperties"},
		{"p", `{"\u00a0/": 1}`, "/\u00a0~1", "additionalProperties"},
		{"q", `{}`, `/it's \ "q"~1~0`, "required"},
	} {
		if got := firstViolation(t, reg, c.typ, c.doc); got.Pointer != c.pointer || got.Rule != c.rule {
			t.Errorf("%s: violation at %q [%s], want %q [%s]", c.doc, got.Pointer, got.Rule, c.pointer, c.rule)
		}
	}
}

// TestViolationRule: a violation's rule is a keyword, also where the
// last token of jsonschema/v5's keyword location is not one: a value
// refused by a false schema is reported with the keyword that holds that
// schema (not a property's name), and a missing dependent property with
// dependentRequired (not its index), at the missing property.
func TestViolationRule(t *testing.T) {
	reg, err := schemas.Load(withEnvelope(fstest.MapFS{
		"f/v1.json": {Data: []byte(`{"type":"object","properties":{
			"type":false,
			"oneOf":{"type":"array","items":false},
			"t":{"type":"array","prefixItems":[{},false]},
			"properties":{"type":"object","properties":{"x":false}}}}`)},
		"g/v1.json": {Data: []byte(`false`)},
		"h/v1.json": {Data: []byte(`{"type":"object","dependentRequired":{"card":["billing address","cvc"]}}`)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ typ, doc, pointer, rule string }{
		{"f", `{"type": 1}`, "/type", "properties"},
		{"f", `{"oneOf": [1]}`, "/oneOf/0", "items"},
		{"f", `{"t": [1, 2]}`, "/t/1", "prefixItems"},
		{"f", `{"properties": {"x": 1}}`, "/properties/x", "properties"},
		{"g", `{}`, "/", "false"},
		{"h", `{"card": "x", "cvc": "1"}`, "/billing address", "dependentRequired"},
	} {
		got := firstViolation(t, reg, c.typ, c.doc)
		if got.Pointer != c.pointer || got.Rule != c.rule {
			t.Errorf("%s %s: violation at %q [%s], want %q [%s]", c.typ, c.doc, got.Pointer, got.Rule, c.pointer, c.rule)
		}
	}
}

// firstViolation validates the JSON doc as typ v1, which must refuse it,
// and returns the first violation.
func firstViolation(t *testing.T, reg *schemas.Registry, typ, doc string) schemas.Violation {
	t.Helper()
	var v any
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var inv *schemas.Invalid
	if err := reg.Validate(typ, 1, v); !errors.As(err, &inv) {
		t.Fatalf("%s %s: Validate = %v, want *Invalid", typ, doc, err)
	}
	return inv.Violations[0]
}
