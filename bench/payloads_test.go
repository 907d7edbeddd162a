package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

func validator(t testing.TB) *eventstore.Validator {
	t.Helper()
	v, err := eventstore.NewValidator(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every generated payload, at every size, must pass the store's own
// write-time validation: otherwise the bench measures refusals.
func TestPayloadsPassValidation(t *testing.T) {
	t.Parallel()
	v := validator(t)
	for _, size := range []int{0, 300, 2_000, 20_000} {
		pool, err := newPayloadPool(UniformMix(), size, 8, 7)
		if err != nil {
			t.Fatal(err)
		}
		wl := &workload{seed: 7, perApp: 1, payloads: pool, prefix: "p", tenants: []string{"t"}}
		for _, samples := range pool.byType {
			for _, s := range samples {
				e := wl.batch(1).events[0]
				e.Type, e.Source, e.Payload, e.Meta.SchemaVersion = s.gen.typ, s.gen.source, s.payload, s.gen.version
				if _, err := v.Check("stream-1", eventstore.Any, []eventstore.Event{e}); err != nil {
					t.Fatalf("size %d: %s payload refused: %v\n%s", size, s.gen.typ, err, s.payload)
				}
			}
		}
	}
}

// The domain mix is "every type of the domain": a type added to schemas/
// needs a generator here, and a renamed one must not linger.
func TestEveryDomainTypeHasAGenerator(t *testing.T) {
	t.Parallel()
	reg := schemas.MustDefault()
	for _, g := range generators {
		if !reg.Has(g.typ, g.version) {
			t.Errorf("generator for %s v%d: no such schema", g.typ, g.version)
		}
		if got := reg.Latest(g.typ); got != g.version {
			t.Errorf("generator for %s writes v%d, the latest schema is v%d", g.typ, g.version, got)
		}
	}
	known := map[string]bool{}
	for _, typ := range KnownTypes() {
		known[typ] = true
	}
	for _, typ := range reg.Types() {
		if !known[typ] {
			t.Errorf("event type %s has no payload generator in bench/payloads.go", typ)
		}
	}
}

// EventSize grows the types that can grow; the mean follows the target.
func TestEventSizeGrowsPayloads(t *testing.T) {
	t.Parallel()
	small, err := newPayloadPool(UniformMix(), 0, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	big, err := newPayloadPool(Mix{{Type: "course.outline.created", Weight: 1}, {Type: "mission.created", Weight: 1}}, 8_000, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	if small.avgSize > 1_000 {
		t.Errorf("natural mean payload %.0f bytes, want a few hundred", small.avgSize)
	}
	if big.avgSize < 6_000 || big.avgSize > 10_000 {
		t.Errorf("mean payload with size 8000: %.0f bytes", big.avgSize)
	}
}

func TestParseMix(t *testing.T) {
	t.Parallel()
	m, err := ParseMix("course.lesson.generated=3, distribution.viewed")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Mix{{"course.lesson.generated", 3}, {"distribution.viewed", 1}}); !reflect.DeepEqual(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	m, err = ParseMix("mission.*=2")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) < 5 {
		t.Errorf("mission.* gave %v", m)
	}
	for _, tw := range m {
		if !strings.HasPrefix(tw.Type, "mission.") || tw.Weight != 2 {
			t.Errorf("mission.*=2 gave %v", tw)
		}
	}
	for _, s := range []string{"", "domain", "uniform"} {
		if m, err := ParseMix(s); err != nil || len(m) != len(generators) {
			t.Errorf("ParseMix(%q) = %d types, %v", s, len(m), err)
		}
	}
	for _, bad := range []string{"no.such.type", "course.lesson.generated=0", "course.lesson.generated=x", "nothing.*", ","} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	if back, err := ParseMix(m.String()); err != nil || !reflect.DeepEqual(back, m) {
		t.Errorf("String does not round-trip: %q → %v, %v", m.String(), back, err)
	}
}

// The same sequence number gives the same events in both phases.
func TestWorkloadIsDeterministic(t *testing.T) {
	t.Parallel()
	cfg := Config{Seed: 3, EventsPerAppend: 5, Streams: 4}
	pool, err := newPayloadPool(DomainMix(), 0, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newWorkload(cfg, "w", pool), newWorkload(cfg, "w", pool)
	x, y := a.batch(42), b.batch(42)
	if !reflect.DeepEqual(x, y) {
		t.Fatal("batch 42 differs between two workloads of one seed")
	}
	if z := a.batch(43); z.events[0].ID == x.events[0].ID {
		t.Error("batches 42 and 43 share an event id")
	}
	if x.streamIdx < 0 || x.streamIdx >= 4 || x.stream != "w-"+strconv.Itoa(x.streamIdx) {
		t.Errorf("stream %q (index %d) out of 4 shared streams", x.stream, x.streamIdx)
	}
	if len(x.events) != 5 || x.events[1].Meta.CausationID != x.events[0].ID.String() {
		t.Errorf("events of a batch should chain causation: %+v", x.events[1].Meta)
	}
}

func TestConfigRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Scenario: "nope"},
		{Scenario: "single", Writers: -1},
		{Scenario: "single", Writers: 1000},
		{Scenario: "batch", EventsPerAppend: eventstore.MaxBatchEvents + 1},
		{Scenario: "single", Duration: -time.Second},
		{Scenario: "single", EventSize: eventstore.MaxEventBytes},
		{Scenario: "project", Rate: -5},
		{Scenario: "replay", LogEvents: -1},
		{Scenario: "read", StreamEvents: -1},
		{Scenario: "single", ExactVersions: true},
		{Scenario: "single", Rounds: -1},
		{Scenario: "single", Rounds: 101},
		{Scenario: "project", Rounds: 3},
		{Scenario: "replay", Rounds: 2},
		{Scenario: "single", Mix: Mix{}},
		{Scenario: "single", Mix: Mix{{Type: "no.such.type", Weight: 1}}},
		{Scenario: "single", Mix: Mix{{Type: "distribution.viewed", Weight: 0}}},
	} {
		if err := Check(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: got %v, want ErrConfig", c, err)
		}
	}
	if err := Check(Config{Scenario: "single", Rounds: 101}); err == nil || !strings.Contains(err.Error(), "0 (the preset) to 100") {
		t.Errorf("rounds 101: %v, want the accepted range in the message", err)
	}
	if err := Check(Config{Scenario: "project", Rounds: 3}); err == nil || !strings.Contains(err.Error(), "single, batch, hot and read only") {
		t.Errorf("project with rounds: %v, want it to say which scenarios take rounds", err)
	}
	for _, c := range []Config{
		{Scenario: "single", Rounds: 100},
		{Scenario: "read", Rounds: 1},
		{Scenario: "project", Rounds: 1}, // ours, then raw: what project does
		{Scenario: "replay", Rounds: 1},
		{Scenario: "single", Mix: Mix{{Type: "distribution.viewed", Weight: 2}}},
	} {
		if err := Check(c); err != nil {
			t.Errorf("%+v: refused: %v", c, err)
		}
	}
	if c, _ := (Config{Scenario: "read"}).resolve(); c.Rounds != 3 {
		t.Errorf("read preset: %d rounds, want 3", c.Rounds)
	}
	c, err := Config{Scenario: "hot", Events: 100}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.Writers != 16 || c.Streams != 10 || !c.ExactVersions || c.EventsPerAppend != 1 || c.Duration != 0 || c.Events != 100 {
		t.Errorf("hot preset with Events: %+v", c)
	}
	c, _ = Config{Scenario: "batch"}.resolve()
	if c.Writers != 4 || c.EventsPerAppend != 100 || c.Duration != 10*time.Second {
		t.Errorf("batch preset: %+v", c)
	}
}

// Event ids are time-ordered by default, as the domain makes them: version
// 7, the later append's ids after the earlier one's. RandomIDs gives
// version 4 ids.
func TestWorkloadEventIDs(t *testing.T) {
	t.Parallel()
	pool, err := newPayloadPool(DomainMix(), 0, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	wl := newWorkload(Config{Seed: 3, EventsPerAppend: 4}, "w", pool)
	early, late := wl.batch(7), wl.batch(8)
	seen := map[uuid.UUID]bool{}
	for _, b := range []batch{early, late} {
		for _, e := range b.events {
			if e.ID.Version() != 7 || e.ID.Variant() != uuid.RFC4122 {
				t.Fatalf("event id %s: version %d, want an RFC 4122 version 7 id", e.ID, e.ID.Version())
			}
			if seen[e.ID] {
				t.Fatalf("event id %s drawn twice", e.ID)
			}
			seen[e.ID] = true
		}
	}
	for _, e := range early.events {
		for _, f := range late.events {
			if bytes.Compare(e.ID[:], f.ID[:]) >= 0 {
				t.Fatalf("id %s of append 7 does not sort before %s of append 8", e.ID, f.ID)
			}
		}
	}

	random := newWorkload(Config{Seed: 3, EventsPerAppend: 4, RandomIDs: true}, "w", pool)
	for _, e := range random.batch(7).events {
		if e.ID.Version() != 4 || e.ID.Variant() != uuid.RFC4122 {
			t.Fatalf("random event id %s: version %d, want an RFC 4122 version 4 id", e.ID, e.ID.Version())
		}
	}
}

// RandomIDs changes the event ids and nothing else: with the same seed, a
// run with random ids writes the same streams, types, payloads and meta as
// a time-ordered run, so that the two compare only the ids.
func TestRandomIDsChangeOnlyTheIDs(t *testing.T) {
	t.Parallel()
	pool, err := newPayloadPool(DomainMix(), 0, 8, 5)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Seed: 5, EventsPerAppend: 6, Streams: 7}
	ordered := newWorkload(cfg, "w", pool)
	cfg.RandomIDs = true
	random := newWorkload(cfg, "w", pool)
	for seq := range int64(50) {
		a, b := ordered.batch(seq), random.batch(seq)
		if a.stream != b.stream || a.streamIdx != b.streamIdx {
			t.Fatalf("append %d: stream %q (%d) with ordered ids, %q (%d) with random ids", seq, a.stream, a.streamIdx, b.stream, b.streamIdx)
		}
		for i := range a.events {
			x, y := a.events[i], b.events[i]
			if x.ID == y.ID || x.ID.Version() != 7 || y.ID.Version() != 4 {
				t.Fatalf("append %d event %d: ids %s and %s, want a version 7 and a version 4 id", seq, i, x.ID, y.ID)
			}
			x.ID, y.ID = uuid.UUID{}, uuid.UUID{}
			x.Meta.CausationID, y.Meta.CausationID = "", "" // the previous event's id
			if !reflect.DeepEqual(x, y) {
				t.Fatalf("append %d event %d differs beyond its ids:\nordered: %s %s %+v\nrandom:  %s %s %+v", seq, i,
					x.Type, x.Payload, x.Meta, y.Type, y.Payload, y.Meta)
			}
		}
	}
}

// Generators draw among variants (an approval's refusal reasons, optional
// fields); a few samples per type can miss a branch. Many samples must
// all pass validation, and ir.approval_invalid's must draw each reason its
// generator picks among (all but tenant_mismatch, which the generator does
// not make), each branch's own fields included.
func TestEveryGeneratorBranchPassesValidation(t *testing.T) {
	t.Parallel()
	v := validator(t)
	reasons := map[string]bool{}
	for _, size := range []int{0, 2_000} {
		pool, err := newPayloadPool(UniformMix(), size, 150, 11)
		if err != nil {
			t.Fatal(err)
		}
		for _, samples := range pool.byType {
			for _, s := range samples {
				e := eventstore.Event{Type: s.gen.typ, Source: s.gen.source, Payload: s.payload,
					Meta: eventstore.Meta{SchemaVersion: s.gen.version, TenantID: "t", Producer: producer}}
				if _, err := v.Check("stream-1", eventstore.Any, []eventstore.Event{e}); err != nil {
					t.Fatalf("size %d: %s payload refused: %v\n%s", size, s.gen.typ, err, s.payload)
				}
				if s.gen.typ == "ir.approval_invalid" {
					var p struct {
						Reason    string `json:"reason"`
						Presented string `json:"presented_mission_id"`
					}
					if err := json.Unmarshal(s.payload, &p); err != nil {
						t.Fatal(err)
					}
					reasons[p.Reason] = true
					if (p.Reason == "mission_mismatch") != (p.Presented != "") {
						t.Errorf("reason %s with presented_mission_id %q", p.Reason, p.Presented)
					}
				}
			}
		}
	}
	for _, want := range []string{"unknown_approval", "token_mismatch", "already_consumed", "self_approval", "approver_unnamed", "mission_mismatch"} {
		if !reasons[want] {
			t.Errorf("no ir.approval_invalid sample with reason %s in 300 (drew %v)", want, reasons)
		}
	}
}
