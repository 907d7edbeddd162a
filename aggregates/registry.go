package aggregates

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/wholenum"
	"github.com/brainhq/eventstream/schemas"
)

// Registry maps event type names and schema versions to Go types, and holds
// the upcasters that bring old schema versions of a type forward. Names are
// given explicitly, never derived from Go type names, so renaming a Go type
// does not orphan stored events.
//
// Build a Registry once at start-up (Register, RegisterUpcaster, Own), then
// call Check; after that it is read-only and safe for concurrent use.
type Registry struct {
	schemas   *schemas.Registry
	byName    map[string]*entry // event type -> its Go type (at the latest version)
	byGo      map[reflect.Type]*entry
	upcasters map[upKey]Upcaster
	owned     []string
	errs      []error
	checked   bool
}

type entry struct {
	typ     string
	version int
	goType  reflect.Type
	decode  func([]byte) (any, error)
}

type upKey struct {
	typ  string
	from int
}

// Upcaster turns a payload of schema version from into one of version
// from+1. It receives the decoded payload (numbers as json.Number) and may
// change it in place. It must be a pure function of the payload.
type Upcaster func(payload map[string]any) (map[string]any, error)

// NewRegistry returns an empty registry that checks against reg.
func NewRegistry(reg *schemas.Registry) *Registry {
	return &Registry{
		schemas:   reg,
		byName:    map[string]*entry{},
		byGo:      map[reflect.Type]*entry{},
		upcasters: map[upKey]Upcaster{},
	}
}

// Schemas returns the schema registry r checks against.
func (r *Registry) Schemas() *schemas.Registry { return r.schemas }

// Register binds the Go type T to event type typ at schema version. Only
// one version of a type has a Go type, the one events are written and read
// at (the newest); older versions reach it through upcasters. Mistakes
// (a duplicate name or Go type, a non-struct T) are reported by Check.
func Register[T any](r *Registry, typ string, version int) {
	t := reflect.TypeFor[T]()
	switch {
	case t.Kind() != reflect.Struct:
		r.errs = append(r.errs, fmt.Errorf("aggregates: register %q: Go type %s is not a struct", typ, t))
		return
	case version < 1:
		r.errs = append(r.errs, fmt.Errorf("aggregates: register %q: schema version %d must be >= 1", typ, version))
		return
	}
	if e, dup := r.byName[typ]; dup {
		r.errs = append(r.errs, fmt.Errorf("aggregates: event type %q registered twice (Go types %s and %s)", typ, e.goType, t))
		return
	}
	if e, dup := r.byGo[t]; dup {
		r.errs = append(r.errs, fmt.Errorf("aggregates: Go type %s registered twice (event types %q and %q)", t, e.typ, typ))
		return
	}
	e := &entry{typ: typ, version: version, goType: t, decode: func(b []byte) (any, error) {
		var v T
		err := json.Unmarshal(b, &v)
		if err == nil {
			return v, nil
		}
		// The schemas count 1.0, 1e2 and -0.0 as integers, so a valid event
		// may hold one where T has an int, which encoding/json refuses.
		// Only then, not on every decode, are such numbers rewritten as
		// digits and the payload decoded again; what still fails (1.5,
		// 1e30) fails with the first error.
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return nil, err
		}
		if nb, changed := wholenum.Normalize(b); changed {
			var w T
			if json.Unmarshal(nb, &w) == nil {
				return w, nil
			}
		}
		return nil, err
	}}
	r.byName[typ] = e
	r.byGo[t] = e
}

// RegisterUpcaster registers fn to bring typ from schema version from to
// from+1. Chains (v1→v2→v3) are built by registering each step.
func (r *Registry) RegisterUpcaster(typ string, from int, fn Upcaster) {
	k := upKey{typ, from}
	if _, dup := r.upcasters[k]; dup {
		r.errs = append(r.errs, fmt.Errorf("aggregates: upcaster %s v%d→v%d registered twice", typ, from, from+1))
		return
	}
	r.upcasters[k] = fn
}

// Own declares the event type prefixes (for example "course.") whose schemas
// this registry is responsible for: Check requires a Go type for every such
// schema. Schemas outside every owned prefix are left to other registries.
// A registry that owns nothing is responsible for every schema.
func (r *Registry) Own(prefixes ...string) { r.owned = append(r.owned, prefixes...) }

func (r *Registry) owns(typ string) bool {
	if len(r.owned) == 0 {
		return true
	}
	for _, p := range r.owned {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// Check verifies, at start-up, that Go types and schemas agree: every
// registered type has a schema at its version and that version is the
// type's newest; every older schema version has an upcaster to the next;
// every owned schema has a Go type. All problems are returned together.
func (r *Registry) Check() error {
	errs := slices.Clone(r.errs)
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := r.byName[n]
		if !r.schemas.Has(e.typ, e.version) {
			errs = append(errs, fmt.Errorf("aggregates: Go type %s is registered as %s v%d but schemas/%s/v%d.json does not exist", e.goType, e.typ, e.version, e.typ, e.version))
			continue
		}
		if latest := r.schemas.Latest(e.typ); latest != e.version {
			errs = append(errs, fmt.Errorf("aggregates: %s is registered at v%d but schemas/ has v%d: register the newest version and an upcaster to it", e.typ, e.version, latest))
		}
	}
	for _, typ := range r.schemas.Types() {
		if !r.owns(typ) {
			continue
		}
		e, ok := r.byName[typ]
		if !ok {
			errs = append(errs, fmt.Errorf("aggregates: schemas/%s has no Go type: register one with aggregates.Register", typ))
			continue
		}
		for _, v := range r.schemas.Versions(typ) {
			if v < e.version {
				if _, ok := r.upcasters[upKey{typ, v}]; !ok {
					errs = append(errs, fmt.Errorf("aggregates: %s v%d has no upcaster to v%d", typ, v, v+1))
				}
			}
		}
	}
	for k := range r.upcasters {
		if !r.schemas.Has(k.typ, k.from) || !r.schemas.Has(k.typ, k.from+1) {
			errs = append(errs, fmt.Errorf("aggregates: upcaster %s v%d→v%d: both schema versions must exist", k.typ, k.from, k.from+1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.checked = true
	return nil
}

// Types returns the registered event types, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TypeOf returns the event type name and schema version of a registered Go
// value (or pointer to one).
func (r *Registry) TypeOf(v any) (typ string, version int, err error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	e, ok := r.byGo[t]
	if !ok {
		return "", 0, fmt.Errorf("aggregates: Go type %v is not registered as an event", t)
	}
	return e.typ, e.version, nil
}

// Upcast returns e with its payload brought to the newest schema version
// its type has an upcaster chain to, and Meta.SchemaVersion set to match.
// Each step's result is validated against the schema of the version it
// claims. The stored event is not touched; an event already at the newest
// version is returned as it is.
//
// e is a stored event, so its payload is decoded as one
// (eventstore.DecodeStoredJSON): an event stored before the expansion
// limit, or read back denser than it was written, that exceeds it still
// upcasts, and its aggregate still loads.
func (r *Registry) Upcast(e eventstore.Event) (eventstore.Event, error) {
	v := e.Meta.SchemaVersion
	if _, ok := r.upcasters[upKey{e.Type, v}]; !ok {
		return e, nil
	}
	decoded, err := eventstore.DecodeStoredJSON(e.Payload)
	if err != nil {
		return e, fmt.Errorf("aggregates: upcast %s %s v%d: %w", e.Type, e.ID, v, err)
	}
	payload, ok := decoded.(map[string]any)
	if !ok {
		return e, fmt.Errorf("aggregates: upcast %s %s v%d: payload is not an object", e.Type, e.ID, v)
	}
	for {
		up, ok := r.upcasters[upKey{e.Type, v}]
		if !ok {
			break
		}
		payload, err = up(payload)
		if err != nil {
			return e, fmt.Errorf("aggregates: upcast %s %s v%d→v%d: %w", e.Type, e.ID, v, v+1, err)
		}
		v++
		if err := r.schemas.Validate(e.Type, v, payload); err != nil {
			return e, fmt.Errorf("aggregates: upcast %s %s to v%d gives a payload that breaks its schema: %w", e.Type, e.ID, v, err)
		}
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return e, fmt.Errorf("aggregates: upcast %s %s: encode: %w", e.Type, e.ID, err)
	}
	e.Payload = b
	e.Meta.SchemaVersion = v
	return e, nil
}

// Decode upcasts e and decodes its payload into the registered Go type,
// returned as a value (not a pointer).
func (r *Registry) Decode(e eventstore.Event) (any, error) {
	_, v, err := r.decode(e)
	return v, err
}

// decode returns the upcast event and its decoded payload.
func (r *Registry) decode(e eventstore.Event) (eventstore.Event, any, error) {
	entry, ok := r.byName[e.Type]
	if !ok {
		return e, nil, &UnknownEventError{Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, EventID: e.ID.String()}
	}
	up, err := r.Upcast(e)
	if err != nil {
		return e, nil, err
	}
	if up.Meta.SchemaVersion != entry.version {
		return e, nil, &UnknownEventError{Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, EventID: e.ID.String(), Want: entry.version}
	}
	v, err := entry.decode(up.Payload)
	if err != nil {
		return e, nil, fmt.Errorf("aggregates: decode %s v%d %s: %w", e.Type, up.Meta.SchemaVersion, e.ID, err)
	}
	return up, v, nil
}

// encode returns the type, version and JSON payload of a registered value.
func (r *Registry) encode(v any) (string, int, json.RawMessage, error) {
	typ, version, err := r.TypeOf(v)
	if err != nil {
		return "", 0, nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", 0, nil, fmt.Errorf("aggregates: encode %s: %w", typ, err)
	}
	return typ, version, b, nil
}
