package domain_test

import (
	"testing"

	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
)

// BenchmarkReadStream1000 is the store's share of BenchmarkLoad1000: the
// read of the 1,000 events without decoding or applying them.
func BenchmarkReadStream1000(b *testing.B) {
	for _, backend := range []string{"postgres", "memory"} {
		b.Run(backend, func(b *testing.B) {
			var env *dt.Env
			if backend == "postgres" {
				env = dt.Postgres(b, domain.Options{}, false)
			} else {
				env = dt.Memory(b, domain.Options{})
			}
			id := seedDistribution(b, env, 1000)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				evs, err := env.Store.ReadStream(ctx, "distribution-"+id, 1, 0)
				if err != nil || len(evs) != 1000 {
					b.Fatal(err, len(evs))
				}
			}
		})
	}
}
