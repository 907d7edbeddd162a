package storetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// The differential case drives a seeded random sequence of appends
// (every kind of expected version, right and wrong, single and multi-event,
// retries whole and in part, ids reused with other content or in another
// stream, validation refusals) and reads (streams from various versions
// with limits, ReadAll pages with limits and filters, Head) through the
// backend, and checks every outcome against diffModel, a small model of the
// documented contract written here (it shares no code with any backend).
// At the end the whole log and every stream are compared with the model.
//
// Where the contract lets backends differ, the model follows the backend's
// Features: with PerStreamIDs it follows EventStoreDB's id rules as
// docs/eventstoredb.md describes them (ids are checked per stream, an
// exact expected version that no longer holds is a retry only if the ids
// stored after it are the append's, with any or stream_exists only the
// first id decides whether an append is a retry); without it, an id is
// unique in the whole log and an append whose ids are all stored with the
// same content, at consecutive versions in the order sent, returns them as
// stored, whatever its expected version.
//
// The seed is fixed so that the case is deterministic;
// EVENTSTREAM_STORETEST_SEED runs another one. A failure names the seed,
// the operation's index and the operations before it.

const (
	diffSeed = 20240611
	diffOps  = 400
)

var diffStreams = []string{"diff-0", "diff-1", "diff-2", "diff-3", "diff-4", "diff-5"}

func (s *suite) testDifferential(t *testing.T) {
	seed := uint64(diffSeed)
	if v := os.Getenv("EVENTSTREAM_STORETEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("EVENTSTREAM_STORETEST_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	d := &differ{
		t:     t,
		st:    s.newStore(t),
		seed:  seed,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		model: newDiffModel(s.h.Features),
		seen:  map[string]int{},
	}
	d.run(diffOps)
}

// diffModel is the contract's view of the store: the log in position
// order, and each stream as indexes into it. Positions and timestamps are
// the backend's own (checked for order, and for gaplessness where the
// backend declares it), taken from the append results.
type diffModel struct {
	f       eventstore.Features
	log     []eventstore.Event
	streams map[string][]int
	// byID: the log index of each id (without PerStreamIDs ids are
	// unique in the log).
	byID map[uuid.UUID]int
	// lastWrite (PerStreamIDs): where each id was last written. One id
	// may be stored more than once, in one stream or several;
	// EventStoreDB's cache of recently written ids, which decides
	// whether an append with any or stream_exists is a retry, keeps the
	// last place (IndexWriter.CheckCommit).
	lastWrite map[uuid.UUID]place
}

type place struct {
	stream  string
	version int64
}

func newDiffModel(f eventstore.Features) *diffModel {
	return &diffModel{f: f, streams: map[string][]int{}, byID: map[uuid.UUID]int{}, lastWrite: map[uuid.UUID]place{}}
}

func (m *diffModel) version(stream string) int64 { return int64(len(m.streams[stream])) }

func (m *diffModel) stream(stream string) []eventstore.Event {
	var out []eventstore.Event
	for _, i := range m.streams[stream] {
		out = append(out, m.log[i])
	}
	return out
}

func (m *diffModel) head() eventstore.Position {
	if len(m.log) == 0 {
		return eventstore.Start
	}
	return m.log[len(m.log)-1].Position
}

// outcome is what the model says an append must do.
type outcome struct {
	// write: the events are new and are appended at version from+1...
	write bool
	from  int64
	// stored: the append returns these stored events (a retry).
	stored []eventstore.Event
	err    error
	// note names a case the model tells apart, for the coverage count.
	note string
}

// sameSent reports whether a stored event has the content of e appended to
// stream (the suite sets no free-form meta).
func sameSent(stored eventstore.Event, stream string, e eventstore.Event) bool {
	return stored.Stream == stream && stored.Type == e.Type && stored.Source == e.Source && stored.Target == e.Target &&
		eventstore.JSONEqual(stored.Payload, e.Payload) && stored.Meta.SchemaVersion == e.Meta.SchemaVersion &&
		stored.Meta.TenantID == e.Meta.TenantID && stored.Meta.CorrelationID == e.Meta.CorrelationID &&
		stored.Meta.CausationID == e.Meta.CausationID && stored.Meta.Producer == e.Meta.Producer
}

// decide is the contract's verdict on a valid append.
func (m *diffModel) decide(stream string, exp eventstore.ExpectedVersion, evs []eventstore.Event) outcome {
	cur := m.version(stream)
	conflict := outcome{err: &eventstore.ConcurrencyError{Stream: stream, Expected: exp, Actual: cur}}
	if m.f.PerStreamIDs {
		return m.decidePerStream(stream, exp, evs, cur, conflict)
	}
	// Ids are unique in the log: every id stored with the same content (in
	// this stream), at consecutive versions in the order sent, is a retry,
	// whatever the expected version; an id stored with other content, only
	// some ids stored, or all stored in another order or with gaps, is a
	// duplicate.
	var first *eventstore.Event
	var stored []eventstore.Event
	for _, e := range evs {
		i, ok := m.byID[e.ID]
		if !ok {
			continue
		}
		se := m.log[i]
		if !sameSent(se, stream, e) {
			return outcome{err: &eventstore.DuplicateEventError{ID: e.ID.String(), Stream: se.Stream}}
		}
		if first == nil {
			first = &m.log[i]
		}
		stored = append(stored, se)
	}
	switch {
	case len(stored) == len(evs):
		for i := range stored {
			if stored[i].Version != stored[0].Version+int64(i) {
				o := outcome{err: &eventstore.DuplicateEventError{ID: first.ID.String(), Stream: first.Stream}}
				o.note = " (not laid out as stored)"
				return o
			}
		}
		return outcome{stored: stored}
	case len(stored) > 0:
		return outcome{err: &eventstore.DuplicateEventError{ID: first.ID.String(), Stream: first.Stream}}
	case !exp.Satisfied(cur):
		return conflict
	}
	return outcome{write: true, from: cur}
}

// decidePerStream follows docs/eventstoredb.md ("Event ids"), which
// follows EventStoreDB's commit check: ids count in this stream only.
func (m *diffModel) decidePerStream(stream string, exp eventstore.ExpectedVersion, evs []eventstore.Event, cur int64, conflict outcome) outcome {
	evsOf := m.stream(stream)
	dup := func(id uuid.UUID) outcome {
		return outcome{err: &eventstore.DuplicateEventError{ID: id.String(), Stream: stream}}
	}
	// acknowledged is the server's idempotent answer: the n events that end
	// at version last; the backend reads them back and compares them with
	// the append's, id and content, in order.
	acknowledged := func(last int64) outcome {
		n := int64(len(evs))
		if last < n {
			// The last id is stored before there is room for the
			// others: the append is not laid out as stored.
			o := dup(evs[0].ID)
			o.note = " (acknowledged too short)"
			return o
		}
		got := evsOf[last-n : last]
		for i, e := range evs {
			if got[i].ID != e.ID || !sameSent(got[i], stream, e) {
				return dup(e.ID)
			}
		}
		return outcome{stored: slices.Clone(got)}
	}
	switch exp {
	case eventstore.StreamExists, eventstore.Any:
		if exp == eventstore.StreamExists && cur == 0 {
			return conflict
		}
		// Only the first id decides whether the append is a retry: one
		// last written elsewhere (or never) makes it a new append.
		if p, ok := m.lastWrite[evs[0].ID]; !ok || p.stream != stream {
			return outcome{write: true, from: cur}
		}
		var last int64
		for _, e := range evs {
			p, ok := m.lastWrite[e.ID]
			if !ok || p.stream != stream {
				// "Corrupted idempotency": part of the batch is stored.
				return dup(evs[0].ID)
			}
			last = p.version
		}
		return acknowledged(last)
	}
	v := int64(exp)
	if exp == eventstore.NoStream {
		v = 0
	}
	switch {
	case v > cur:
		return conflict
	case v == cur:
		return outcome{write: true, from: cur}
	}
	// An exact version that no longer holds: a retry if the events stored
	// after it are the append's. If the first is not, the server calls it a
	// conflict; the backend reads where the append would have gone and
	// reports a duplicate if any of its ids is there.
	for i, e := range evs {
		k := v + int64(i) + 1
		if k <= cur && evsOf[k-1].ID == e.ID {
			continue
		}
		if i > 0 {
			return dup(evs[0].ID)
		}
		for _, se := range evsOf[v:min(cur, v+int64(len(evs)))] {
			for _, e := range evs {
				if se.ID == e.ID {
					return dup(evs[0].ID)
				}
			}
		}
		return conflict
	}
	return acknowledged(v + int64(len(evs)))
}

// apply records a written append, with the positions and timestamp the
// backend gave it.
func (m *diffModel) apply(stream string, written []eventstore.Event) {
	for _, e := range written {
		idx := len(m.log)
		m.log = append(m.log, e)
		m.streams[stream] = append(m.streams[stream], idx)
		m.byID[e.ID] = idx
		m.lastWrite[e.ID] = place{stream, e.Version}
	}
}

// matching is the model's log from position from (inclusive) that the
// filters keep.
func (m *diffModel) matching(opts eventstore.ReadAllOptions) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range m.log {
		if e.Position.Compare(opts.From) < 0 {
			continue
		}
		if opts.TenantID != "" && e.Meta.TenantID != opts.TenantID {
			continue
		}
		if len(opts.Types) > 0 && !slices.Contains(opts.Types, e.Type) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// sentAppend is an append that wrote, kept to be retried.
type sentAppend struct {
	stream string
	exp    eventstore.ExpectedVersion
	events []eventstore.Event // as sent
}

type differ struct {
	t     *testing.T
	st    eventstore.Store
	seed  uint64
	rng   *rand.Rand
	model *diffModel
	op    int
	trace []string
	sent  []sentAppend
	names int
	// seen counts the outcomes of appends, "<kind>: <outcome>", so that
	// the case can tell it still reaches each of them.
	seen map[string]int
}

func (d *differ) fail(format string, args ...any) {
	d.t.Helper()
	from := max(0, len(d.trace)-12)
	d.t.Fatalf("differential (seed %d, EVENTSTREAM_STORETEST_SEED to rerun), operation %d: %s\noperations %d..%d:\n  %s",
		d.seed, d.op, fmt.Sprintf(format, args...), from, len(d.trace)-1, strings.Join(d.trace[from:], "\n  "))
}

func (d *differ) run(n int) {
	ctx := testContext(d.t)
	for d.op = 0; d.op < n; d.op++ {
		switch r := d.rng.IntN(100); {
		case r < 38:
			d.appendNew()
		case r < 56:
			d.retry()
		case r < 60:
			d.invalid()
		case r < 76:
			d.readStream()
		case r < 93:
			d.readAll()
		default:
			d.trace = append(d.trace, "Head")
			h, err := d.st.Head(ctx)
			if err != nil {
				d.fail("Head: %v", err)
			}
			if h != d.model.head() {
				d.fail("Head = %v, want %v", h, d.model.head())
			}
		}
	}
	d.op = n
	d.trace = append(d.trace, "final check")
	d.finalCheck()
}

// newEvent is a fresh event with a deterministic id and varied content.
func (d *differ) newEvent() eventstore.Event {
	d.names++
	name := fmt.Sprintf("item-%d", d.names)
	e := added(name)
	if d.rng.IntN(3) == 0 {
		e = renamed(name)
	}
	if d.rng.IntN(2) == 0 {
		e.Meta.TenantID = "tenant-b"
	}
	if d.rng.IntN(4) == 0 {
		e.Target = "elsewhere"
	}
	if d.rng.IntN(4) == 0 {
		e.Meta.CorrelationID = "corr-" + strconv.Itoa(d.names)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(d.rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	e.ID = uuid.UUID(b)
	return e
}

// otherContent is e with the same id and other content.
func (d *differ) otherContent(e eventstore.Event) eventstore.Event {
	switch d.rng.IntN(4) {
	case 0:
		e.Payload = mustJSON(map[string]any{"name": "changed"})
		e.Type, e.Meta.SchemaVersion = TypeAdded, 1
	case 1:
		if e.Type == TypeAdded {
			e.Type, e.Meta.SchemaVersion = TypeRenamed, 1
		} else {
			e.Type, e.Meta.SchemaVersion = TypeAdded, 1
		}
		e.Payload = mustJSON(map[string]any{"name": "x"})
	case 2:
		if e.Meta.TenantID == tenant {
			e.Meta.TenantID = "tenant-b"
		} else {
			e.Meta.TenantID = tenant
		}
	default:
		e.Target += "-other"
	}
	return e
}

func (d *differ) pickStream() string { return diffStreams[d.rng.IntN(len(diffStreams))] }

// pickExpected picks an expected version of every kind for a stream at
// version cur, right more often than wrong so that streams grow.
func (d *differ) pickExpected(cur int64) eventstore.ExpectedVersion {
	switch d.rng.IntN(12) {
	case 0, 1:
		return eventstore.Any
	case 2:
		return eventstore.NoStream
	case 3:
		return eventstore.StreamExists
	case 4, 5, 6:
		return eventstore.Exact(cur)
	case 7:
		return eventstore.Exact(max(cur-1, 0))
	case 8:
		return eventstore.Exact(cur + 1)
	case 9:
		return eventstore.Exact(0)
	case 10:
		return eventstore.Exact(1 << 40)
	}
	return eventstore.Exact(math.MaxInt64)
}

func (d *differ) appendNew() {
	stream := d.pickStream()
	evs := make([]eventstore.Event, 1+d.rng.IntN(3))
	for i := range evs {
		evs[i] = d.newEvent()
	}
	d.doAppend("new", stream, d.pickExpected(d.model.version(stream)), evs)
}

// retry sends again (part of) an append that wrote, in one of the ways
// a client could.
func (d *differ) retry() {
	if len(d.sent) == 0 {
		d.appendNew()
		return
	}
	a := d.sent[d.rng.IntN(len(d.sent))]
	evs := slices.Clone(a.events)
	stream, exp := a.stream, a.exp
	kind := ""
	switch d.rng.IntN(11) {
	case 0, 1:
		kind = "same"
	case 2:
		kind = "same ids, other expected version"
		exp = d.pickExpected(d.model.version(stream))
	case 3:
		kind = "other content"
		i := d.rng.IntN(len(evs))
		evs[i] = d.otherContent(evs[i])
	case 4:
		kind = "prefix"
		evs = evs[:1+d.rng.IntN(len(evs))]
	case 5:
		kind = "suffix"
		evs = evs[d.rng.IntN(len(evs)):]
		if d.rng.IntN(2) == 0 {
			exp = d.pickExpected(d.model.version(stream))
		}
	case 6:
		kind = "stored ids then a new one"
		evs = append(evs[d.rng.IntN(len(evs)):], d.newEvent())
	case 7:
		kind = "a new id then stored ones"
		evs = append([]eventstore.Event{d.newEvent()}, evs[:1+d.rng.IntN(len(evs))]...)
		exp = d.pickExpected(d.model.version(stream))
	case 8:
		kind = "reversed"
		slices.Reverse(evs)
		if d.rng.IntN(2) == 0 {
			exp = eventstore.Any
		}
	case 9:
		kind = "same events, another stream"
		stream = diffStreams[(slices.Index(diffStreams, a.stream)+1+d.rng.IntN(len(diffStreams)-1))%len(diffStreams)]
		exp = d.pickExpected(d.model.version(stream))
	default:
		kind = "ids of two appends"
		// Mostly two appends of one stream, in either order: then every
		// id is stored in the stream, though not as this batch lays
		// them out.
		b := d.sent[d.rng.IntN(len(d.sent))]
		if d.rng.IntN(4) != 0 {
			var same []sentAppend
			for _, o := range d.sent {
				if o.stream == a.stream {
					same = append(same, o)
				}
			}
			b = same[d.rng.IntN(len(same))]
		}
		evs = append(evs, b.events...)
		seen := map[uuid.UUID]bool{}
		evs = slices.DeleteFunc(evs, func(e eventstore.Event) bool {
			defer func() { seen[e.ID] = true }()
			return seen[e.ID]
		})
		exp = eventstore.Any
	}
	d.doAppend("retry ("+kind+")", stream, exp, evs)
}

// invalid sends an append the validator refuses: nothing is written.
func (d *differ) invalid() {
	stream := d.pickStream()
	var (
		exp            = eventstore.Any
		evs            = []eventstore.Event{d.newEvent()}
		index          = -1
		pointer, rule  string
		kind           string
		expectedStream = stream
	)
	switch d.rng.IntN(4) {
	case 0:
		kind, exp, pointer, rule = "expected version below StreamExists", eventstore.ExpectedVersion(-4-d.rng.Int64N(100)), "/expected_version", "expected-version"
	case 1:
		kind, index, pointer, rule = "one id twice in the batch", 1, "/id", "unique-id"
		evs = append(evs, evs[0])
		if d.rng.IntN(2) == 0 && len(d.sent) > 0 {
			// A stored id twice: validation comes before the id lookup.
			e := d.sent[d.rng.IntN(len(d.sent))].events[0]
			evs = []eventstore.Event{e, e}
		}
	case 2:
		kind, rule = "no events", "batch-size"
		evs = nil
	default:
		kind, pointer, rule = "empty stream id", "/stream", "stream-id"
		expectedStream = ""
	}
	d.seen["invalid: ErrValidation"]++
	d.trace = append(d.trace, fmt.Sprintf("Append invalid (%s) %q %s %s", kind, expectedStream, exp, ids(evs)))
	_, err := d.st.Append(testContext(d.t), expectedStream, exp, evs...)
	var ve *eventstore.ValidationError
	if !errors.Is(err, eventstore.ErrValidation) || !errors.As(err, &ve) {
		d.fail("Append (%s): %v (%T), want a *ValidationError", kind, err, err)
	}
	if ve.Index != index || ve.Pointer != pointer || ve.Rule != rule {
		d.fail("Append (%s): validation error index %d pointer %q rule %q, want %d %q %q", kind, ve.Index, ve.Pointer, ve.Rule, index, pointer, rule)
	}
}

func ids(evs []eventstore.Event) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.ID.String()[:8])
	}
	b.WriteByte(']')
	return b.String()
}

func (d *differ) doAppend(kind, stream string, exp eventstore.ExpectedVersion, evs []eventstore.Event) {
	d.t.Helper()
	d.trace = append(d.trace, fmt.Sprintf("Append %s %q expected %s %s (stream at %d)", kind, stream, exp, ids(evs), d.model.version(stream)))
	want := d.model.decide(stream, exp, evs)
	class := kind
	if i := strings.IndexByte(kind, ' '); i > 0 {
		class = kind[:i]
	}
	switch want.err.(type) {
	case nil:
		if want.write {
			d.seen[class+": written"]++
		} else {
			d.seen[class+": original result"]++
		}
	case *eventstore.ConcurrencyError:
		d.seen[class+": ErrConcurrency"]++
	default:
		d.seen[class+": ErrDuplicateEvent"+want.note]++
	}
	res, err := d.st.Append(testContext(d.t), stream, exp, evs...)
	if want.err != nil {
		d.wantError(err, want.err)
		return
	}
	if err != nil {
		if want.write {
			d.fail("Append: %v, want it written at version %d", err, want.from+1)
		}
		d.fail("Append: %v, want the stored events %s (a retry)", err, ids(want.stored))
	}
	if res.Stream != stream || len(res.Events) != len(evs) {
		d.fail("Append: result of stream %q with %d events, want %q with %d", res.Stream, len(res.Events), stream, len(evs))
	}
	if !want.write {
		if msg := diffEvents(res.Events, want.stored); msg != "" {
			d.fail("Append (a retry): result is not the stored events: %s", msg)
		}
		return
	}
	last := d.model.head()
	for i, e := range res.Events {
		w := evs[i]
		if e.ID != w.ID || !sameSent(e, stream, w) {
			d.fail("Append: result event %d is %s %s %s %s, want %s %s %s %s", i, e.ID, e.Type, e.Stream, e.Payload, w.ID, w.Type, stream, w.Payload)
		}
		if e.Version != want.from+int64(i)+1 {
			d.fail("Append: result event %d has version %d, want %d", i, e.Version, want.from+int64(i)+1)
		}
		if e.Position.Compare(last) <= 0 {
			d.fail("Append: result event %d has position %v, not after %v", i, e.Position, last)
		}
		if d.model.f.GaplessPositions && e.Position != eventstore.Pos(uint64(len(d.model.log)+i+1)) {
			d.fail("Append: result event %d has position %v, want %d (gapless)", i, e.Position, len(d.model.log)+i+1)
		}
		if e.Timestamp.IsZero() || !e.Timestamp.Equal(res.Events[0].Timestamp) {
			d.fail("Append: result event %d has timestamp %v, event 0 %v: want one timestamp per append", i, e.Timestamp, res.Events[0].Timestamp)
		}
		last = e.Position
	}
	d.model.apply(stream, res.Events)
	d.sent = append(d.sent, sentAppend{stream: stream, exp: exp, events: evs})
}

// wantError fails unless err is of want's class with want's details.
func (d *differ) wantError(err, want error) {
	d.t.Helper()
	switch w := want.(type) {
	case *eventstore.ConcurrencyError:
		var ce *eventstore.ConcurrencyError
		if !errors.Is(err, eventstore.ErrConcurrency) || !errors.As(err, &ce) {
			d.fail("Append: %v (%T), want a ConcurrencyError (actual %d)", err, err, w.Actual)
		}
		if ce.Stream != w.Stream || ce.Expected != w.Expected || ce.Actual != w.Actual {
			d.fail("Append: ConcurrencyError stream %q expected %s actual %d, want %q %s %d", ce.Stream, ce.Expected, ce.Actual, w.Stream, w.Expected, w.Actual)
		}
	case *eventstore.DuplicateEventError:
		var de *eventstore.DuplicateEventError
		if !errors.Is(err, eventstore.ErrDuplicateEvent) || !errors.As(err, &de) {
			d.fail("Append: %v (%T), want a DuplicateEventError (id %s in %q)", err, err, w.ID, w.Stream)
		}
		if de.ID != w.ID || de.Stream != w.Stream {
			d.fail("Append: DuplicateEventError id %s stream %q, want %s %q", de.ID, de.Stream, w.ID, w.Stream)
		}
	default:
		d.fail("model: unexpected error %T", want)
	}
}

func (d *differ) readStream() {
	stream := d.pickStream()
	cur := d.model.version(stream)
	from := d.rng.Int64N(cur+3) - 1 // -1 .. cur+1
	limit := []int{-1, 0, 0, 1, 2, 3, 5}[d.rng.IntN(7)]
	d.trace = append(d.trace, fmt.Sprintf("ReadStream %q from %d limit %d (stream at %d)", stream, from, limit, cur))
	got, err := d.st.ReadStream(testContext(d.t), stream, from, limit)
	if cur == 0 {
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			d.fail("ReadStream of a stream with no events: %d events, %v; want ErrStreamNotFound", len(got), err)
		}
		return
	}
	if err != nil {
		d.fail("ReadStream: %v", err)
	}
	want := d.model.stream(stream)[min(max(from, 1)-1, cur):]
	if limit > 0 && len(want) > limit {
		want = want[:limit]
	}
	if msg := diffEvents(got, want); msg != "" {
		d.fail("ReadStream: %s", msg)
	}
}

func (d *differ) readAll() {
	opts := eventstore.ReadAllOptions{Limit: []int{0, 1, 2, 3, 7}[d.rng.IntN(5)]}
	switch r := d.rng.IntN(10); {
	case r < 3 || len(d.model.log) == 0:
	case r < 9:
		opts.From = d.model.log[d.rng.IntN(len(d.model.log))].Position
	default:
		if d.model.f.GaplessPositions {
			// Past the head: an empty page (positions of the other
			// backends are their own, and one between two events is
			// not a place in their log).
			opts.From = eventstore.Pos(uint64(len(d.model.log)) + 1 + d.rng.Uint64N(3))
		}
	}
	switch d.rng.IntN(6) {
	case 1:
		opts.Types = []string{TypeAdded}
	case 2:
		opts.Types = []string{TypeRenamed}
	case 3:
		opts.Types = []string{TypeRenamed, TypeAdded}
	case 4:
		opts.Types = []string{"storetest.none"}
	}
	opts.TenantID = []string{"", "", tenant, "tenant-b", "tenant-z"}[d.rng.IntN(5)]
	all := d.rng.IntN(3) == 0
	d.trace = append(d.trace, fmt.Sprintf("ReadAll %+v (to the end: %v)", opts, all))
	want := d.model.matching(opts)
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultPageSize
	}
	ctx := testContext(d.t)
	for page := 0; ; page++ {
		if page > len(d.model.log)+2 {
			d.fail("ReadAll: no End after %d pages", page)
		}
		p, err := d.st.ReadAll(ctx, opts)
		if err != nil {
			d.fail("ReadAll page %d (%+v): %v", page, opts, err)
		}
		n := min(limit, len(want))
		if len(p.Events) != n {
			d.fail("ReadAll page %d (%+v): %d events, want %d", page, opts, len(p.Events), n)
		}
		if msg := diffEvents(p.Events, want[:n]); msg != "" {
			d.fail("ReadAll page %d (%+v): %s", page, opts, msg)
		}
		want = want[n:]
		if p.End && len(want) > 0 {
			d.fail("ReadAll page %d (%+v): End, but %d more events match", page, opts, len(want))
		}
		if n < limit && !p.End {
			d.fail("ReadAll page %d (%+v): %d events of %d and not End", page, opts, n, limit)
		}
		// Next continues after the page, and skips no event that matches.
		if p.Next.Compare(opts.From) < 0 || (n > 0 && p.Next.Compare(p.Events[n-1].Position) <= 0) {
			d.fail("ReadAll page %d (%+v): Next %v is not after the page", page, opts, p.Next)
		}
		if len(want) > 0 && p.Next.Compare(want[0].Position) > 0 {
			d.fail("ReadAll page %d (%+v): Next %v skips the matching event at %v", page, opts, p.Next, want[0].Position)
		}
		if p.End || !all {
			return
		}
		opts.From = p.Next
	}
}

func (d *differ) finalCheck() {
	ctx := testContext(d.t)
	got := readAll(d.t, d.st, eventstore.ReadAllOptions{Limit: 50})
	if msg := diffEvents(got, d.model.log); msg != "" {
		d.fail("the whole log: %s", msg)
	}
	checkLogOrder(d.t, d.model.f.GaplessPositions, got)
	for _, stream := range diffStreams {
		want := d.model.stream(stream)
		evs, err := d.st.ReadStream(ctx, stream, 0, 0)
		if len(want) == 0 {
			if !errors.Is(err, eventstore.ErrStreamNotFound) {
				d.fail("ReadStream(%q), never written: %d events, %v; want ErrStreamNotFound", stream, len(evs), err)
			}
			continue
		}
		if err != nil {
			d.fail("ReadStream(%q): %v", stream, err)
		}
		if msg := diffEvents(evs, want); msg != "" {
			d.fail("stream %q: %s", stream, msg)
		}
	}
	if h, err := d.st.Head(ctx); err != nil || h != d.model.head() {
		d.fail("Head = %v, %v; want %v", h, err, d.model.head())
	}
	// The generator must keep reaching every outcome (a change to it,
	// or to the seed, could quietly stop testing one).
	keys := make([]string, 0, len(d.seen))
	for k := range d.seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %d", k, d.seen[k])
	}
	d.t.Logf("differential (seed %d): %d operations, %d events in %d streams; appends:%s", d.seed, diffOps, len(d.model.log), len(d.model.streams), b.String())
	must := []string{"new: written", "new: ErrConcurrency", "retry: original result", "retry: ErrDuplicateEvent", "invalid: ErrValidation"}
	if d.model.f.PerStreamIDs {
		// Stored ids are not a retry in every place: a retry may be a
		// conflict or a new write, and the server may acknowledge ids
		// stored in another order.
		must = append(must, "retry: ErrConcurrency", "retry: written", "retry: ErrDuplicateEvent (acknowledged too short)")
	} else {
		must = append(must, "retry: ErrDuplicateEvent (not laid out as stored)")
	}
	if d.seed == diffSeed {
		for _, k := range must {
			if d.seen[k] == 0 {
				d.fail("no append had the outcome %q: the generator no longer exercises it", k)
			}
		}
	}
}

// diffEvents describes the first difference between got and want (stored
// events, the store-filled fields included), or returns "".
func diffEvents(got, want []eventstore.Event) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events %s, want %d %s", len(got), ids(got), len(want), ids(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Type != w.Type || g.Stream != w.Stream || g.Version != w.Version ||
			g.Position != w.Position || g.Source != w.Source || g.Target != w.Target || !g.Timestamp.Equal(w.Timestamp) {
			return fmt.Sprintf("event %d is %s %s %s@%d pos %v src %q tgt %q at %v, want %s %s %s@%d pos %v src %q tgt %q at %v", i,
				g.ID, g.Type, g.Stream, g.Version, g.Position, g.Source, g.Target, g.Timestamp,
				w.ID, w.Type, w.Stream, w.Version, w.Position, w.Source, w.Target, w.Timestamp)
		}
		if !eventstore.JSONEqual(g.Payload, w.Payload) {
			return fmt.Sprintf("event %d (%s) payload %s, want %s", i, g.ID, g.Payload, w.Payload)
		}
		if gm, wm := mustJSON(g.Meta), mustJSON(w.Meta); !eventstore.JSONEqual(gm, wm) {
			return fmt.Sprintf("event %d (%s) meta %s, want %s", i, g.ID, gm, wm)
		}
	}
	return ""
}
