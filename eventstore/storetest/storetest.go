package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// Harness is what a backend gives the suite.
type Harness struct {
	// New returns a fresh, empty store that validates against reg. It must
	// release the store's resources when t ends (t.Cleanup); the suite may
	// already have called Close, so Close must be safe to call twice.
	New func(t *testing.T, reg *schemas.Registry) eventstore.Store
	// Features declares what the backend supports; it must equal what the
	// store's Features method returns.
	Features eventstore.Features
}

// Run runs the whole suite against h, each part as a subtest.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	reg, err := Registry()
	if err != nil {
		t.Fatalf("storetest: load schemas: %v", err)
	}
	s := &suite{h: h, reg: reg}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Features", s.testFeatures},
		{"ExpectedVersion", s.testExpectedVersion},
		{"Idempotency", s.testIdempotency},
		{"Reporting", s.testReporting},
		{"Validation", s.testValidation},
		{"Limits", s.testValidationLimits},
		{"Ordering", s.testOrdering},
		{"ReadStream", s.testReadStream},
		{"ReadAll", s.testReadAll},
		{"PageBytes", s.testPageBytes},
		{"Head", s.testHead},
		{"Subscribe", s.testSubscribe},
		{"SubscribeCancel", s.testSubscribeCancel},
		{"SubscribeShared", s.testSubscribeShared},
		{"FilteredWhileWriting", s.testFilteredWhileWriting},
		{"ConcurrentOneStream", s.testConcurrentOneStream},
		{"ConcurrentManyStreams", s.testConcurrentManyStreams},
		{"Envelope", s.testEnvelope},
		{"Close", s.testClose},
		{"Edges", s.testEdges},
		{"Differential", s.testDifferential},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

type suite struct {
	h   Harness
	reg *schemas.Registry
}

func (s *suite) newStore(t *testing.T) eventstore.Store {
	t.Helper()
	st := s.h.New(t, s.reg)
	if st == nil {
		t.Fatal("storetest: Harness.New returned nil")
	}
	return st
}

// testContext bounds every test so that a hung backend fails instead of
// blocking the whole run; it is a liveness guard, not a speed assertion.
// One context covers a case's parallel subtests together: Validation's
// validate 64 MiB appends, PageBytes moves tens of megabytes, and under
// the race detector on two busy cores (go test runs two packages at once)
// those groups took over two minutes, failing in CI with "context
// deadline exceeded" while nothing hung. Ten minutes stays inside
// .ci/run's -timeout 15m per package.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const (
	tenant = "tenant-a"
	source = "storetest"
)

// added returns a valid storetest.item.added event.
func added(name string) eventstore.Event {
	return eventstore.Event{
		Type:    TypeAdded,
		Source:  source,
		Payload: mustJSON(map[string]any{"name": name}),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: tenant},
	}
}

// renamed returns a valid storetest.item.renamed v2 event.
func renamed(name string) eventstore.Event {
	return eventstore.Event{
		Type:    TypeRenamed,
		Source:  source,
		Payload: mustJSON(map[string]any{"name": name, "reason": "typo"}),
		Meta:    eventstore.Meta{SchemaVersion: 2, TenantID: tenant},
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func mustAppend(t *testing.T, st eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.Event) eventstore.AppendResult {
	t.Helper()
	res, err := st.Append(testContext(t), stream, exp, evs...)
	if err != nil {
		t.Fatalf("Append(%q, %s, %d events): %v", stream, exp, len(evs), err)
	}
	if got, want := len(res.Events), len(evs); got != want {
		t.Fatalf("Append(%q) returned %d events, want %d", stream, got, want)
	}
	if res.Stream != stream {
		t.Fatalf("Append result stream = %q, want %q", res.Stream, stream)
	}
	return res
}

// readAll reads the whole log (with the filters of opts) page by page.
func readAll(t *testing.T, st eventstore.Store, opts eventstore.ReadAllOptions) []eventstore.Event {
	t.Helper()
	ctx := testContext(t)
	var out []eventstore.Event
	for i := 0; ; i++ {
		if i > 100_000 {
			t.Fatal("ReadAll: no End after 100000 pages")
		}
		p, err := st.ReadAll(ctx, opts)
		if err != nil {
			t.Fatalf("ReadAll(%+v): %v", opts, err)
		}
		if opts.Limit > 0 && len(p.Events) > opts.Limit {
			t.Fatalf("ReadAll: page of %d events, limit %d", len(p.Events), opts.Limit)
		}
		out = append(out, p.Events...)
		if p.End {
			return out
		}
		if p.Next.Compare(opts.From) <= 0 {
			t.Fatalf("ReadAll: Next %v does not advance past From %v", p.Next, opts.From)
		}
		opts.From = p.Next
	}
}

func head(t *testing.T, st eventstore.Store) eventstore.Position {
	t.Helper()
	p, err := st.Head(testContext(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return p
}

// sameEvent fails unless got and want are the same stored event (the
// store-filled fields included; JSON compared by meaning).
func sameEvent(t *testing.T, what string, got, want eventstore.Event) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.Stream != want.Stream || got.Version != want.Version ||
		got.Position != want.Position || got.Source != want.Source || got.Target != want.Target {
		t.Fatalf("%s: got event %s %s %s@%d pos %v src %q tgt %q, want %s %s %s@%d pos %v src %q tgt %q", what,
			got.ID, got.Type, got.Stream, got.Version, got.Position, got.Source, got.Target,
			want.ID, want.Type, want.Stream, want.Version, want.Position, want.Source, want.Target)
	}
	if !got.Timestamp.Equal(want.Timestamp) {
		t.Fatalf("%s: event %s timestamp %v, want %v", what, got.ID, got.Timestamp, want.Timestamp)
	}
	if !eventstore.JSONEqual(got.Payload, want.Payload) {
		t.Fatalf("%s: event %s payload %s, want %s", what, got.ID, got.Payload, want.Payload)
	}
	gm, wm := mustJSON(got.Meta), mustJSON(want.Meta)
	if !eventstore.JSONEqual(gm, wm) {
		t.Fatalf("%s: event %s meta %s, want %s", what, got.ID, gm, wm)
	}
}

func sameEvents(t *testing.T, what string, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		sameEvent(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i])
	}
}

// wantValidation fails unless err is a *ValidationError with the given
// index, pointer and rule.
func wantValidation(t *testing.T, err error, index int, pointer, rule string) {
	t.Helper()
	if err == nil {
		t.Fatalf("append succeeded, want a validation error (index %d, %s, %s)", index, pointer, rule)
	}
	if !errors.Is(err, eventstore.ErrValidation) {
		t.Fatalf("error %v: errors.Is(err, ErrValidation) = false", err)
	}
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T): errors.As to *ValidationError failed", err, err)
	}
	if ve.Index != index || ve.Pointer != pointer || ve.Rule != rule {
		t.Fatalf("validation error index %d pointer %q rule %q, want %d %q %q (%v)", ve.Index, ve.Pointer, ve.Rule, index, pointer, rule, err)
	}
}

// wantValidationErr is wantValidation for a read: what names the call,
// n how many events it returned.
func wantValidationErr(t *testing.T, what string, n int, err error, index int, pointer, rule string) {
	t.Helper()
	var ve *eventstore.ValidationError
	if !errors.Is(err, eventstore.ErrValidation) || !errors.As(err, &ve) {
		t.Fatalf("%s: %d events, %v (%T); want a *ValidationError (%s, %s)", what, n, err, err, pointer, rule)
	}
	if ve.Index != index || ve.Pointer != pointer || ve.Rule != rule {
		t.Fatalf("%s: validation error index %d pointer %q rule %q, want %d %q %q (%v)", what, ve.Index, ve.Pointer, ve.Rule, index, pointer, rule, err)
	}
}

func wantConcurrency(t *testing.T, err error, stream string, actual int64) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("error %v: want ErrConcurrency", err)
	}
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T): errors.As to *ConcurrencyError failed", err, err)
	}
	if ce.Actual != actual || ce.Stream != stream {
		t.Fatalf("ConcurrencyError stream %q actual %d, want %q %d", ce.Stream, ce.Actual, stream, actual)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
