package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// Every schema integer a domain Go type decodes into an integer field is
// bounded, at every schema version of its type, to what that field holds:
// a value beyond it would be written and then never decode, and the
// aggregate of its stream would never load again.
func TestSchemaIntegersFitTheirGoTypes(t *testing.T) {
	t.Parallel()
	sch := schemas.MustDefault()
	reg, err := domain.NewRegistry(sch)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, typ := range reg.Types() {
		// An empty payload at the newest version decodes (no upcast) into
		// a zero value of the type's Go type.
		v, err := reg.Decode(eventstore.Event{Type: typ, Payload: json.RawMessage(`{}`), Meta: eventstore.Meta{SchemaVersion: sch.Latest(typ)}})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		for _, version := range sch.Versions(typ) {
			s, err := sch.Lookup(typ, version)
			if err != nil {
				t.Fatal(err)
			}
			checked += integersFit(t, fmt.Sprintf("%s v%d", typ, version), reflect.TypeOf(v), s)
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d integer fields: the walk misses the Go types' fields", checked)
	}
}

// integersFit walks the Go type t and the schema s side by side and
// reports every integer field whose schema admits a value t does not
// hold. It returns how many integer fields it checked.
func integersFit(t *testing.T, at string, typ reflect.Type, s *jsonschema.Schema) int {
	t.Helper()
	if s == nil {
		return 0
	}
	n := integersFit(t, at, typ, s.Ref)
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Struct:
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			n += integersFit(t, at+"/"+name, f.Type, s.Properties[name])
		}
	case reflect.Slice, reflect.Array:
		n += integersFit(t, at+"/*", typ.Elem(), s.Items2020)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := uint(typ.Bits())
		lo := new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), bits-1))
		hi := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits-1), big.NewInt(1))
		n += boundsWithin(t, at, typ, s, lo, hi)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		hi := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(typ.Bits())), big.NewInt(1))
		n += boundsWithin(t, at, typ, s, new(big.Int), hi)
	}
	return n
}

func boundsWithin(t *testing.T, at string, typ reflect.Type, s *jsonschema.Schema, lo, hi *big.Int) int {
	t.Helper()
	if len(s.Types) == 0 && s.Ref != nil {
		return 0 // checked through the $ref
	}
	if !slices.Equal(s.Types, []string{"integer"}) {
		t.Errorf("%s: Go %s, schema type %v: want integer", at, typ, s.Types)
		return 1
	}
	min, max := s.Minimum, s.Maximum
	if min == nil {
		min = s.ExclusiveMinimum
	}
	if max == nil {
		max = s.ExclusiveMaximum
	}
	if min == nil || min.Cmp(new(big.Rat).SetInt(lo)) < 0 {
		t.Errorf("%s: Go %s holds ≥ %s; schema minimum %v", at, typ, lo, min)
	}
	if max == nil || max.Cmp(new(big.Rat).SetInt(hi)) > 0 {
		t.Errorf("%s: Go %s holds ≤ %s; schema maximum %v", at, typ, hi, max)
	}
	return 1
}

// An integer beyond the Go type is refused at append with the schema's
// maximum, naming the field; the largest the type holds is written, and
// its aggregate loads with it.
func TestAppendRefusesIntegersBeyondTheGoType(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			course, dist := uuid.NewString(), uuid.NewString()
			ev := func(typ, source string, version int, payload string) eventstore.Event {
				return eventstore.Event{ID: uuid.New(), Type: typ, Source: source, Payload: json.RawMessage(payload),
					Meta: eventstore.Meta{SchemaVersion: version, TenantID: "t1"}}
			}
			for _, c := range []struct {
				e       eventstore.Event
				pointer string
			}{
				{ev(coursefactory.TypeGenerationRequested, coursefactory.Source, 2, fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1e30,"language":"en"}`, course)), "/payload/attempt"},
				{ev(coursefactory.TypeGenerationRequested, coursefactory.Source, 1, fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":9223372036854775808}`, course)), "/payload/attempt"},
				{ev(coursefactory.TypeLessonGenerated, coursefactory.Source, 1, fmt.Sprintf(`{"course_id":%q,"slot":1,"title":"One","word_count":9.3e18}`, course)), "/payload/word_count"},
				{ev(distribution.TypeUpdated, distribution.Source, 1, fmt.Sprintf(`{"distribution_id":%q,"course_id":%q,"changes":{"price_cents":1e19}}`, dist, course)), "/payload/changes/price_cents"},
			} {
				_, err := env.Store.Append(ctx, "course-"+course, eventstore.Any, c.e)
				var v *eventstore.ValidationError
				if !errors.As(err, &v) || v.Rule != "maximum" || v.Pointer != c.pointer {
					t.Errorf("%s %s: %v, want a maximum refused at %s", c.e.Type, c.e.Payload, err, c.pointer)
				}
			}
			appendRaw(t, env, "course-"+course,
				ev(coursefactory.TypeGenerationRequested, coursefactory.Source, 1, fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":9223372036854775807}`, course)),
				ev(coursefactory.TypeLessonGenerated, coursefactory.Source, 1, fmt.Sprintf(`{"course_id":%q,"slot":1,"title":"One","word_count":9.223372036854775807e18}`, course)))
			a, err := env.Courses.Load(ctx, course)
			if err != nil || a.State.Attempt != math.MaxInt64 {
				t.Fatalf("load: %+v, %v; want attempt %d", a, err, int64(math.MaxInt64))
			}
		})
	}
}
