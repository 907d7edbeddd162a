// Package catalog renders the event catalog (docs/events.md) from the
// schemas in a schemas.Registry: every event type, its schema versions,
// its payload fields (type, required, constraints, description), who emits
// it and who consumes it.
//
// Who emits a type comes from the "x-emitted-by" keyword of its newest
// schema (or Declarations); who consumes it comes from Declarations, since
// consumers live outside the schema's owner. The catalog is generated, never
// written by hand: a test fails when docs/events.md is out of date, and
// `eventstream schemas docs` rewrites it.
package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/brainhq/eventstream/schemas"
)

// Declaration says who emits and consumes an event type.
type Declaration struct {
	EmittedBy  []string
	ConsumedBy []string
}

// Declarations are keyed by event type; the key "*" applies to every type
// (a consumer of the whole log), and a key ending in "." to every type
// with that prefix.
type Declarations map[string]Declaration

// Entry is one event type of the catalog.
type Entry struct {
	Type        string
	Versions    []int
	Latest      int
	Title       string
	Description string
	EmittedBy   []string
	ConsumedBy  []string
	Fields      []Field
}

// Field is one payload field of the newest schema version. Nested fields
// are named with dots ("changes.title") and array items with "[]"
// ("lessons[].slot").
type Field struct {
	Name        string
	Type        string
	Required    bool
	Constraints string
	Description string
}

// Build returns the catalog entries of every type in reg, sorted by type.
func Build(reg *schemas.Registry, decl Declarations) ([]Entry, error) {
	var out []Entry
	for _, typ := range reg.Types() {
		latest := reg.Latest(typ)
		src, ok := reg.Source(typ, latest)
		if !ok {
			return nil, fmt.Errorf("catalog: %s v%d: no source", typ, latest)
		}
		var s schema
		if err := json.Unmarshal(src, &s); err != nil {
			return nil, fmt.Errorf("catalog: %s v%d: %w", typ, latest, err)
		}
		e := Entry{Type: typ, Versions: reg.Versions(typ), Latest: latest, Title: s.Title, Description: s.Description}
		if s.EmittedBy != "" {
			e.EmittedBy = append(e.EmittedBy, s.EmittedBy)
		}
		for _, k := range declKeys(decl, typ) {
			d := decl[k]
			e.EmittedBy = appendNew(e.EmittedBy, d.EmittedBy...)
			e.ConsumedBy = appendNew(e.ConsumedBy, d.ConsumedBy...)
		}
		fields, err := s.fields("")
		if err != nil {
			return nil, fmt.Errorf("catalog: %s v%d: %w", typ, latest, err)
		}
		e.Fields = fields
		out = append(out, e)
	}
	return out, nil
}

// declKeys returns the declaration keys that apply to typ: "*", then
// prefixes, then the type itself.
func declKeys(decl Declarations, typ string) []string {
	var keys []string
	for k := range decl {
		if k == "*" || k == typ || (strings.HasSuffix(k, ".") && strings.HasPrefix(typ, k)) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		rank := func(k string) int {
			switch {
			case k == "*":
				return 0
			case k == typ:
				return 2
			}
			return 1
		}
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func appendNew(dst []string, xs ...string) []string {
	for _, x := range xs {
		if !slices.Contains(dst, x) {
			dst = append(dst, x)
		}
	}
	return dst
}

// schema is the part of a JSON Schema the catalog reads.
type schema struct {
	Title       string          `json:"title"`
	Description string          `json:"description"`
	EmittedBy   string          `json:"x-emitted-by"`
	Type        any             `json:"type"`
	Format      string          `json:"format"`
	Pattern     string          `json:"pattern"`
	Enum        []any           `json:"enum"`
	Const       any             `json:"const"`
	Default     any             `json:"default"`
	Minimum     *json.Number    `json:"minimum"`
	Maximum     *json.Number    `json:"maximum"`
	MinLength   *int            `json:"minLength"`
	MaxLength   *int            `json:"maxLength"`
	MinItems    *int            `json:"minItems"`
	MaxItems    *int            `json:"maxItems"`
	MinProps    *int            `json:"minProperties"`
	Unique      bool            `json:"uniqueItems"`
	Required    []string        `json:"required"`
	Properties  json.RawMessage `json:"properties"`
	Items       *schema         `json:"items"`
}

func (s *schema) typeName() string {
	var t string
	switch v := s.Type.(type) {
	case string:
		t = v
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = fmt.Sprint(p)
		}
		t = strings.Join(parts, " or ")
	default:
		t = "any"
	}
	if t == "array" && s.Items != nil {
		t = "array of " + s.Items.typeName()
	}
	return t
}

func (s *schema) constraints() string {
	var c []string
	if s.Format != "" {
		c = append(c, "format "+s.Format)
	}
	if len(s.Enum) > 0 {
		vals := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			vals[i] = "`" + fmt.Sprint(v) + "`"
		}
		c = append(c, "one of "+strings.Join(vals, ", "))
	}
	if s.Const != nil {
		c = append(c, fmt.Sprintf("always `%v`", s.Const))
	}
	if s.Pattern != "" {
		c = append(c, "pattern `"+s.Pattern+"`")
	}
	rng := func(name string, lo, hi *int) {
		switch {
		case lo != nil && hi != nil:
			c = append(c, fmt.Sprintf("%s %d–%d", name, *lo, *hi))
		case lo != nil:
			c = append(c, fmt.Sprintf("%s ≥ %d", name, *lo))
		case hi != nil:
			c = append(c, fmt.Sprintf("%s ≤ %d", name, *hi))
		}
	}
	switch {
	case s.Minimum != nil && s.Maximum != nil:
		c = append(c, fmt.Sprintf("%s–%s", *s.Minimum, *s.Maximum))
	case s.Minimum != nil:
		c = append(c, fmt.Sprintf("≥ %s", *s.Minimum))
	case s.Maximum != nil:
		c = append(c, fmt.Sprintf("≤ %s", *s.Maximum))
	}
	rng("length", s.MinLength, s.MaxLength)
	rng("items", s.MinItems, s.MaxItems)
	if s.MinProps != nil {
		c = append(c, fmt.Sprintf("at least %d field(s)", *s.MinProps))
	}
	if s.Unique {
		c = append(c, "unique items")
	}
	if s.Default != nil {
		b, _ := json.Marshal(s.Default)
		c = append(c, "default `"+string(b)+"`")
	}
	return strings.Join(c, "; ")
}

// fields lists the properties of s (in declaration order) and, for nested
// objects and arrays of objects, theirs, prefixed.
func (s *schema) fields(prefix string) ([]Field, error) {
	names, raws, err := orderedObject(s.Properties)
	if err != nil {
		return nil, err
	}
	var out []Field
	for i, name := range names {
		var p schema
		if err := json.Unmarshal(raws[i], &p); err != nil {
			return nil, fmt.Errorf("property %s%s: %w", prefix, name, err)
		}
		out = append(out, Field{
			Name: prefix + name, Type: p.typeName(), Required: slices.Contains(s.Required, name),
			Constraints: p.constraints(), Description: p.Description,
		})
		switch {
		case len(p.Properties) > 0:
			sub, err := p.fields(prefix + name + ".")
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case p.Items != nil && len(p.Items.Properties) > 0:
			sub, err := p.Items.fields(prefix + name + "[].")
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	return out, nil
}

// orderedObject returns the keys and raw values of a JSON object in the
// order they are written.
func orderedObject(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, fmt.Errorf("properties is not an object")
	}
	var keys []string
	var vals []json.RawMessage
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, t.(string))
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// Render writes the catalog as Markdown.
func Render(w io.Writer, entries []Entry) error {
	var b bytes.Buffer
	b.WriteString("# Event catalog\n\n")
	b.WriteString("<!-- Generated from schemas/ by `eventstream schemas docs` (package schemas/catalog). Do not edit by hand. -->\n\n")
	b.WriteString("Every event travels in the envelope of `schemas/envelope/v1.json` (id, type, stream, version, position, source, target, timestamp, payload, meta); ")
	b.WriteString("the tenant, correlation id and causation id are in `meta`, never in the payload. ")
	b.WriteString("The fields below are the payload of each type at its newest schema version; events stored at an older version are upcast to it when read.\n\n")
	b.WriteString("## Index\n\n| Type | Schema versions | Emitted by | Consumed by |\n|---|---|---|---|\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s | %s |\n", e.Type, anchor(e.Type), versions(e.Versions), cell(e.EmittedBy), cell(e.ConsumedBy))
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "\n## %s\n\n", e.Type)
		if e.Title != "" {
			fmt.Fprintf(&b, "**%s.** ", strings.TrimSuffix(e.Title, "."))
		}
		if e.Description != "" {
			b.WriteString(e.Description)
		}
		if e.Title != "" || e.Description != "" {
			b.WriteString("\n\n")
		}
		fmt.Fprintf(&b, "- Schema version: %d (`schemas/%s/v%d.json`)", e.Latest, e.Type, e.Latest)
		if len(e.Versions) > 1 {
			fmt.Fprintf(&b, "; stored versions %s are upcast to v%d on read", versions(e.Versions[:len(e.Versions)-1]), e.Latest)
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "- Emitted by: %s\n", list(e.EmittedBy))
		fmt.Fprintf(&b, "- Consumed by: %s\n\n", list(e.ConsumedBy))
		if len(e.Fields) == 0 {
			b.WriteString("No payload fields.\n")
			continue
		}
		b.WriteString("| Field | Type | Required | Constraints | Description |\n|---|---|---|---|---|\n")
		for _, f := range e.Fields {
			req := "no"
			if f.Required {
				req = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Name, f.Type, req, esc(f.Constraints), esc(f.Description))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Generate renders the catalog of reg with the Default declarations.
func Generate(reg *schemas.Registry) ([]byte, error) {
	entries, err := Build(reg, Default())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := Render(&b, entries); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func versions(vs []int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("v%d", v)
	}
	return strings.Join(parts, ", ")
}

func cell(xs []string) string {
	if len(xs) == 0 {
		return "—"
	}
	return esc(strings.Join(xs, "; "))
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "nobody declared"
	}
	return esc(strings.Join(xs, "; "))
}

// esc keeps a value inside its Markdown table cell.
func esc(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func anchor(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), ".", "")
}
