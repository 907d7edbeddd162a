package audit

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// encodeMeta must say what eventstore.Meta.MarshalJSON says.
func TestEncodeMetaMatchesMarshalJSON(t *testing.T) {
	metas := []eventstore.Meta{
		{SchemaVersion: 1, TenantID: "acme"},
		{SchemaVersion: 2, TenantID: `quo"te\back`, Producer: "p\n\t\x01", CorrelationID: "c-1", CausationID: "é ü 😀 \u2028"},
		{SchemaVersion: 1, TenantID: "t", Extra: map[string]any{"trace": "abc", "n": json.Number("12345678901234567890"), "nested": map[string]any{"a": []any{true, nil}}, "tenant_id": "shadowed"}},
	}
	for _, m := range metas {
		got, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("encodeMeta wrote invalid JSON %s: %v", got, err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("encodeMeta:\n%s\nMarshalJSON:\n%s", got, want)
		}
	}
}

func BenchmarkEncodeMeta(b *testing.B) {
	m := eventstore.Meta{SchemaVersion: 1, TenantID: "tenant-1", Producer: "svc", CorrelationID: "corr-123"}
	for b.Loop() {
		if _, err := encodeMeta(m); err != nil {
			b.Fatal(err)
		}
	}
}
