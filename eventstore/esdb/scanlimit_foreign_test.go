package esdb_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/storetest"
)

// scanLayout writes a log described by layout on a stand-in of its own and
// returns a store of namespace "ns-" on it and the store's events, in
// order. Per letter: a, r (renamed), b (tenant-b): an event of the store;
// o: an event of another namespace's store; s: a system event; x: an
// event that another program wrote to a stream of the namespace.
func scanLayout(t *testing.T, layout string) (eventstore.Store, []eventstore.Event) {
	t.Helper()
	st, srv := standInStore(t, registry(t), nil, esdb.WithNamespace("ns-"))
	other, err := esdb.New(t.Context(), srv.URL(), registry(t), esdb.WithNamespace("other-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	raw := rawClient(t, srv)
	rawAppend := func(stream, typ string) {
		t.Helper()
		if _, err := raw.AppendToStream(t.Context(), stream, client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: typ, ContentType: client.ContentTypeJson, Data: []byte(`{}`),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var log []eventstore.Event
	for i, c := range layout {
		e := added(fmt.Sprint("item-", i))
		switch c {
		case 'a':
		case 'r':
			e = eventstore.Event{Type: storetest.TypeRenamed, Source: "esdb-test", Payload: json.RawMessage(`{"name":"r"}`),
				Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "tenant-a"}}
		case 'b':
			e.Meta.TenantID = "tenant-b"
		case 'o':
			mustAppend(t, other, fmt.Sprint("s-", i%3), eventstore.Any, e)
			continue
		case 's':
			rawAppend("$system", "$statsCollected")
			continue
		case 'x':
			rawAppend(fmt.Sprint("ns-s-", i%3), "order.placed")
			continue
		default:
			t.Fatalf("layout %q: letter %q", layout, c)
		}
		log = append(log, mustAppend(t, st, fmt.Sprint("s-", i%3), eventstore.Any, e).Events...)
	}
	return st, log
}

// TestStandIn_ScanLimitForeignLayouts follows Next with every budget and
// limit over logs whose records of $all that are not the store's sit at
// the start, at the end, between its events and in long runs: each event
// the filter keeps comes once, in order; a page looks at no more than its
// budget of the store's events; End comes only once none is left.
func TestStandIn_ScanLimitForeignLayouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, layout string }{
		{"at the start", "ssoxarbab"},
		{"at the end", "arbabsoxxo"},
		{"interleaved", "asobrxaobsrxb"},
		{"a long run", "ar" + strings.Repeat("o", 70) + "sbx"},
		{"a long mixed run", strings.Repeat("xso", 40) + "a"},
		{"only foreign", "oooosxx"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, log := scanLayout(t, tc.layout)
			index := func(p eventstore.Position) int {
				for i, e := range log {
					if e.Position.Compare(p) >= 0 {
						return i
					}
				}
				return len(log)
			}
			filters := []eventstore.ReadAllOptions{{}, {Types: []string{storetest.TypeRenamed}}, {TenantID: "tenant-b"}, {TenantID: "tenant-a", Types: []string{storetest.TypeAdded}}}
			for _, f := range filters {
				var want []eventstore.Event
				for _, e := range log {
					if (len(f.Types) == 0 || slices.Contains(f.Types, e.Type)) && (f.TenantID == "" || e.Meta.TenantID == f.TenantID) {
						want = append(want, e)
					}
				}
				for scan := 0; scan <= len(log)+1; scan++ {
					for _, limit := range []int{1, 2, 100} {
						o := f
						o.ScanLimit, o.Limit = scan, limit
						var got []eventstore.Event
						pages := 0
						for ; ; pages++ {
							if pages > 2*len(log)+2 {
								t.Fatalf("%+v: no end after %d pages", o, pages)
							}
							p, err := st.ReadAll(t.Context(), o)
							if err != nil {
								t.Fatal(err)
							}
							if looked := index(p.Next) - index(o.From); scan > 0 && looked > scan {
								t.Fatalf("%+v: a page looked at %d events", o, looked)
							}
							if p.End && index(p.Next) != len(log) {
								t.Fatalf("%+v: End with Next at %d of %d", o, index(p.Next), len(log))
							}
							got = append(got, p.Events...)
							if p.End {
								pages++
								break
							}
							if !p.End && len(p.Events) == 0 && index(p.Next) == index(o.From) && p.Next == o.From {
								t.Fatalf("%+v: a page that is not End does not move", o)
							}
							o.From = p.Next
						}
						if n := max((len(log)+scan-1)/max(scan, 1), 1); scan > 0 && limit >= len(log) && n != pages {
							t.Fatalf("%+v: %d pages, want %d", o, pages, n)
						}
						if ids(got) != ids(want) {
							t.Fatalf("%+v: got [%s], want [%s]", o, ids(got), ids(want))
						}
					}
				}
			}
		})
	}
}
