package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// Microbenchmarks of the hot paths, for benchstat:
//
//	go test -run '^$' -bench . -count 6 ./bench | tee new.txt
//	benchstat old.txt new.txt

// domainEvent returns a real event of typ, as the load generator builds it.
func domainEvent(tb testing.TB, typ string, size int) eventstore.Event {
	tb.Helper()
	pool, err := newPayloadPool(Mix{{Type: typ, Weight: 1}}, size, 1, 1)
	if err != nil {
		tb.Fatal(err)
	}
	wl := newWorkload(Config{Seed: 1, EventsPerAppend: 1}, "micro", pool)
	return wl.batch(1).events[0]
}

var microTypes = []struct {
	typ  string
	size int
}{
	{"distribution.viewed", 0},     // the commonest, small
	{"course.lesson.generated", 0}, // uuid and uri formats
	{"mission.created", 0},         // nested array of objects
	{"course.outline.created", 4_000},
}

// BenchmarkValidate: the write-time validation of one envelope (envelope
// schema, then payload schema), on real domain events.
func BenchmarkValidate(b *testing.B) {
	v, err := eventstore.NewValidator(schemas.MustDefault())
	if err != nil {
		b.Fatal(err)
	}
	for _, mt := range microTypes {
		evs := []eventstore.Event{domainEvent(b, mt.typ, mt.size)}
		b.Run(fmt.Sprintf("%s/%dB", mt.typ, len(evs[0].Payload)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(evs[0].Payload)))
			for b.Loop() {
				if _, err := v.Check("s-1", eventstore.Any, evs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidateSchemas splits validation into its two schema checks,
// on already decoded documents, to show where its time goes.
func BenchmarkValidateSchemas(b *testing.B) {
	reg := schemas.MustDefault()
	e := domainEvent(b, "course.lesson.generated", 0)
	payload, err := eventstore.DecodeJSON(e.Payload)
	if err != nil {
		b.Fatal(err)
	}
	meta := map[string]any{"schema_version": json.Number("1"), "tenant_id": e.Meta.TenantID, "producer": e.Meta.Producer,
		"correlation_id": e.Meta.CorrelationID}
	env := map[string]any{"id": e.ID.String(), "type": e.Type, "stream": "s-1", "source": e.Source, "payload": payload, "meta": meta}
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := reg.ValidateEnvelope(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("payload", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := reg.Validate(e.Type, 1, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eventstore.DecodeJSON(e.Payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEnvelopeJSON: encoding and decoding one stored envelope (what
// a reader, an export or an HTTP API does per event).
func BenchmarkEnvelopeJSON(b *testing.B) {
	e := domainEvent(b, "course.lesson.generated", 0)
	e.Stream, e.Version, e.Position = "course-1", 7, eventstore.Pos(12345)
	e.Meta.Extra = map[string]any{"request_id": "r-42"}
	raw, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var x eventstore.Event
			if err := json.Unmarshal(raw, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("meta", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Meta.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGroupCommit: single-event appends from N goroutines against
// PostgreSQL; events/group shows how well concurrent appends are
// coalesced into shared transactions, µs/group what one costs.
func BenchmarkGroupCommit(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			s, err := postgres.New(ctx, pgtest.Pool(b), schemas.MustDefault())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			pool, err := newPayloadPool(DomainMix(), 0, 16, 1)
			if err != nil {
				b.Fatal(err)
			}
			wl := newWorkload(Config{Seed: 1, EventsPerAppend: 1}, "gc", pool)
			batches := make([]batch, b.N)
			for i := range batches {
				batches[i] = wl.batch(int64(i))
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						bt := &batches[i]
						if _, err := s.Append(ctx, bt.stream, eventstore.NoStream, bt.events...); err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if st := s.Stats(); st.Groups > 0 {
				b.ReportMetric(float64(st.Events)/float64(st.Groups), "events/group")
				b.ReportMetric(float64(st.GroupTime.Microseconds())/float64(st.Groups), "µs/group")
			}
		})
	}
}

// BenchmarkWorkload: the bench's own cost of building one append's events
// (kept far below an append's, so the bench does not measure itself).
func BenchmarkWorkload(b *testing.B) {
	pool, err := newPayloadPool(DomainMix(), 0, 64, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, per := range []int{1, 100} {
		wl := newWorkload(Config{Seed: 1, EventsPerAppend: per}, "w", pool)
		b.Run(fmt.Sprintf("events=%d", per), func(b *testing.B) {
			b.ReportAllocs()
			var seq int64
			for b.Loop() {
				seq++
				_ = wl.batch(seq)
			}
		})
	}
}
