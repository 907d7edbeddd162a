package postgres

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// BenchmarkGroupShape: what one group-commit transaction costs by its
// shape, one group at a time with nothing else running (no queue, no
// other committer, no linger): appends x events per append, through the
// common path (writeGroupOneTrip). µs/group at 1x1 is a group's fixed
// cost; the per-event rest shows in µs/event of the larger shapes. The
// events are validated before the timer starts.
//
//	go test -run '^$' -bench GroupShape -benchtime 300x ./eventstore/postgres
func BenchmarkGroupShape(b *testing.B) {
	for _, shape := range []struct{ appends, per int }{{1, 1}, {8, 1}, {60, 1}, {120, 1}, {1, 100}, {4, 100}} {
		b.Run(fmt.Sprintf("%dx%d", shape.appends, shape.per), func(b *testing.B) {
			u, _ := pgtest.Schema(b)
			s := readTestStore(b, u, pgx.QueryExecModeCacheStatement)
			groups := make([][]*request, b.N)
			for i := range groups {
				groups[i] = benchGroup(b, s, fmt.Sprintf("g%d", i), shape.appends, shape.per)
			}
			b.ResetTimer()
			for _, g := range groups {
				if _, err := s.writeGroupOneTrip(g); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			perGroup := float64(b.Elapsed().Microseconds()) / float64(b.N)
			b.ReportMetric(perGroup, "µs/group")
			b.ReportMetric(perGroup/float64(shape.appends*shape.per), "µs/event")
		})
	}
}

// benchGroup is a group of appends, each of per events to a new stream,
// validated as Append validates them.
func benchGroup(b *testing.B, s *Store, prefix string, appends, per int) []*request {
	payload := json.RawMessage(`{"n": 42, "title": "Introduction to event sourcing, lesson 3", "tags": ["course", "lesson", "generated"]}`)
	ev := eventstore.Event{Type: "test.thing.happened", Source: "bench", Payload: payload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "acme", Producer: "bench", CorrelationID: "c-1"}}
	group := make([]*request, appends)
	for i := range group {
		evs := make([]eventstore.Event, per)
		for j := range evs {
			evs[j] = ev
		}
		stream := fmt.Sprintf("%s-%d", prefix, i)
		p, err := s.validator.Check(stream, eventstore.NoStream, evs)
		if err != nil {
			b.Fatal(err)
		}
		group[i] = &request{stream: stream, expected: eventstore.NoStream, events: p}
	}
	return group
}
