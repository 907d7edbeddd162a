package storetest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// fill appends n events to streams "<prefix>-0" .. "<prefix>-<k-1>" in turn,
// alternating types and tenants, and returns them in append order.
func fill(t *testing.T, st eventstore.Store, prefix string, k, n int) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for i := range n {
		e := added(fmt.Sprintf("item-%d", i))
		if i%3 == 1 {
			e = renamed(fmt.Sprintf("item-%d", i))
		}
		if i%2 == 1 {
			e.Meta.TenantID = "tenant-b"
		}
		res := mustAppend(t, st, fmt.Sprintf("%s-%d", prefix, i%k), eventstore.Any, e)
		out = append(out, res.Events...)
	}
	return out
}

func checkLogOrder(t *testing.T, gapless bool, evs []eventstore.Event) {
	t.Helper()
	for i, e := range evs {
		if gapless {
			if want := eventstore.Pos(uint64(i) + 1); e.Position != want {
				t.Fatalf("event %d has position %v, want %v (gapless positions)", i, e.Position, want)
			}
		}
		if i > 0 && evs[i-1].Position.Compare(e.Position) >= 0 {
			t.Fatalf("positions not strictly increasing: %v then %v", evs[i-1].Position, e.Position)
		}
	}
}

func (s *suite) testOrdering(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	var want []eventstore.Event
	for i := range 5 {
		res := mustAppend(t, st, "order-a", eventstore.Any, added(fmt.Sprintf("a%d", 2*i)), renamed(fmt.Sprintf("a%d", 2*i+1)))
		for j, e := range res.Events {
			if got, want := e.Version, int64(2*i+j+1); got != want {
				t.Fatalf("order-a event version %d, want %d", got, want)
			}
			if e.Stream != "order-a" {
				t.Fatalf("result event stream %q, want order-a", e.Stream)
			}
		}
		want = append(want, res.Events...)
		res = mustAppend(t, st, "order-b", eventstore.Any, added(fmt.Sprintf("b%d", i)))
		want = append(want, res.Events...)
	}
	all := readAll(t, st, eventstore.ReadAllOptions{})
	sameEvents(t, "ReadAll", all, want)
	checkLogOrder(t, s.h.Features.GaplessPositions, all)

	for _, stream := range []string{"order-a", "order-b"} {
		evs, err := st.ReadStream(ctx, stream, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var fromLog []eventstore.Event
		for _, e := range all {
			if e.Stream == stream {
				fromLog = append(fromLog, e)
			}
		}
		sameEvents(t, "ReadStream("+stream+")", evs, fromLog)
		for i, e := range evs {
			if e.Version != int64(i)+1 {
				t.Fatalf("%s event %d has version %d, want %d", stream, i, e.Version, i+1)
			}
		}
	}
	// Payload order inside a batch is kept.
	var p struct{ Name string }
	evs, _ := st.ReadStream(ctx, "order-a", 0, 0)
	for i, e := range evs {
		if err := jsonUnmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("a%d", i); p.Name != want {
			t.Fatalf("order-a event %d is %q, want %q", i, p.Name, want)
		}
	}
}

func (s *suite) testReadStream(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	var want []eventstore.Event
	for i := range 10 {
		want = append(want, mustAppend(t, st, "rs", eventstore.Any, added(fmt.Sprint(i))).Events...)
	}
	mustAppend(t, st, "rs-other", eventstore.Any, added("other"))

	cases := []struct {
		from  int64
		limit int
		want  []eventstore.Event
	}{
		{0, 0, want},
		{1, 0, want},
		{-5, -1, want},
		{4, 0, want[3:]},
		{4, 3, want[3:6]},
		{1, 1, want[:1]},
		{10, 0, want[9:]},
		{9, 100, want[8:]},
		{11, 0, nil},
		{1 << 40, 5, nil},
	}
	for _, c := range cases {
		evs, err := st.ReadStream(ctx, "rs", c.from, c.limit)
		if err != nil {
			t.Fatalf("ReadStream(from %d, limit %d): %v", c.from, c.limit, err)
		}
		sameEvents(t, fmt.Sprintf("ReadStream(from %d, limit %d)", c.from, c.limit), evs, c.want)
	}
	for _, stream := range []string{"rs-missing", "r", "RS"} {
		evs, err := st.ReadStream(ctx, stream, 0, 0)
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream(%q): %d events, %v; want ErrStreamNotFound", stream, len(evs), err)
		}
	}
	// A stream id no append can have is refused as Append refuses it (a
	// ValidationError, rule stream-id), not reported as a stream that
	// merely has no events, in every backend alike.
	for _, stream := range []string{"", "rs\x00", "rs\xff", strings.Repeat("r", eventstore.MaxStreamIDBytes+1)} {
		for _, from := range []int64{0, 2} {
			evs, err := st.ReadStream(ctx, stream, from, 0)
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("ReadStream(%q, from %d): %v; want a ValidationError, not ErrStreamNotFound", stream, from, err)
			}
			wantValidationErr(t, fmt.Sprintf("ReadStream(%q, from %d)", stream, from), len(evs), err, -1, "/stream", "stream-id")
		}
	}
}

func (s *suite) testReadAll(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)

	t.Run("Empty", func(t *testing.T) {
		empty := s.newStore(t)
		p, err := empty.ReadAll(ctx, eventstore.ReadAllOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != 0 || !p.End {
			t.Fatalf("ReadAll of an empty store: %d events, End %v; want 0, true", len(p.Events), p.End)
		}
	})

	want := fill(t, st, "ra", 3, 25)

	t.Run("Pages", func(t *testing.T) {
		t.Parallel()
		for _, limit := range []int{1, 7, 25, 26, 1000} {
			got := readAll(t, st, eventstore.ReadAllOptions{Limit: limit})
			sameEvents(t, fmt.Sprintf("ReadAll limit %d", limit), got, want)
			checkLogOrder(t, s.h.Features.GaplessPositions, got)
		}
	})
	t.Run("PageShape", func(t *testing.T) {
		t.Parallel()
		p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != 10 || p.End {
			t.Fatalf("first page of 10 from 25 events: %d events, End %v; want 10, false", len(p.Events), p.End)
		}
		sameEvents(t, "first page", p.Events, want[:10])
		p, err = st.ReadAll(ctx, eventstore.ReadAllOptions{From: p.Next, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "second page", p.Events, want[10:20])
		p, err = st.ReadAll(ctx, eventstore.ReadAllOptions{From: p.Next, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "last page", p.Events, want[20:])
		if !p.End {
			t.Fatal("last page: End = false")
		}
		// Reading on from the last Next finds nothing until more is written.
		p, err = st.ReadAll(ctx, eventstore.ReadAllOptions{From: p.Next, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != 0 || !p.End {
			t.Fatalf("page after the head: %d events, End %v; want 0, true", len(p.Events), p.End)
		}
	})
	t.Run("DefaultLimit", func(t *testing.T) {
		t.Parallel()
		p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Limit: -3})
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadAll default limit", p.Events, want)
		if !p.End {
			t.Fatal("End = false after reading 25 events with the default page size")
		}
	})
	t.Run("FromBeyondAnyPosition", func(t *testing.T) {
		// A backend that keeps positions in a signed 64-bit column must
		// not wrap these to negative numbers and read from the start.
		if !s.h.Features.GaplessPositions {
			t.Skip("positions of this backend are its own; only gapless integer positions are checked")
		}
		t.Parallel()
		for _, from := range []uint64{1 << 63, math.MaxUint64} {
			p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{From: eventstore.Pos(from)})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Events) != 0 || !p.End {
				t.Fatalf("ReadAll from %d: %d events, End %v; want 0, true", from, len(p.Events), p.End)
			}
			if p.Next.Compare(eventstore.Pos(from)) < 0 {
				t.Fatalf("ReadAll from %d: Next %v goes back", from, p.Next)
			}
		}
	})
	t.Run("FiltersNoEventCanMatch", func(t *testing.T) {
		// A type or tenant no append can have written (a type outside the
		// type-name rule; a tenant id, or a type, that is not UTF-8 or
		// holds a NUL) is refused with a ValidationError, by ReadAll and
		// Subscribe alike and in every backend, rather than answered with
		// an empty page by one backend and a database error by another.
		t.Parallel()
		for _, typ := range []string{"", "Storetest.Item", "storetest.item.added\x00", "storetest.\xff"} {
			opts := eventstore.ReadAllOptions{Types: []string{TypeAdded, typ}}
			p, err := st.ReadAll(ctx, opts)
			wantValidationErr(t, fmt.Sprintf("ReadAll(Types %q)", opts.Types), len(p.Events), err, -1, "/type", "type-name")
			sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{Types: opts.Types})
			if err == nil {
				sub.Close()
			}
			wantValidationErr(t, fmt.Sprintf("Subscribe(Types %q)", opts.Types), 0, err, -1, "/type", "type-name")
		}
		if !s.h.Features.TenantFilter {
			return
		}
		for _, c := range []struct{ tenant, rule string }{{"tenant-a\x00", "nul"}, {"tenant-\xff", "utf-8"}} {
			p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{TenantID: c.tenant})
			wantValidationErr(t, fmt.Sprintf("ReadAll(TenantID %q)", c.tenant), len(p.Events), err, -1, "/tenant_id", c.rule)
		}
	})
	t.Run("SplitPositions", func(t *testing.T) {
		// Positions compare by Commit, then Prepare (ParsePosition reads
		// "C/P" for any backend). On a gapless log event n is at Pos(n):
		// From {n, n+1} is after it and From {n, n-1} before it, and a
		// subscription After {n, n-1} delivers it.
		if !s.h.Features.GaplessPositions {
			t.Skip("positions of this backend are its own; only gapless integer positions are checked")
		}
		t.Parallel()
		n := want[12].Position.Commit
		got := readAll(t, st, eventstore.ReadAllOptions{From: eventstore.Position{Commit: n, Prepare: n + 1}, Limit: 4})
		sameEvents(t, "ReadAll from just after the 13th event", got, want[13:])
		got = readAll(t, st, eventstore.ReadAllOptions{From: eventstore.Position{Commit: n, Prepare: n - 1}, Limit: 4})
		sameEvents(t, "ReadAll from just before the 13th event", got, want[12:])
		for _, c := range []struct {
			after eventstore.Position
			first int
		}{{eventstore.Position{Commit: n, Prepare: n - 1}, 12}, {eventstore.Position{Commit: n, Prepare: n + 1}, 13}} {
			sub := subscribe(t, st, eventstore.SubscribeOptions{After: c.after, BatchSize: 5})
			evs, err := sub.Next(ctx)
			sub.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 || evs[0].ID != want[c.first].ID {
				t.Fatalf("Subscribe(After %v): first event %v, want event %d at %v", c.after, evs, c.first, want[c.first].Position)
			}
		}
	})
	t.Run("FromIsInclusive", func(t *testing.T) {
		t.Parallel()
		got := readAll(t, st, eventstore.ReadAllOptions{From: want[12].Position, Limit: 4})
		sameEvents(t, "ReadAll from the 13th event", got, want[12:])
	})
	t.Run("Types", func(t *testing.T) {
		t.Parallel()
		var renames []eventstore.Event
		for _, e := range want {
			if e.Type == TypeRenamed {
				renames = append(renames, e)
			}
		}
		got := readAll(t, st, eventstore.ReadAllOptions{Types: []string{TypeRenamed}, Limit: 3})
		sameEvents(t, "ReadAll Types renamed", got, renames)
		got = readAll(t, st, eventstore.ReadAllOptions{Types: []string{TypeRenamed, TypeAdded}, Limit: 4})
		sameEvents(t, "ReadAll Types both", got, want)
		got = readAll(t, st, eventstore.ReadAllOptions{Types: []string{"storetest.none"}, Limit: 4})
		sameEvents(t, "ReadAll Types none", got, nil)
	})
	t.Run("TenantID", func(t *testing.T) {
		t.Parallel()
		if !s.h.Features.TenantFilter {
			t.Skip("backend declares no TenantFilter")
		}
		var b, bRenames []eventstore.Event
		for _, e := range want {
			if e.Meta.TenantID == "tenant-b" {
				b = append(b, e)
				if e.Type == TypeRenamed {
					bRenames = append(bRenames, e)
				}
			}
		}
		got := readAll(t, st, eventstore.ReadAllOptions{TenantID: "tenant-b", Limit: 5})
		sameEvents(t, "ReadAll tenant-b", got, b)
		got = readAll(t, st, eventstore.ReadAllOptions{TenantID: "tenant-b", Types: []string{TypeRenamed}, Limit: 2})
		sameEvents(t, "ReadAll tenant-b renamed", got, bRenames)
		got = readAll(t, st, eventstore.ReadAllOptions{TenantID: "tenant-z"})
		sameEvents(t, "ReadAll tenant-z", got, nil)
	})
}

func (s *suite) testHead(t *testing.T) {
	st := s.newStore(t)
	if got := head(t, st); !got.IsZero() {
		t.Fatalf("Head of an empty store = %v, want Start", got)
	}
	res := mustAppend(t, st, "head", eventstore.NoStream, added("a"), added("b"))
	if got, want := head(t, st), res.Position(); got != want {
		t.Fatalf("Head = %v, want %v", got, want)
	}
	if s.h.Features.GaplessPositions && res.Position() != eventstore.Pos(2) {
		t.Fatalf("position after two events = %v, want 2", res.Position())
	}
	res = mustAppend(t, st, "head-2", eventstore.NoStream, added("c"))
	if got, want := head(t, st), res.Position(); got != want {
		t.Fatalf("Head = %v, want %v", got, want)
	}
}
