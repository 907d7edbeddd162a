package cli

import (
	"encoding"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/bench"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections"
)

// TestJSONOutputTypesHaveSnakeCaseKeys: every named type the CLI prints
// with --json encodes with snake_case keys, nested types included (replay
// printed projections.RebuildResult, which has no JSON tags, as
// {"Projection":…,"Events":…}). A new output type belongs in this list.
func TestJSONOutputTypesHaveSnakeCaseKeys(t *testing.T) {
	for _, v := range []any{
		replayOutput{}, replayCancelOutput{}, exportOutput{}, backfillResult{},
		appendOutput{}, appendFileOutput{}, migrationResult{}, demoReport{}, lintCheck{}, errorReport{},
		projections.Parked{}, projections.Lag{}, eventstore.Event{},
		server.TokenInfo{}, analysts.Result{}, analysts.Analyst{}, bench.Report{},
	} {
		for _, bad := range nonSnakeKeys(reflect.TypeOf(v), map[reflect.Type]bool{}) {
			t.Errorf("%T: JSON key %s is not snake_case", v, bad)
		}
	}
	// What the check is for: the type replay used to print fails it.
	if bad := nonSnakeKeys(reflect.TypeOf(projections.RebuildResult{}), map[reflect.Type]bool{}); len(bad) == 0 {
		t.Errorf("the check finds no fault in projections.RebuildResult, which has no JSON tags")
	}
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

var (
	jsonMarshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshaler = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

// nonSnakeKeys returns the JSON keys of t, and of the types it holds,
// that are not snake_case ("Type.Field: key").
func nonSnakeKeys(t reflect.Type, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return nil // encodes itself (Position, time.Time, uuid.UUID)
	}
	var bad []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			bad = append(bad, nonSnakeKeys(f.Type, seen)...) // promoted fields
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if !snakeCase.MatchString(name) {
			bad = append(bad, t.Name()+"."+f.Name+": "+name)
		}
		bad = append(bad, nonSnakeKeys(f.Type, seen)...)
	}
	return bad
}
