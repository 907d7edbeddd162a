package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

func copyRegistry(t *testing.T) *schemas.Registry {
	t.Helper()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func memStore(t *testing.T, reg *schemas.Registry) *memory.Store {
	t.Helper()
	st, err := memory.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func copyEvent(name string, i int) eventstore.Event {
	e := eventstore.Event{
		ID:      uuid.New(),
		Type:    storetest.TypeAdded,
		Source:  "copy-test",
		Payload: json.RawMessage(fmt.Sprintf(`{"name":%q,"quantity":%d}`, name, i)),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: fmt.Sprintf("tenant-%d", i%3), CorrelationID: fmt.Sprint("c", i)},
	}
	if i%4 == 1 {
		e.Type = storetest.TypeRenamed
		e.Payload = json.RawMessage(fmt.Sprintf(`{"name":%q,"reason":"r%d"}`, name, i))
		e.Meta.SchemaVersion = 2
		e.Target = "somewhere"
		e.Meta.Extra = map[string]any{"n": i, "tags": []any{"x", i}}
	}
	return e
}

// fillForCopy writes a history with interleaved streams, single and
// multi-event appends, and returns it as the source reads it.
func fillForCopy(t *testing.T, st eventstore.Store, appends int) []eventstore.Event {
	t.Helper()
	i := 0
	for a := range appends {
		n := 1 + a%4
		batch := make([]eventstore.Event, n)
		for j := range batch {
			batch[j] = copyEvent(fmt.Sprint("e", i), i)
			i++
		}
		if _, err := st.Append(t.Context(), fmt.Sprintf("copy-%d", a%5), eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	return readLog(t, st)
}

func readLog(t *testing.T, st eventstore.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	opts := eventstore.ReadAllOptions{Limit: 5000}
	for {
		p, err := st.ReadAll(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Events...)
		if p.End {
			return out
		}
		opts.From = p.Next
	}
}

// sameLog fails unless got holds the events of want, in want's order, with
// the same ids, streams, versions and content (positions and timestamps are
// the target's own).
func sameLog(t *testing.T, what string, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Stream != w.Stream || g.Version != w.Version || g.Type != w.Type || g.Source != w.Source || g.Target != w.Target {
			t.Fatalf("%s[%d]: %s %s@%d %s, want %s %s@%d %s", what, i, g.ID, g.Stream, g.Version, g.Type, w.ID, w.Stream, w.Version, w.Type)
		}
		if !eventstore.JSONEqual(g.Payload, w.Payload) {
			t.Fatalf("%s[%d]: payload %s, want %s", what, i, g.Payload, w.Payload)
		}
		gm, _ := json.Marshal(g.Meta)
		wm, _ := json.Marshal(w.Meta)
		if !eventstore.JSONEqual(gm, wm) {
			t.Fatalf("%s[%d]: meta %s, want %s", what, i, gm, wm)
		}
		if i > 0 && got[i-1].Position.Compare(g.Position) >= 0 {
			t.Fatalf("%s: positions %v then %v", what, got[i-1].Position, g.Position)
		}
	}
}

func TestCopy_KeepsIDsStreamsVersionsAndOrder(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	src, dst := memStore(t, reg), memStore(t, reg)
	want := fillForCopy(t, src, 40)

	var calls []eventstore.CopyProgress
	// Small pages and batches: pages end inside appends, runs are split.
	got, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{
		PageSize: 7, MaxBatchBytes: 700,
		Progress: func(p eventstore.CopyProgress) { calls = append(calls, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	sameLog(t, "target", readLog(t, dst), want)
	if got.Events != int64(len(want)) || got.Position != want[len(want)-1].Position {
		t.Fatalf("final progress %+v, want %d events up to %v", got, len(want), want[len(want)-1].Position)
	}
	if len(calls) < len(want)/7 {
		t.Fatalf("progress called %d times for %d pages", len(calls), (len(want)+6)/7)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Events <= calls[i-1].Events || calls[i].Position.Compare(calls[i-1].Position) <= 0 {
			t.Fatalf("progress went from %+v to %+v", calls[i-1], calls[i])
		}
	}
	if got.Appends < int64(len(want))/4 || got.Appends > int64(len(want)) {
		t.Fatalf("%d appends for %d events in runs of up to 4", got.Appends, len(want))
	}
}

func TestCopy_IsIdempotentAndResumes(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	src, dst := memStore(t, reg), memStore(t, reg)
	want := fillForCopy(t, src, 20)

	// How many appends a copy into an empty target sends: one per run.
	fresh := memStore(t, reg)
	clean, err := eventstore.Copy(t.Context(), src, fresh, eventstore.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameLog(t, "fresh target", readLog(t, fresh), want)

	// An interrupted copy: the target has the first events, and they end
	// inside a run (one stream, consecutive versions) that the copy sends
	// as one append. The target refuses that append as a whole (some of
	// its ids are stored), so the copy appends the run's stored events one
	// by one (retries), then the rest of the run as one append.
	const cut = 7
	if want[cut-1].Stream != want[cut].Stream || want[cut].Version != want[cut-1].Version+1 {
		t.Fatalf("events %d and %d (%s@%d, %s@%d) are not one run: the test no longer cuts a run",
			cut-1, cut, want[cut-1].Stream, want[cut-1].Version, want[cut].Stream, want[cut].Version)
	}
	run := 1 // the length of the run the cut falls in
	for i := cut - 1; i > 0 && want[i-1].Stream == want[i].Stream && want[i].Version == want[i-1].Version+1; i-- {
		run++
	}
	stored := run // of them, those before the cut
	for i := cut; i < len(want) && want[i].Stream == want[i-1].Stream && want[i].Version == want[i-1].Version+1; i++ {
		run++
	}
	if _, err := eventstore.Import(t.Context(), dst, want[:cut], 0); err != nil {
		t.Fatal(err)
	}
	resumed, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{})
	if err != nil {
		t.Fatalf("copy over a partly copied target: %v", err)
	}
	sameLog(t, "target after the completed copy", readLog(t, dst), want)
	// The refused append, one per stored event of the run, and one for
	// the rest of it.
	if resumed.Appends != clean.Appends+int64(stored)+1 {
		t.Fatalf("copy over a target cut after %d events of a run of %d sent %d appends; into an empty target %d: want %d (the stored events one by one, then the rest)",
			stored, run, resumed.Appends, clean.Appends, clean.Appends+int64(stored)+1)
	}
	sameLog(t, "target after the completed copy, against the fresh target", readLog(t, dst), readLog(t, fresh))

	// Again, whole: nothing new is written.
	p, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{PageSize: 9})
	if err != nil {
		t.Fatal(err)
	}
	if p.Events != int64(len(want)) {
		t.Fatalf("second copy saw %d events, want %d", p.Events, len(want))
	}
	sameLog(t, "target after a second copy", readLog(t, dst), want)

	// Resumed from a progress position: only what follows.
	p, err = eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{After: want[10].Position})
	if err != nil {
		t.Fatal(err)
	}
	if p.Events != int64(len(want)-11) {
		t.Fatalf("resumed copy saw %d events, want %d", p.Events, len(want)-11)
	}
	sameLog(t, "target after a resumed copy", readLog(t, dst), want)

	// New source events are copied by a resumed run.
	more, err := src.Append(t.Context(), "copy-new", eventstore.NoStream, copyEvent("late", 99))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{After: p.Position}); err != nil {
		t.Fatal(err)
	}
	sameLog(t, "target after copying new events", readLog(t, dst), append(want, more.Events...))
}

func TestCopy_RefusesADivergedTarget(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	ctx := t.Context()

	t.Run("OtherEventAtTheVersion", func(t *testing.T) {
		t.Parallel()
		src, dst := memStore(t, reg), memStore(t, reg)
		want := fillForCopy(t, src, 10)
		if _, err := dst.Append(ctx, want[0].Stream, eventstore.NoStream, copyEvent("other", 1000)); err != nil {
			t.Fatal(err)
		}
		_, err := eventstore.Copy(ctx, src, dst, eventstore.CopyOptions{})
		if !errors.Is(err, eventstore.ErrConcurrency) || !strings.Contains(err.Error(), want[0].Stream) {
			t.Fatalf("copy into a diverged target: %v, want ErrConcurrency naming %s", err, want[0].Stream)
		}
	})
	t.Run("SameIDOtherContent", func(t *testing.T) {
		t.Parallel()
		src, dst := memStore(t, reg), memStore(t, reg)
		want := fillForCopy(t, src, 10)
		changed := want[0]
		changed.Payload = json.RawMessage(`{"name":"changed"}`)
		changed.Type, changed.Meta.SchemaVersion, changed.Target, changed.Meta.Extra = storetest.TypeAdded, 1, "", nil
		if _, err := eventstore.Import(ctx, dst, []eventstore.Event{changed}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.Copy(ctx, src, dst, eventstore.CopyOptions{}); !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Fatalf("copy onto the same id with other content: %v, want ErrDuplicateEvent", err)
		}
	})
	t.Run("NoVersion", func(t *testing.T) {
		t.Parallel()
		dst := memStore(t, reg)
		e := copyEvent("x", 0)
		e.Stream = "s"
		if _, err := eventstore.Import(ctx, dst, []eventstore.Event{e}, 0); err == nil {
			t.Fatal("Import of an event without a stream version succeeded")
		}
	})
	t.Run("InvalidEvent", func(t *testing.T) {
		t.Parallel()
		dst := memStore(t, reg)
		e := copyEvent("x", 0)
		e.Stream, e.Version, e.Payload = "s", 1, json.RawMessage(`{"quantity":1}`)
		_, err := eventstore.Import(ctx, dst, []eventstore.Event{e}, 0)
		if !errors.Is(err, eventstore.ErrValidation) {
			t.Fatalf("Import of an invalid event: %v, want ErrValidation", err)
		}
	})
}

// TestCopy_RoundTripPostgresStandIn moves a history of 100,000 events from
// PostgreSQL to the EventStoreDB protocol stand-in (NOT EventStoreDB) and
// back into a fresh PostgreSQL schema, and checks ids, streams, versions,
// content and order at each step.
func TestCopy_RoundTripPostgresStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 events three times")
	}
	t.Parallel()
	reg := copyRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	openPG := func() *postgres.Store {
		st, err := postgres.New(ctx, pgtest.Pool(t), reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	src := openPG()
	start := time.Now()
	step := func(what string) {
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
		start = time.Now()
	}
	const total, streams, batch = 100_000, 1000, 50
	next := make([]int64, streams)
	for a := range total / batch {
		s := a % streams
		evs := make([]eventstore.Event, batch)
		for j := range evs {
			evs[j] = copyEvent(fmt.Sprint("e", a*batch+j), a*batch+j)
		}
		if _, err := src.Append(ctx, fmt.Sprintf("rt-%04d", s), eventstore.Exact(next[s]), evs...); err != nil {
			t.Fatal(err)
		}
		next[s] += batch
	}
	step("write 100,000 events to PostgreSQL")
	want := readLog(t, src)
	step("read them back")
	if len(want) != total {
		t.Fatalf("source has %d events, want %d", len(want), total)
	}

	srv, err := esdbtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	mid, err := esdb.New(ctx, srv.URL(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mid.Close() })
	p, err := eventstore.Copy(ctx, src, mid, eventstore.CopyOptions{PageSize: 5000})
	if err != nil {
		t.Fatalf("PostgreSQL → stand-in: %v", err)
	}
	if p.Events != total {
		t.Fatalf("PostgreSQL → stand-in copied %d events", p.Events)
	}
	step("copy PostgreSQL → stand-in")

	// The stand-in's log is compared as the copy back reads it: every
	// page its ReadAll returns is kept, and the pages together must be
	// want. A separate read of the whole log first would send the same
	// 100,000 events over gRPC once more (about a quarter of the test
	// under -race).
	back := openPG()
	recorder := &recordingReader{Store: mid}
	if _, err := eventstore.Copy(ctx, recorder, back, eventstore.CopyOptions{PageSize: 5000}); err != nil {
		t.Fatalf("stand-in → PostgreSQL: %v", err)
	}
	if recorder.reads < 2 || !recorder.end {
		t.Fatalf("the copy back read the stand-in in %d pages, the last one the end: %v", recorder.reads, recorder.end)
	}
	sameLog(t, "stand-in", recorder.log, want)
	step("copy stand-in → PostgreSQL, comparing the stand-in's log as read")
	got := readLog(t, back)
	sameLog(t, "PostgreSQL after the round trip", got, want)
	// PostgreSQL positions are gapless: the round trip gives each event
	// the position it had.
	for i := range got {
		if got[i].Position != want[i].Position {
			t.Fatalf("event %d at position %v after the round trip, was %v", i, got[i].Position, want[i].Position)
		}
	}
}

// recordingReader is a store whose ReadAll pages are kept, in order.
type recordingReader struct {
	eventstore.Store
	log   []eventstore.Event
	reads int
	end   bool // the last page read was the end of the log
}

func (r *recordingReader) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.Page, error) {
	p, err := r.Store.ReadAll(ctx, opts)
	if err == nil {
		r.reads++
		r.log = append(r.log, p.Events...)
		r.end = p.End
	}
	return p, err
}

// TestImport_RefusesAnEventWithoutIDOrVersion: an event without its id
// or its stream version is refused before anything is written, also when
// it is not in the first append. An event without an id used to be
// written under an id the store made up, then reported as an error, and
// every later run of the import found the stream diverged.
func TestImport_RefusesAnEventWithoutIDOrVersion(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	for _, c := range []struct {
		name, pointer, rule string
		spoil               func(*eventstore.Event)
	}{
		{"NoID", "/id", "required", func(e *eventstore.Event) { e.ID = uuid.Nil }},
		{"NoVersion", "/version", "minimum", func(e *eventstore.Event) { e.Version = 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dst := memStore(t, reg)
			events := make([]eventstore.Event, 3)
			for i := range events {
				events[i] = copyEvent(fmt.Sprint("x", i), 0)
				events[i].Stream, events[i].Version = fmt.Sprint("s", i), 1
			}
			spoilt := events[2]
			c.spoil(&spoilt)
			_, err := eventstore.Import(t.Context(), dst, []eventstore.Event{events[0], events[1], spoilt}, 0)
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || ve.Index != 2 || ve.Pointer != c.pointer || ve.Rule != c.rule {
				t.Fatalf("Import with event 2 spoilt: %v, want a ValidationError for event 2 at %s (%s)", err, c.pointer, c.rule)
			}
			if h, err := dst.Head(t.Context()); err != nil || !h.IsZero() {
				t.Fatalf("head after a refused import = %v, %v; want nothing written", h, err)
			}
			// Given what it lacked, the same import goes through.
			if _, err := eventstore.Import(t.Context(), dst, events, 0); err != nil {
				t.Fatal(err)
			}
			sameLog(t, "target", readLog(t, dst), events)
		})
	}
}

// TestImport_SplitsAtMaxAppendBytes: a batch bound above MaxAppendBytes
// is held to it. Import used to send a stream's events as one append of
// up to the caller's bound, which the store refused whole (batch-bytes)
// once it passed MaxAppendBytes, though every event was valid.
func TestImport_SplitsAtMaxAppendBytes(t *testing.T) {
	t.Parallel()
	dst := memStore(t, copyRegistry(t))
	note := strings.Repeat("n", eventstore.MaxEventBytes-1000)
	n := eventstore.MaxAppendBytes/eventstore.MaxEventBytes + 2
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = copyEvent("x", 0)
		events[i].Stream, events[i].Version = "big", int64(i+1)
		events[i].Payload = json.RawMessage(`{"name":"x","note":"` + note + `"}`)
	}
	appends, err := eventstore.Import(t.Context(), dst, events, 1<<30)
	if err != nil {
		t.Fatalf("Import of %d events near MaxEventBytes with a 1 GiB batch bound: %v", n, err)
	}
	if appends < 2 {
		t.Fatalf("Import sent %d appends, want at least 2", appends)
	}
	if h, err := dst.Head(t.Context()); err != nil || h != eventstore.Pos(uint64(n)) {
		t.Fatalf("head = %v, %v; want %d", h, err, n)
	}
}
