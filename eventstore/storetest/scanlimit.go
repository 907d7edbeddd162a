package storetest

import (
	"fmt"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// RunScanLimit checks ReadAllOptions.ScanLimit against h's backend, which
// must honour it (PostgreSQL, memory, EventStoreDB): a page looks at no more than ScanLimit
// events of the log, a filtered page that reaches it ends early (not End,
// Next the first event it did not look at), and following Next gives every
// matching event once, in order, whatever the limit and the budget.
func RunScanLimit(t *testing.T, h Harness) {
	t.Helper()
	reg, err := Registry()
	if err != nil {
		t.Fatalf("storetest: load schemas: %v", err)
	}
	st := h.New(t, reg)
	ctx := testContext(t)
	// Ten events: renamed ones at 3 and 8, another tenant's at 5 and 6.
	var log []eventstore.Event
	for i := range 10 {
		e := added(fmt.Sprint("item-", i))
		switch i {
		case 3, 8:
			e = renamed(fmt.Sprint("item-", i))
		case 5, 6:
			e.Meta.TenantID = "tenant-b"
		}
		log = append(log, mustAppend(t, st, fmt.Sprint("scan-", i%3), eventstore.Any, e).Events...)
	}
	// index is the index in log of the first event at or after p.
	index := func(p eventstore.Position) int {
		for i, e := range log {
			if e.Position.Compare(p) >= 0 {
				return i
			}
		}
		return len(log)
	}

	// Looked at 0..3 (renamed 3), then 4..7 (none), then 8..9 (renamed 8).
	opts := eventstore.ReadAllOptions{Types: []string{TypeRenamed}, ScanLimit: 4, Limit: 100}
	for i, want := range []struct {
		events []int
		next   int // index in log of Next; len(log): past the head
		end    bool
	}{{[]int{3}, 4, false}, {nil, 8, false}, {[]int{8}, 10, true}} {
		p, err := st.ReadAll(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, e := range p.Events {
			got = append(got, index(e.Position))
		}
		if fmt.Sprint(got) != fmt.Sprint(want.events) || index(p.Next) != want.next || p.End != want.end {
			t.Fatalf("page %d of renamed events, 4 looked at per page: events %v, next at %d, end %v; want %v, next at %d, end %v",
				i, got, index(p.Next), p.End, want.events, want.next, want.end)
		}
		opts.From = p.Next
	}

	// Unfiltered, every event looked at is returned: the budget is the page.
	if p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{ScanLimit: 3, Limit: 100}); err != nil || len(p.Events) != 3 || p.End || index(p.Next) != 3 {
		t.Fatalf("unfiltered page, 3 looked at: %d events, next at %d, end %v, err %v; want 3, next at 3, not end", len(p.Events), index(p.Next), p.End, err)
	}
	// A budget that reaches the head ends the log.
	if p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Types: []string{TypeRenamed}, ScanLimit: 10, Limit: 100}); err != nil || len(p.Events) != 2 || !p.End {
		t.Fatalf("a budget of the whole log: %d events, end %v, err %v; want 2, end", len(p.Events), p.End, err)
	}
	// Without a budget the page looks as far as it must.
	if p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Types: []string{TypeRenamed}, Limit: 100}); err != nil || len(p.Events) != 2 || !p.End {
		t.Fatalf("no budget: %d events, end %v, err %v; want 2, end", len(p.Events), p.End, err)
	}

	// Every limit and budget: each matching event once, in order, and no
	// page looks further than its budget.
	filters := []eventstore.ReadAllOptions{{Types: []string{TypeRenamed}}, {TenantID: "tenant-b"}, {TenantID: tenant, Types: []string{TypeAdded}}}
	for _, f := range filters {
		var want []eventstore.Event
		for _, e := range log {
			if (len(f.Types) == 0 || e.Type == f.Types[0]) && (f.TenantID == "" || e.Meta.TenantID == f.TenantID) {
				want = append(want, e)
			}
		}
		for scan := 1; scan <= 11; scan++ {
			for _, limit := range []int{1, 2, 100} {
				o := f
				o.ScanLimit, o.Limit = scan, limit
				var got []eventstore.Event
				for pages := 0; ; pages++ {
					if pages > len(log)+1 {
						t.Fatalf("%+v: no end after %d pages", o, pages)
					}
					p, err := st.ReadAll(ctx, o)
					if err != nil {
						t.Fatal(err)
					}
					if looked := index(p.Next) - index(o.From); looked > scan {
						t.Fatalf("%+v: a page looked at %d events", o, looked)
					}
					got = append(got, p.Events...)
					if p.End {
						break
					}
					o.From = p.Next
				}
				sameEvents(t, fmt.Sprintf("%+v", o), got, want)
			}
		}
	}
}
