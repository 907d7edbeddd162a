package eventstore

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/schemas"
)

// Limits every backend enforces before writing. They are documented in
// docs/architecture.md.
const (
	// MaxStreamIDBytes is the longest stream id, in bytes.
	MaxStreamIDBytes = 255
	// MaxBatchEvents is the most events one Append may carry.
	MaxBatchEvents = 10_000
	// MaxEventBytes bounds one event's payload plus its encoded meta.
	MaxEventBytes = 1 << 20
	// MaxAppendBytes bounds one append's payloads and encoded metas added
	// up. Without it an append of MaxBatchEvents events near MaxEventBytes
	// would be 10 GiB, far past the 1 GB a PostgreSQL message may carry,
	// and fail with a protocol error instead of a refusal.
	MaxAppendBytes = 64 << 20
	// MaxJSONDepth bounds the nesting of a payload or meta value.
	MaxJSONDepth = 64
)

// Validator is the write-time check every backend runs before it writes:
// stream id, expected version and batch limits, then for each event the
// envelope schema and the payload schema of its type and version.
type Validator struct {
	reg  *schemas.Registry
	keys map[string]string // the schemas' property names, shared by decoded payloads
}

// NewValidator returns a Validator over reg. A nil reg is an error: a
// store without schemas could be written to unchecked.
func NewValidator(reg *schemas.Registry) (*Validator, error) {
	if reg == nil {
		return nil, errors.New("eventstore: a schema registry is required")
	}
	return &Validator{reg: reg, keys: reg.PropertyNames()}, nil
}

// Registry returns the registry the validator checks against.
func (v *Validator) Registry() *schemas.Registry { return v.reg }

// Prepared is a validated event ready to write: its ID is set, its stream is
// the append's stream, and Meta holds the encoded meta.
type Prepared struct {
	Event
	MetaJSON []byte
}

// Check validates an append and returns the events ready to write. Events
// with a zero ID get a new one. On the first refusal it returns a
// *ValidationError naming the event's index, the JSON pointer and the rule.
func (v *Validator) Check(stream string, expected ExpectedVersion, events []Event) ([]Prepared, error) {
	if err := CheckStreamID(stream); err != nil {
		return nil, err
	}
	if expected < StreamExists {
		return nil, &ValidationError{Index: -1, Pointer: "/expected_version", Rule: "expected-version",
			Message: fmt.Sprintf("expected version %d: want any, no-stream, exists or a version >= 0", int64(expected))}
	}
	if len(events) == 0 {
		return nil, &ValidationError{Index: -1, Rule: "batch-size", Message: "an append needs at least one event"}
	}
	if len(events) > MaxBatchEvents {
		return nil, &ValidationError{Index: -1, Rule: "batch-size",
			Message: fmt.Sprintf("%d events in one append; the maximum is %d", len(events), MaxBatchEvents)}
	}
	// The payloads alone first, cheaply: an append far too large is
	// refused before its events are checked.
	payloads := 0
	for _, e := range events {
		payloads += len(e.Payload)
	}
	if payloads > MaxAppendBytes {
		return nil, &ValidationError{Index: -1, Rule: "batch-bytes",
			Message: fmt.Sprintf("the append's payloads are %d bytes; the maximum for one append is %d", payloads, MaxAppendBytes)}
	}
	out := make([]Prepared, len(events))
	seen := make(map[uuid.UUID]int, len(events))
	size := 0
	// The envelope documents are rebuilt for each event in the same maps:
	// the schema checks keep no reference to them.
	docs := envelopeDocs{env: make(map[string]any, 7), meta: make(map[string]any, 5)}
	for i, e := range events {
		if e.ID == uuid.Nil {
			e.ID = NewID()
		}
		if j, dup := seen[e.ID]; dup {
			return nil, &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/id", Rule: "unique-id",
				Message: fmt.Sprintf("id %s is also the id of event %d of this append", e.ID, j)}
		}
		seen[e.ID] = i
		e.Stream = stream
		metaJSON, err := v.checkEvent(i, &e, &docs)
		if err != nil {
			return nil, err
		}
		if size += len(e.Payload) + len(metaJSON); size > MaxAppendBytes {
			return nil, &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/meta", Rule: "batch-bytes",
				Message: fmt.Sprintf("the append's payloads and metas pass %d bytes, the maximum for one append, at this event", MaxAppendBytes)}
		}
		out[i] = Prepared{Event: e, MetaJSON: metaJSON}
	}
	return out, nil
}

// NewID is the id the store gives an event that has none, and the one
// producers should give theirs: a UUID version 7, time-ordered, so that
// the log's unique id index grows at its right edge (random ids cost the
// PostgreSQL store about 3 µs more per event; bench/README.md).
func NewID() uuid.UUID {
	if id, err := uuid.NewV7(); err == nil {
		return id
	}
	return uuid.New()
}

// CheckStreamID refuses an empty, over-long, non-UTF-8 or NUL-bearing id.
func CheckStreamID(stream string) error {
	switch {
	case stream == "":
		return &ValidationError{Index: -1, Pointer: "/stream", Rule: "stream-id", Message: "stream id is empty"}
	case len(stream) > MaxStreamIDBytes:
		return &ValidationError{Index: -1, Pointer: "/stream", Rule: "stream-id",
			Message: fmt.Sprintf("stream id is %d bytes; the maximum is %d", len(stream), MaxStreamIDBytes)}
	case !utf8.ValidString(stream):
		return &ValidationError{Index: -1, Pointer: "/stream", Rule: "stream-id", Message: "stream id is not valid UTF-8"}
	case strings.IndexByte(stream, 0) >= 0:
		return &ValidationError{Index: -1, Pointer: "/stream", Rule: "stream-id", Message: "stream id contains a NUL byte"}
	}
	return nil
}

// CheckTypeName refuses a type name outside [a-z0-9._-] or over 255 bytes.
func CheckTypeName(typ string) error {
	if !schemas.ValidTypeName(typ) {
		return &ValidationError{Index: -1, Type: truncate(typ, 64), Pointer: "/type", Rule: "type-name",
			Message: fmt.Sprintf("type %q: want 1 to 255 characters of [a-z0-9._-], starting with a letter or digit", truncate(typ, 64))}
	}
	return nil
}

// CheckFilter refuses a read filter that no stored event can match
// because no append could have written it: a type that is not a valid
// type name (CheckTypeName), or a tenant id that is not UTF-8 or holds a
// NUL. Every backend runs it on ReadAll's Types and TenantID and on
// Subscribe's Types, so that such a filter is a ValidationError
// everywhere, not an empty answer from one backend and a database error
// from another.
func CheckFilter(types []string, tenant string) error {
	for _, t := range types {
		if err := CheckTypeName(t); err != nil {
			return err
		}
	}
	switch {
	case !utf8.ValidString(tenant):
		return &ValidationError{Index: -1, Pointer: "/tenant_id", Rule: "utf-8", Message: "tenant id is not valid UTF-8"}
	case strings.IndexByte(tenant, 0) >= 0:
		return &ValidationError{Index: -1, Pointer: "/tenant_id", Rule: "nul", Message: "tenant id contains a NUL byte"}
	}
	return nil
}

// truncate cuts s to at most n bytes, at a rune boundary, and marks the
// cut with an ellipsis. Invalid UTF-8 in s stays invalid: print the result
// with %q.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// envelopeDocs are the maps an event's envelope is checked as.
type envelopeDocs struct{ env, meta map[string]any }

func (v *Validator) checkEvent(i int, e *Event, docs *envelopeDocs) ([]byte, error) {
	refuse := func(ptr, rule, msg string) error {
		return &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: ptr, Rule: rule, Message: msg}
	}
	if !schemas.ValidTypeName(e.Type) {
		ve := CheckTypeName(e.Type).(*ValidationError)
		ve.Index = i
		ve.SchemaVersion = e.Meta.SchemaVersion
		return nil, ve
	}
	// In envelope order, so that the first bad field is the one reported
	// (and without a map allocated per event on the append path).
	for _, f := range [...]struct{ ptr, s string }{
		{"/source", e.Source}, {"/target", e.Target}, {"/meta/tenant_id", e.Meta.TenantID},
		{"/meta/producer", e.Meta.Producer}, {"/meta/correlation_id", e.Meta.CorrelationID}, {"/meta/causation_id", e.Meta.CausationID},
	} {
		if !utf8.ValidString(f.s) {
			return nil, refuse(f.ptr, "utf-8", "not valid UTF-8")
		}
		if strings.IndexByte(f.s, 0) >= 0 {
			return nil, refuse(f.ptr, "nul", "contains a NUL byte")
		}
	}
	if len(e.Payload) == 0 {
		return nil, refuse("/payload", "required", "payload is missing")
	}
	if len(e.Payload) > MaxEventBytes {
		return nil, refuse("/payload", "event-size", fmt.Sprintf("payload is %d bytes; the maximum event size is %d", len(e.Payload), MaxEventBytes))
	}
	payload, err := decodeJSON(e.Payload, v.keys)
	if err != nil {
		return nil, refuse("/payload", jsonRule(err), err.Error())
	}
	if _, ok := payload.(map[string]any); !ok {
		return nil, refuse("/payload", "type", fmt.Sprintf("payload must be a JSON object, not %s", jsonKind(payload)))
	}
	for k, x := range e.Meta.Extra {
		// encoding/json would store a string that is not UTF-8 with its
		// bad bytes replaced by U+FFFD, changing the data without a word.
		if metaKeys[k] {
			continue // the named fields win; encodeMeta drops these
		}
		// A NUL, which PostgreSQL's jsonb cannot store, is looked for
		// here too: once the meta is encoded, it could only be reported
		// at /meta, at a byte offset of an encoding the caller never sees.
		rule := stringRule(k)
		if rule == "" {
			rule = unstorableString(reflect.ValueOf(x), 0)
		}
		switch rule {
		case "utf-8":
			return nil, refuse("/meta/"+pointerToken(strings.ToValidUTF8(k, "\uFFFD")), rule, "not valid UTF-8")
		case "nul":
			return nil, refuse("/meta/"+pointerToken(k), rule, "contains a NUL byte")
		}
	}
	clear(docs.meta)
	meta, metaJSON, err := encodeMeta(e.Meta, docs.meta)
	if err != nil {
		return nil, refuse("/meta", jsonRule(err), err.Error())
	}
	if len(e.Payload)+len(metaJSON) > MaxEventBytes {
		return nil, refuse("/meta", "event-size", fmt.Sprintf("payload and meta are %d bytes; the maximum event size is %d", len(e.Payload)+len(metaJSON), MaxEventBytes))
	}
	env := docs.env
	clear(env)
	env["id"] = e.ID.String()
	env["type"] = e.Type
	env["stream"] = e.Stream
	env["source"] = e.Source
	env["payload"] = payload
	env["meta"] = meta
	if e.Target != "" {
		env["target"] = e.Target
	}
	if err := v.reg.ValidateEnvelope(env); err != nil {
		return nil, v.schemaError(i, e, "", err)
	}
	if err := v.reg.Validate(e.Type, e.Meta.SchemaVersion, payload); err != nil {
		return nil, v.schemaError(i, e, "/payload", err)
	}
	return metaJSON, nil
}

func (v *Validator) schemaError(i int, e *Event, prefix string, err error) error {
	ve := &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion}
	var inv *schemas.Invalid
	switch {
	case errors.As(err, &inv):
		for _, x := range inv.Violations {
			ptr := x.Pointer
			if ptr == "/" {
				ptr = ""
			}
			ve.Causes = append(ve.Causes, Violation{Pointer: prefix + ptr, Rule: x.Rule, Message: x.Message})
		}
		first := ve.Causes[0]
		ve.Pointer, ve.Rule, ve.Message = first.Pointer, first.Rule, first.Message
		if ve.Pointer == "" {
			ve.Pointer = "/"
		}
		ve.Causes = ve.Causes[1:]
	case errors.Is(err, schemas.ErrUnknownType):
		ve.Pointer, ve.Rule, ve.Message = "/type", "unknown-type", fmt.Sprintf("no schema for event type %q", e.Type)
	case errors.Is(err, schemas.ErrUnknownVersion):
		ve.Pointer, ve.Rule = "/meta/schema_version", "unknown-schema-version"
		ve.Message = fmt.Sprintf("event type %q has no schema version %d (known: %v)", e.Type, e.Meta.SchemaVersion, v.reg.Versions(e.Type))
	default:
		ve.Pointer, ve.Rule, ve.Message = prefix, "schema", err.Error()
	}
	return ve
}

func jsonRule(err error) string {
	var je *JSONError
	if errors.As(err, &je) {
		return je.Rule
	}
	return "json"
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return "an object"
}

// stringRule returns the rule s breaks as a stored string: "utf-8", "nul",
// or "" for none.
func stringRule(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "utf-8"
	case strings.IndexByte(s, 0) >= 0:
		return "nul"
	}
	return ""
}

// unstorableString returns the rule (see stringRule) broken by a string
// encoding/json would write for v (strings, map keys, and what a
// TextMarshaler returns, in maps, slices, arrays, pointers, interfaces and
// the struct fields it writes), or "" if none is. A json.Marshaler's
// output is written as it is, and checked after encoding like the rest of
// the meta. depth stops a cyclic value; encoding/json refuses those
// itself.
func unstorableString(v reflect.Value, depth int) string {
	if !v.IsValid() || depth > MaxJSONDepth {
		return ""
	}
	if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.CanInterface() {
		switch x := v.Interface().(type) {
		case json.Marshaler:
			return ""
		case encoding.TextMarshaler:
			b, err := x.MarshalText()
			if err != nil {
				return ""
			}
			return stringRule(string(b))
		}
	}
	switch v.Kind() {
	case reflect.String:
		return stringRule(v.String())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return unstorableString(v.Elem(), depth+1)
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if rule := unstorableString(it.Key(), depth+1); rule != "" {
				return rule
			}
			if rule := unstorableString(it.Value(), depth+1); rule != "" {
				return rule
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "" // []byte is written as base64
		}
		for i := range v.Len() {
			if rule := unstorableString(v.Index(i), depth+1); rule != "" {
				return rule
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			// The fields encoding/json writes: not tagged "-", and
			// exported or an embedded struct (whose exported fields it
			// promotes even when the struct's type is unexported).
			f := t.Field(i)
			if f.Tag.Get("json") == "-" {
				continue
			}
			if !f.IsExported() {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if !f.Anonymous || ft.Kind() != reflect.Struct {
					continue
				}
			}
			if rule := unstorableString(v.Field(i), depth+1); rule != "" {
				return rule
			}
		}
	}
	return ""
}

// pointerToken escapes a key for a JSON pointer (RFC 6901).
func pointerToken(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// encodeMeta fills doc with meta as the validator sees it (a decoded
// document) and returns it with meta as it is stored (JSON), without a
// round trip through encoding/json for the named keys.
func encodeMeta(m Meta, doc map[string]any) (map[string]any, []byte, error) {
	buf := appendNamedMeta(make([]byte, 0, 160), m)
	doc["schema_version"] = json.Number(strconv.Itoa(m.SchemaVersion))
	doc["tenant_id"] = m.TenantID
	for _, kv := range [...]struct{ k, v string }{{"producer", m.Producer}, {"correlation_id", m.CorrelationID}, {"causation_id", m.CausationID}} {
		if kv.v != "" {
			doc[kv.k] = kv.v
		}
	}
	if len(m.Extra) > 0 {
		extra := make(map[string]any, len(m.Extra))
		for k, v := range m.Extra {
			if !metaKeys[k] {
				extra[k] = v
			}
		}
		raw, err := json.Marshal(extra)
		if err != nil {
			return nil, nil, &JSONError{Rule: "json", Message: fmt.Sprintf("meta cannot be encoded: %v", err)}
		}
		decoded, err := DecodeJSON(raw)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range decoded.(map[string]any) {
			doc[k] = v
		}
		if len(raw) > 2 {
			buf = append(buf, ',')
			buf = append(buf, raw[1:len(raw)-1]...)
		}
	}
	buf = append(buf, '}')
	return doc, buf, nil
}

// jsonStringLen is the length of what appendJSONString appends for s.
func jsonStringLen(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\t' || c == '\r':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 without
// NUL (checked before), so only quotes, backslashes and control characters
// need escaping.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\t':
			buf = append(buf, '\\', 't')
		case '\r':
			buf = append(buf, '\\', 'r')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
