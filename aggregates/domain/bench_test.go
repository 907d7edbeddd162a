package domain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
)

var ctx = context.Background()

// seedDistribution writes a published distribution with n events in all
// (created, published, then views) and returns its id.
func seedDistribution(tb testing.TB, env *dt.Env, n int) string {
	tb.Helper()
	id, course := uuid.NewString(), uuid.NewString()
	for _, c := range []aggregates.Command[distribution.State]{
		distribution.Create{DistributionID: id, CourseID: course, Channel: distribution.ChannelWeb, Title: "Benchmarks"},
		distribution.Publish{DistributionID: id},
	} {
		if _, err := env.Distributions.Handle(ctx, dt.Meta(), c); err != nil {
			tb.Fatal(err)
		}
	}
	views := make([]eventstore.Event, n-2)
	for i := range views {
		p, _ := json.Marshal(distribution.Viewed{DistributionID: id, CourseID: course, VisitorID: fmt.Sprintf("v%d", i), Referrer: "https://example.com/blog"})
		views[i] = eventstore.Event{Type: distribution.TypeViewed, Source: distribution.Source, Payload: p, Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t1"}}
	}
	if _, err := env.Store.Append(ctx, "distribution-"+id, eventstore.Exact(2), views...); err != nil {
		tb.Fatal(err)
	}
	return id
}

func benchLoad(b *testing.B, env *dt.Env, snapshot bool) {
	id := seedDistribution(b, env, 1000)
	repo := env.Distributions.Repository()
	if snapshot {
		if err := repo.TakeSnapshot(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		a, err := repo.Load(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if a.Version != 1000 || a.State.Views != 998 {
			b.Fatalf("loaded v%d with %d views", a.Version, a.State.Views)
		}
	}
}

// BenchmarkLoad1000 loads a 1,000-event aggregate, from its events alone
// and from a snapshot at its last version.
func BenchmarkLoad1000(b *testing.B) {
	b.Run("postgres/events", func(b *testing.B) { benchLoad(b, dt.Postgres(b, domain.Options{}, false), false) })
	b.Run("postgres/snapshot", func(b *testing.B) {
		benchLoad(b, dt.Postgres(b, domain.Options{SnapshotEvery: 1_000_000}, true), true)
	})
	b.Run("memory/events", func(b *testing.B) { benchLoad(b, dt.Memory(b, domain.Options{}), false) })
	b.Run("memory/snapshot", func(b *testing.B) {
		benchLoad(b, dt.Memory(b, domain.Options{Snapshots: &aggregates.MemorySnapshots{}, SnapshotEvery: 1_000_000}), true)
	})
}

// BenchmarkHandleCommand runs one command end to end against PostgreSQL:
// load, decide, append.
func BenchmarkHandleCommand(b *testing.B) {
	b.Run("postgres/create", func(b *testing.B) {
		env := dt.Postgres(b, domain.Options{}, false)
		course := uuid.NewString()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Create{DistributionID: uuid.NewString(), CourseID: course, Channel: "web", Title: "t"})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres/view-snapshot-every-100", func(b *testing.B) {
		env := dt.Postgres(b, domain.Options{SnapshotEvery: 100}, true)
		id := seedDistribution(b, env, 3)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.RecordView{DistributionID: id, VisitorID: "v"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
