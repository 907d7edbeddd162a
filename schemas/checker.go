package schemas

import (
	"encoding/json"
	"math/big"
	"regexp"
	"regexp/syntax"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// A checker answers one question about a decoded document: does it satisfy
// a schema? It is built from the schema as jsonschema/v5 compiled it (the
// same resolved $refs, regexps, bounds and format functions), for the
// keywords our schemas use, and it decides without building errors or
// instance paths: jsonschema/v5 allocates a location string for every
// property it visits, which made validation most of an append's CPU time.
//
// A checker only ever says "valid" for a document jsonschema/v5 accepts. When
// it says "not valid" (or meets a value it was not built for), the registry
// asks jsonschema/v5, whose verdict and error are the ones returned, so every
// refusal reads the same as before. A schema that uses a keyword the
// checker does not implement gets no checker at all and is validated by
// jsonschema/v5 alone. Tests cross-check both on every document the suite
// validates (EVENTSTREAM_SCHEMA_CROSSCHECK) and in a fuzz target.
type checker struct {
	types  uint8 // typeBits; 0: any type
	format func(any) bool
	enum   []any // allowed values (const is an enum of one); nil: any value

	// objects
	minProps, maxProps int // -1: no bound
	required           []string
	props              map[string]*checker
	closed             bool     // additionalProperties: false
	additional         *checker // additionalProperties: a schema

	// arrays
	minItems, maxItems int
	unique             bool
	items              *checker

	// strings
	minLen, maxLen int
	pattern        *regexp.Regexp
	classes        classMatcher // pattern without the regexp, when it has that shape

	// numbers; the int64 forms are set when the bound is an integer that fits
	min, max, exMin, exMax                 *big.Rat
	minI, maxI, exMinI, exMaxI             int64
	hasMinI, hasMaxI, hasExMinI, hasExMaxI bool

	ref *checker
}

const (
	tNull uint8 = 1 << iota
	tBoolean
	tNumber
	tInteger
	tString
	tArray
	tObject
)

var typeBits = map[string]uint8{
	"null": tNull, "boolean": tBoolean, "number": tNumber, "integer": tInteger,
	"string": tString, "array": tArray, "object": tObject,
}

// newChecker builds the checker of s, or returns nil when s (or a schema it
// reaches) uses a keyword the checker does not implement.
func newChecker(s *jsonschema.Schema) *checker {
	b := checkerBuilder{done: map[*jsonschema.Schema]*checker{}}
	c := b.build(s)
	if b.unsupported {
		return nil
	}
	return c
}

type checkerBuilder struct {
	done        map[*jsonschema.Schema]*checker
	unsupported bool
}

func (b *checkerBuilder) build(s *jsonschema.Schema) *checker {
	if s == nil {
		return nil
	}
	if c, ok := b.done[s]; ok {
		return c // a $ref cycle: the checker is being filled in above
	}
	c := &checker{}
	b.done[s] = c
	if s.Always != nil || s.RecursiveRef != nil || s.DynamicRef != nil || s.Not != nil ||
		len(s.AllOf) > 0 || len(s.AnyOf) > 0 || len(s.OneOf) > 0 || s.If != nil ||
		s.PropertyNames != nil || s.RegexProperties || len(s.PatternProperties) > 0 ||
		len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0 ||
		s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil ||
		s.Items != nil || s.AdditionalItems != nil || len(s.PrefixItems) > 0 || s.Contains != nil ||
		s.MultipleOf != nil || s.ContentEncoding != "" || s.ContentMediaType != "" || s.ContentSchema != nil ||
		len(s.Extensions) > 0 {
		b.unsupported = true
		return c
	}
	for _, t := range s.Types {
		bit, ok := typeBits[t]
		if !ok {
			b.unsupported = true
			return c
		}
		c.types |= bit
	}
	if s.Format != "" {
		// The compiler asserts formats (Load sets AssertFormat) with the
		// package's Formats table; an unknown format is an annotation.
		c.format = jsonschema.Formats[s.Format]
	}
	switch {
	case len(s.Constant) > 0 && len(s.Enum) > 0:
		// Both hold: a value must be the const and in the enum. The
		// const is allowed if the enum has it; otherwise nothing is
		// (an empty enum), and jsonschema/v5 decides.
		c.enum = []any{}
		for _, e := range s.Enum {
			if sameValue(s.Constant[0], e) {
				c.enum = s.Constant[:1]
				break
			}
		}
	case len(s.Constant) > 0:
		c.enum = s.Constant[:1]
	case len(s.Enum) > 0:
		c.enum = s.Enum
	}

	// A count bound below -1 is one jsonschema/v5 overflowed (Load refuses
	// those, see maxCountBound): it refuses every value with that
	// maximum, which the checker, reading a negative bound as none, would
	// accept.
	for _, n := range []int{s.MinProperties, s.MaxProperties, s.MinItems, s.MaxItems, s.MinLength, s.MaxLength} {
		if n < -1 {
			b.unsupported = true
			return c
		}
	}
	c.minProps, c.maxProps = s.MinProperties, s.MaxProperties
	c.required = s.Required
	if len(s.Properties) > 0 {
		c.props = make(map[string]*checker, len(s.Properties))
		for name, ps := range s.Properties {
			c.props[name] = b.build(ps)
		}
	}
	switch ap := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		c.closed = !ap
	case *jsonschema.Schema:
		c.additional = b.build(ap)
	default:
		b.unsupported = true
	}

	c.minItems, c.maxItems = s.MinItems, s.MaxItems
	c.unique = s.UniqueItems
	c.items = b.build(s.Items2020)

	c.minLen, c.maxLen = s.MinLength, s.MaxLength
	c.pattern = s.Pattern
	if s.Pattern != nil {
		c.classes = newClassMatcher(s.Pattern)
	}

	c.min, c.max, c.exMin, c.exMax = s.Minimum, s.Maximum, s.ExclusiveMinimum, s.ExclusiveMaximum
	c.minI, c.hasMinI = ratInt64(s.Minimum)
	c.maxI, c.hasMaxI = ratInt64(s.Maximum)
	c.exMinI, c.hasExMinI = ratInt64(s.ExclusiveMinimum)
	c.exMaxI, c.hasExMaxI = ratInt64(s.ExclusiveMaximum)

	c.ref = b.build(s.Ref)
	return c
}

func ratInt64(r *big.Rat) (int64, bool) {
	if r == nil || !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}

// valid reports whether v satisfies the schema. false means "not valid, or
// not decidable here": the caller then asks jsonschema/v5.
func (c *checker) valid(v any) bool {
	switch v := v.(type) {
	case string:
		if !c.hasType(tString) || !c.inEnum(v) || (c.format != nil && !c.format(v)) {
			return false
		}
		// Lengths count runes, as jsonschema/v5 does. Bytes bound runes from
		// above, which spares the count for most short strings.
		if c.minLen > 0 || (c.maxLen >= 0 && len(v) > c.maxLen) {
			n := utf8.RuneCountInString(v)
			if n < c.minLen || (c.maxLen >= 0 && n > c.maxLen) {
				return false
			}
		}
		if c.classes != nil {
			if !c.classes.match(v) {
				return false
			}
		} else if c.pattern != nil && !c.pattern.MatchString(v) {
			return false
		}
	case map[string]any:
		if !c.hasType(tObject) || !c.inEnum(v) || (c.format != nil && !c.format(v)) {
			return false
		}
		if (c.minProps >= 0 && len(v) < c.minProps) || (c.maxProps >= 0 && len(v) > c.maxProps) {
			return false
		}
		for _, name := range c.required {
			if _, ok := v[name]; !ok {
				return false
			}
		}
		for name, pv := range v {
			if pc, ok := c.props[name]; ok {
				if !pc.valid(pv) {
					return false
				}
			} else if c.closed || (c.additional != nil && !c.additional.valid(pv)) {
				return false
			}
		}
	case []any:
		if !c.hasType(tArray) || !c.inEnum(v) || (c.format != nil && !c.format(v)) {
			return false
		}
		if (c.minItems >= 0 && len(v) < c.minItems) || (c.maxItems >= 0 && len(v) > c.maxItems) {
			return false
		}
		if c.unique && !uniqueScalars(v) {
			return false
		}
		if c.items != nil {
			for _, item := range v {
				if !c.items.valid(item) {
					return false
				}
			}
		}
	case json.Number:
		if !c.validNumber(v) {
			return false
		}
	case bool:
		if !c.hasType(tBoolean) || !c.inEnum(v) || (c.format != nil && !c.format(v)) {
			return false
		}
	case nil:
		if !c.hasType(tNull) || !c.inEnum(v) || (c.format != nil && !c.format(v)) {
			return false
		}
	default:
		return false // a Go value DecodeJSON does not produce
	}
	return c.ref == nil || c.ref.valid(v)
}

func (c *checker) hasType(bit uint8) bool { return c.types == 0 || c.types&bit != 0 }

func (c *checker) validNumber(n json.Number) bool {
	s := string(n)
	i, isInt := plainInt(s)
	if c.types != 0 && c.types&tNumber == 0 {
		if c.types&tInteger == 0 {
			return false
		}
		if !isInt {
			// 1.0 and 1e2 are integers too; let jsonschema/v5 decide.
			return false
		}
	}
	if !c.inEnum(n) || (c.format != nil && !c.format(n)) {
		return false
	}
	if c.min == nil && c.max == nil && c.exMin == nil && c.exMax == nil {
		return true
	}
	if isInt && (c.min == nil || c.hasMinI) && (c.max == nil || c.hasMaxI) &&
		(c.exMin == nil || c.hasExMinI) && (c.exMax == nil || c.hasExMaxI) {
		return (c.min == nil || i >= c.minI) && (c.max == nil || i <= c.maxI) &&
			(c.exMin == nil || i > c.exMinI) && (c.exMax == nil || i < c.exMaxI)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return false
	}
	return (c.min == nil || r.Cmp(c.min) >= 0) && (c.max == nil || r.Cmp(c.max) <= 0) &&
		(c.exMin == nil || r.Cmp(c.exMin) > 0) && (c.exMax == nil || r.Cmp(c.exMax) < 0)
}

// plainInt parses a number written as an optional minus and digits that
// fits an int64.
func plainInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && !(i == 0 && s[i] == '-') {
			return 0, false
		}
	}
	i, err := strconv.ParseInt(s, 10, 64)
	return i, err == nil
}

func (c *checker) inEnum(v any) bool {
	if c.enum == nil {
		return true
	}
	for _, e := range c.enum {
		if sameValue(v, e) {
			return true
		}
	}
	return false
}

// sameValue is JSON equality for scalars. Objects and arrays compare as
// unequal, which only sends the document to jsonschema/v5.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case string:
		b, ok := b.(string)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case nil:
		return b == nil
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, ok1 := new(big.Rat).SetString(string(a))
		rb, ok2 := new(big.Rat).SetString(string(b))
		return ok1 && ok2 && ra.Cmp(rb) == 0
	}
	return false
}

// uniqueScalars reports whether an array of strings, booleans and nulls has
// no two equal items. An array holding anything else is not decided here.
func uniqueScalars(v []any) bool {
	if len(v) < 2 {
		return true
	}
	seen := make(map[any]struct{}, len(v))
	for _, item := range v {
		switch item.(type) {
		case string, bool, nil:
		default:
			return false
		}
		if _, dup := seen[item]; dup {
			return false
		}
		seen[item] = struct{}{}
	}
	return true
}

// classMatcher matches the patterns most schemas use for identifiers and
// codes without running a regexp: a sequence of ASCII character classes
// each repeated a fixed number of times, the last one possibly open-ended,
// anchored at both ends: ^[a-z0-9][a-z0-9._-]*$, ^[0-9a-f]{64}$,
// ^[A-Z]{3}$. Because every element but the last has a fixed count, one
// left-to-right pass decides a match exactly as the regexp would. Other
// patterns are matched by their regexp.
type classMatcher []classRun

type classRun struct {
	set      [128]bool
	min, max int // max < 0: unbounded
}

func (m classMatcher) match(s string) bool {
	i := 0
	for k, run := range m {
		n := 0
		for i < len(s) && (run.max < 0 || n < run.max) {
			c := s[i]
			if c >= utf8.RuneSelf || !run.set[c] {
				break
			}
			i++
			n++
		}
		if n < run.min {
			return false
		}
		if k < len(m)-1 && n != run.max {
			return false // a fixed count that was not reached
		}
	}
	return i == len(s)
}

// newClassMatcher returns the matcher of re, or nil if re is not of the
// shape classMatcher handles.
func newClassMatcher(re *regexp.Regexp) classMatcher {
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return nil
	}
	if tree.Op != syntax.OpConcat || len(tree.Sub) < 3 ||
		tree.Sub[0].Op != syntax.OpBeginText || tree.Sub[len(tree.Sub)-1].Op != syntax.OpEndText {
		return nil
	}
	var m classMatcher
	for _, sub := range tree.Sub[1 : len(tree.Sub)-1] {
		run, ok := asRun(sub)
		if !ok {
			return nil
		}
		m = append(m, run)
	}
	for k, run := range m {
		if k < len(m)-1 && run.min != run.max {
			return nil
		}
		if run.max == 0 {
			return nil
		}
	}
	return m
}

// asRun reads one element: a class or a literal rune, possibly repeated.
func asRun(re *syntax.Regexp) (classRun, bool) {
	var run classRun
	min, max := 1, 1
	switch re.Op {
	case syntax.OpStar:
		min, max, re = 0, -1, re.Sub[0]
	case syntax.OpPlus:
		min, max, re = 1, -1, re.Sub[0]
	case syntax.OpRepeat:
		min, max, re = re.Min, re.Max, re.Sub[0]
	case syntax.OpLiteral:
		// One literal rune is an element. The parser merges a run of
		// literal runes, such as "ir-", into one literal: that is not
		// split into elements here, so the pattern keeps its regexp.
		if len(re.Rune) != 1 {
			return run, false
		}
	}
	if re.Flags&syntax.FoldCase != 0 {
		return run, false
	}
	switch re.Op {
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if lo < 0 || hi >= utf8.RuneSelf {
				return run, false // the class reaches beyond ASCII
			}
			for c := lo; c <= hi; c++ {
				run.set[c] = true
			}
		}
	case syntax.OpLiteral:
		if len(re.Rune) != 1 || re.Rune[0] >= utf8.RuneSelf {
			return run, false
		}
		run.set[re.Rune[0]] = true
	default:
		return run, false
	}
	run.min, run.max = min, max
	return run, true
}
