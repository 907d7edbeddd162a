package eventstore_test

import (
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// eventPayload is an ordinary event payload: a flat object of strings and
// numbers with one small nested object and array, as the schemas describe.
const eventPayload = `{"course_id":"c-4f1d2a9e","title":"Introduction to distributed systems","language":"en",` +
	`"level":"intermediate","lessons":12,"duration_minutes":340,"price":{"amount":"49.90","currency":"EUR"},` +
	`"tags":["systems","networking","consensus"],"requested_by":"user-812","priority":2,"draft":false,` +
	`"description":"A course on replication, consensus and the failures they are built to survive."}`

// pathological is a payload of n values of elem in one array.
func pathological(elem string, n int) []byte {
	return []byte("[" + strings.Repeat(elem+",", n-1) + elem + "]")
}

func BenchmarkDecodeJSON(b *testing.B) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"Event", []byte(eventPayload)},
		{"EmptyArrays", pathological("[]", 10_000)},
		{"EmptyObjects", pathological("{}", 10_000)},
		{"Digits", pathological("0", 10_000)},
		// 2,500 stay within the first MiB MaxJSONExpansion allows; 10,000
		// are refused (rule "expansion").
		{"SmallObjects", pathological(`{"":0}`, 2_500)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := eventstore.DecodeJSON(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
