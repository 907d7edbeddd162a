package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	neturl "net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

//go:embed */*.json
var embedded embed.FS

// Embedded returns the schema files shipped with eventstream.
func Embedded() fs.FS { return embedded }

// EnvelopeType is the folder of the envelope's own schema.
const EnvelopeType = "envelope"

var (
	// ErrUnknownType: no schema exists for the event type.
	ErrUnknownType = errors.New("schemas: unknown event type")
	// ErrUnknownVersion: the type exists but not at that schema version.
	ErrUnknownVersion = errors.New("schemas: unknown schema version")
)

// TypeNamePattern is what an event type name may contain.
var TypeNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// typeName matches TypeNamePattern without running the regexp (every
// append checks every event's type).
var typeName = mustClassMatcher(TypeNamePattern)

// mustClassMatcher is newClassMatcher for a pattern that must have its
// shape: without a matcher, ValidTypeName would refuse every type name.
func mustClassMatcher(re *regexp.Regexp) classMatcher {
	m := newClassMatcher(re)
	if m == nil {
		panic(fmt.Sprintf("schemas: pattern %s is not of the shape classMatcher handles", re))
	}
	return m
}

// ValidTypeName reports whether s is a type name: 1 to 255 bytes matching
// TypeNamePattern.
func ValidTypeName(s string) bool {
	return len(s) > 0 && len(s) <= 255 && typeName.match(s)
}

var fileName = regexp.MustCompile(`^v([1-9][0-9]*)\.json$`)

// Registry answers "is this a valid <type> at schema version N". It is
// immutable once loaded and safe for concurrent use.
type Registry struct {
	schemas  map[key]compiled
	sources  map[key][]byte
	versions map[string][]int
	envelope *jsonschema.Schema
	envCheck *checker

	// crossCheck: every document the checker accepts is also validated by
	// jsonschema/v5, and a disagreement is an error (see CrossCheckEnv).
	crossCheck bool
}

// CrossCheckEnv names the environment variable that, when set to 1 at Load,
// makes the registry validate every document twice (the fast checker and
// jsonschema/v5) and refuse, with ErrCheckerDisagrees, a document the two
// judge differently. The test suite runs with it set.
const CrossCheckEnv = "EVENTSTREAM_SCHEMA_CROSSCHECK"

// ErrCheckerDisagrees: the fast checker accepted a document that
// jsonschema/v5 refuses. It is a bug in eventstream; it is only looked for
// when CrossCheckEnv is set.
var ErrCheckerDisagrees = errors.New("schemas: the fast checker accepted a document jsonschema/v5 refuses")

type key struct {
	typ     string
	version int
}

// compiled is one type and version's schema and its fast checker (nil:
// validated by jsonschema/v5 alone).
type compiled struct {
	schema *jsonschema.Schema
	check  *checker
}

var defaultRegistry = sync.OnceValues(func() (*Registry, error) { return Load(embedded) })

// Default returns the registry of the embedded schemas, compiled on first
// use and shared afterwards.
func Default() (*Registry, error) { return defaultRegistry() }

// MustDefault is Default for programs that cannot start without it.
func MustDefault() *Registry {
	r, err := Default()
	if err != nil {
		panic(err)
	}
	return r
}

// Load compiles every <type>/v<N>.json of the given file systems (later ones
// may add types and versions, not replace them). It fails on a file that
// is not one JSON value in UTF-8 or does not compile, a misnamed file, a duplicate, a missing envelope schema,
// a hole in a type's versions (v1 and v3 without v2), a key written twice
// in one object of a file, or a count bound
// (maxLength, maxItems, ...) above 2^53, which jsonschema/v5 cannot read as
// written.
func Load(fsyss ...fs.FS) (*Registry, error) {
	r := &Registry{
		schemas:    map[key]compiled{},
		sources:    map[key][]byte{},
		versions:   map[string][]int{},
		crossCheck: os.Getenv(CrossCheckEnv) == "1",
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.AssertFormat = true
	var urls []key
	for _, fsys := range fsyss {
		files, err := schemaFiles(fsys)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			typ, base := path.Dir(f), path.Base(f)
			m := fileName.FindStringSubmatch(base)
			if m == nil {
				return nil, fmt.Errorf("schemas: %s: file name must be v<N>.json", f)
			}
			if !ValidTypeName(typ) {
				return nil, fmt.Errorf("schemas: %s: type name must match %s", f, TypeNamePattern)
			}
			v, _ := strconv.Atoi(m[1])
			k := key{typ, v}
			if _, dup := r.sources[k]; dup {
				return nil, fmt.Errorf("schemas: %s: defined twice", f)
			}
			b, err := fs.ReadFile(fsys, f)
			if err != nil {
				return nil, fmt.Errorf("schemas: read %s: %w", f, err)
			}
			if err := oneJSONValue(b); err != nil {
				return nil, fmt.Errorf("schemas: %s: %w", f, err)
			}
			if err := c.AddResource(url(k), bytes.NewReader(b)); err != nil {
				return nil, fmt.Errorf("schemas: %s: %w", f, err)
			}
			r.sources[k] = b
			urls = append(urls, k)
		}
	}
	for _, k := range urls {
		s, err := c.Compile(url(k))
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s/v%d.json: %w", k.typ, k.version, err)
		}
		if err := countBoundsFit(s); err != nil {
			return nil, fmt.Errorf("schemas: %s/v%d.json: %w", k.typ, k.version, err)
		}
		if k.typ == EnvelopeType {
			if k.version == 1 {
				r.envelope, r.envCheck = s, newChecker(s)
			}
			continue
		}
		r.schemas[k] = compiled{schema: s, check: newChecker(s)}
		r.versions[k.typ] = append(r.versions[k.typ], k.version)
	}
	if r.envelope == nil {
		return nil, fmt.Errorf("schemas: %s/v1.json is missing", EnvelopeType)
	}
	for typ, vs := range r.versions {
		sort.Ints(vs)
		for i, v := range vs {
			if v != i+1 {
				return nil, fmt.Errorf("schemas: %s: versions have a hole: v%d is missing", typ, i+1)
			}
		}
	}
	return r, nil
}

// schemaFiles lists the <type>/<file>.json files of fsys and refuses a
// JSON file anywhere else, so that a misplaced schema is not silently
// ignored. Other files (README.md, Go sources) are allowed.
func schemaFiles(fsys fs.FS) ([]string, error) {
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.EqualFold(path.Ext(p), ".json") {
			return nil
		}
		if strings.Count(p, "/") != 1 || path.Ext(p) != ".json" {
			return fmt.Errorf("schemas: %s: schema files must be <type>/v<N>.json", p)
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("schemas: list files: %w", err)
	}
	return files, nil
}

// oneJSONValue refuses a schema file that is not one JSON value in UTF-8
// with each key once per object (see duplicateKey). jsonschema/v5 decodes
// the file with encoding/json, which would read it otherwise without a
// word: bytes that are not UTF-8 become U+FFFD (a Latin-1 "café" in an
// enum would refuse "café"), and what follows the first value is looked
// at for a delimiter only, so an object closed too early (`{...}},
// "required": [...]}`) compiles without its rest. Malformed JSON is left
// to jsonschema/v5, whose error says where.
func oneJSONValue(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	err := duplicateKey(dec, "")
	if errors.Is(err, errMalformed) {
		return nil
	}
	if err != nil {
		return err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("not one JSON value: data after it at byte %d", end)
	}
	return nil
}

// errMalformed: duplicateKey met JSON it cannot read, which jsonschema/v5
// reports better.
var errMalformed = errors.New("malformed JSON")

// duplicateKey reports a key written twice in one object of the JSON value
// dec reads next. jsonschema/v5 decodes a schema file with encoding/json,
// which keeps the last of two equal keys and drops the other without a
// word: a property defined twice, or a "maxLength" given twice, would lose
// one of its definitions silently.
func duplicateKey(dec *json.Decoder, at string) error {
	tok, err := dec.Token()
	if err != nil {
		return errMalformed
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return errMalformed
			}
			k, _ := t.(string)
			if seen[k] {
				return fmt.Errorf("key %q appears twice in the object at %q", k, at+"/")
			}
			seen[k] = true
			if err := duplicateKey(dec, at+"/"+escapePointer(k)); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := duplicateKey(dec, at+"/"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errMalformed
	}
	return nil
}

// maxCountBound is the largest minLength, maxLength, minItems, maxItems,
// minProperties, maxProperties, minContains or maxContains a schema may
// have. jsonschema/v5 reads these through a float64 into an int: past 2^53
// the bound is rounded, and one that overflows the int becomes
// -9223372036854775808 on amd64 (so maxLength: 1e20 refuses every string)
// or 9223372036854775807 elsewhere. Such a schema would mean something else
// than it says, and something else on each machine; Load refuses it.
const maxCountBound = 1 << 53

// countBoundsFit reports a count bound of s, or of a schema s reaches, that
// jsonschema/v5 did not read as written (see maxCountBound).
func countBoundsFit(s *jsonschema.Schema) error {
	seen := map[*jsonschema.Schema]bool{}
	var walk func(s *jsonschema.Schema) error
	walk = func(s *jsonschema.Schema) error {
		if s == nil || seen[s] {
			return nil
		}
		seen[s] = true
		for _, b := range []struct {
			name string
			v    int
		}{
			{"minLength", s.MinLength}, {"maxLength", s.MaxLength},
			{"minItems", s.MinItems}, {"maxItems", s.MaxItems},
			{"minProperties", s.MinProperties}, {"maxProperties", s.MaxProperties},
			{"minContains", s.MinContains}, {"maxContains", s.MaxContains},
		} {
			if b.v < -1 || b.v > maxCountBound {
				return fmt.Errorf("%s: %s is too large (at most %d)", s.Location, b.name, maxCountBound)
			}
		}
		subs := []*jsonschema.Schema{s.Ref, s.RecursiveRef, s.DynamicRef, s.Not, s.If, s.Then, s.Else,
			s.PropertyNames, s.UnevaluatedProperties, s.Items2020, s.Contains, s.UnevaluatedItems, s.ContentSchema}
		subs = append(subs, s.AllOf...)
		subs = append(subs, s.AnyOf...)
		subs = append(subs, s.OneOf...)
		subs = append(subs, s.PrefixItems...)
		for _, p := range s.Properties {
			subs = append(subs, p)
		}
		for _, p := range s.PatternProperties {
			subs = append(subs, p)
		}
		for _, p := range s.DependentSchemas {
			subs = append(subs, p)
		}
		for _, d := range s.Dependencies {
			if p, ok := d.(*jsonschema.Schema); ok {
				subs = append(subs, p)
			}
		}
		for _, x := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
			switch x := x.(type) {
			case *jsonschema.Schema:
				subs = append(subs, x)
			case []*jsonschema.Schema:
				subs = append(subs, x...)
			}
		}
		for _, sub := range subs {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(s)
}

func url(k key) string { return fmt.Sprintf("mem:///%s/v%d.json", k.typ, k.version) }

// Types returns every event type, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.versions))
	for t := range r.versions {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Versions returns the schema versions of a type, ascending.
func (r *Registry) Versions(typ string) []int { return slices.Clone(r.versions[typ]) }

// Latest returns a type's newest schema version (0 if unknown).
func (r *Registry) Latest(typ string) int {
	vs := r.versions[typ]
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}

// Has reports whether typ exists at schema version.
func (r *Registry) Has(typ string, version int) bool {
	_, ok := r.schemas[key{typ, version}]
	return ok
}

// Source returns the schema file of typ at version as stored.
func (r *Registry) Source(typ string, version int) ([]byte, bool) {
	b, ok := r.sources[key{typ, version}]
	return b, ok
}

// Lookup returns the compiled schema, or ErrUnknownType / ErrUnknownVersion.
func (r *Registry) Lookup(typ string, version int) (*jsonschema.Schema, error) {
	c, err := r.lookup(typ, version)
	return c.schema, err
}

func (r *Registry) lookup(typ string, version int) (compiled, error) {
	if c, ok := r.schemas[key{typ, version}]; ok {
		return c, nil
	}
	if _, ok := r.versions[typ]; ok {
		return compiled{}, fmt.Errorf("%w: %s has no v%d (known: %v)", ErrUnknownVersion, typ, version, r.versions[typ])
	}
	return compiled{}, fmt.Errorf("%w: %q", ErrUnknownType, typ)
}

// Validate checks a decoded payload (as produced by DecodeJSON: json.Number
// for numbers) against typ at version. A payload that breaks the schema
// yields *Invalid.
func (r *Registry) Validate(typ string, version int, payload any) error {
	c, err := r.lookup(typ, version)
	if err != nil {
		return err
	}
	return r.validate(c.schema, c.check, payload)
}

// ValidateEnvelope checks a decoded envelope against envelope/v1.json.
func (r *Registry) ValidateEnvelope(doc any) error {
	return r.validate(r.envelope, r.envCheck, doc)
}

// validate asks the fast checker first; what it does not accept goes to
// jsonschema/v5, whose verdict and error stand.
func (r *Registry) validate(s *jsonschema.Schema, c *checker, doc any) error {
	if c != nil && c.valid(doc) {
		if r.crossCheck {
			if err := toInvalid(s.Validate(doc)); err != nil {
				return fmt.Errorf("%w (%s): %w", ErrCheckerDisagrees, s.Location, err)
			}
		}
		return nil
	}
	return toInvalid(s.Validate(doc))
}

// PropertyNames returns every property name the schemas declare, at any
// depth. Decoders use it to share one string per name instead of
// allocating each key of each payload.
func (r *Registry) PropertyNames() map[string]string {
	names := map[string]string{}
	seen := map[*jsonschema.Schema]bool{}
	var walk func(s *jsonschema.Schema)
	walk = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		for n, ps := range s.Properties {
			names[n] = n
			walk(ps)
		}
		if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
			walk(ap)
		}
		walk(s.Items2020)
		walk(s.Ref)
	}
	walk(r.envelope)
	for _, c := range r.schemas {
		walk(c.schema)
	}
	return names
}

// Checked reports whether typ at version has a fast checker (false: the
// schema uses a keyword only jsonschema/v5 implements, so every document
// of that type is validated by jsonschema/v5 alone).
func (r *Registry) Checked(typ string, version int) bool {
	return r.schemas[key{typ, version}].check != nil
}

// Invalid lists the rules a document broke, most specific first.
type Invalid struct {
	Violations []Violation
}

// Violation is one broken rule: where (a JSON pointer into the document),
// which rule (the JSON Schema keyword) and a message.
type Violation struct {
	Pointer string
	Rule    string
	Message string
}

func (e *Invalid) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = fmt.Sprintf("%s: %s [%s]", v.Pointer, v.Message, v.Rule)
	}
	return "schemas: " + strings.Join(parts, "; ")
}

func toInvalid(err error) error {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	inv := &Invalid{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			inv.Violations = append(inv.Violations, leaf(e))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return inv
}

// keywordOf returns the last keyword of a keyword location. It is most
// often the location's last token, but not always: a value refused by a
// false schema is located at that schema (/properties/x, /prefixItems/1,
// or "" for the whole schema, reported as "false"), and a missing
// dependent property at /dependentRequired/<name>/<index>. The location
// is read from the start, since a name may be any word, a keyword's too.
func keywordOf(loc string) string {
	toks := strings.Split(strings.TrimPrefix(loc, "/"), "/")
	index := func(i int) bool {
		return i < len(toks) && toks[i] != "" && strings.Trim(toks[i], "0123456789") == ""
	}
	rule := "false"
	for i := 0; i < len(toks) && toks[i] != ""; i++ {
		rule = toks[i]
		switch rule {
		case "properties", "patternProperties", "dependentSchemas", "$defs", "definitions":
			i++ // a name follows
		case "dependentRequired", "dependencies":
			i++ // a name, and an index for a missing property
			if index(i + 1) {
				i++
			}
		case "prefixItems", "allOf", "anyOf", "oneOf", "items":
			if index(i + 1) {
				i++
			}
		}
	}
	return rule
}

// firstQuoted returns the first property name in a message of
// jsonschema/v5 ("missing properties: 'a', 'b'"). It writes a name with
// %q, then unescapes double quotes and escapes single ones, so a name
// holding a quote, a backslash, a control or a non-printable character
// is not the text between two single quotes: this undoes that quoting.
func firstQuoted(msg string) (string, bool) {
	i := strings.IndexByte(msg, '\'')
	if i < 0 {
		return "", false
	}
	q := []byte{'"'}
	for j := i + 1; j < len(msg); j++ {
		switch c := msg[j]; c {
		case '\'':
			name, err := strconv.Unquote(string(append(q, '"')))
			return name, err == nil
		case '"':
			q = append(q, '\\', '"')
		case '\\':
			if j++; j == len(msg) {
				return "", false
			}
			if msg[j] != '\'' {
				q = append(q, '\\')
			}
			q = append(q, msg[j])
		default:
			q = append(q, c)
		}
	}
	return "", false
}

func leaf(e *jsonschema.ValidationError) Violation {
	rule := keywordOf(e.KeywordLocation)
	ptr := instancePointer(e.InstanceLocation)
	if rule == "required" || rule == "additionalProperties" || rule == "dependentRequired" {
		// Point at the missing or extra property rather than its parent.
		if name, ok := firstQuoted(e.Message); ok {
			ptr = strings.TrimSuffix(ptr, "/") + "/" + escapePointer(name)
		}
	}
	if ptr == "" {
		ptr = "/"
	}
	return Violation{Pointer: ptr, Rule: rule, Message: e.Message}
}

// instancePointer turns jsonschema/v5's instance location into a JSON
// pointer. jsonschema/v5 escapes each token as a JSON pointer and then
// percent-encodes it for a URL fragment, so a key "a b" is at "/a%20b"
// and "é" at "/%C3%A9": neither names the key a reader sees in the
// document.
func instancePointer(loc string) string {
	if p, err := neturl.PathUnescape(loc); err == nil {
		return p
	}
	return loc
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
