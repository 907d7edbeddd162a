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

// BenchmarkRawSelect1000 is the ceiling of BenchmarkReadStream1000/postgres:
// the same 1,000 rows selected with plain pgx, every column copied out as
// bytes, nothing decoded into events.
func BenchmarkRawSelect1000(b *testing.B) {
	env := dt.Postgres(b, domain.Options{}, false)
	id := seedDistribution(b, env, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rows, err := env.Pool.Query(ctx, `SELECT * FROM events WHERE stream = $1 AND version >= 1 ORDER BY version`, "distribution-"+id)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			vals := rows.RawValues()
			row := make([][]byte, len(vals))
			for i, v := range vals {
				row[i] = append([]byte(nil), v...)
			}
			n++
		}
		if rows.Err() != nil || n != 1000 {
			b.Fatal(rows.Err(), n)
		}
	}
}
