package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// The benchmarks pair each append path with its raw PostgreSQL ceiling on
// the same machine and run: the same rows written with plain pgx into a
// bare table of the same columns (no indexes, no validation). Compare the
// events/s metrics of each pair; absolute figures drift between machines.
//
//	go test -run '^$' -bench . -benchtime 20000x ./eventstore/postgres

const rawTable = `CREATE TABLE raw_events (
	position bigint, id uuid, stream text COLLATE "C", version bigint, type text, source text, target text,
	tenant_id text, correlation_id text, causation_id text, producer text, schema_version integer,
	"timestamp" timestamptz, payload jsonb, meta jsonb)`

var benchPayload = json.RawMessage(`{"n": 42, "title": "Introduction to event sourcing, lesson 3", "tags": ["course", "lesson", "generated"]}`)

func benchEvent() eventstore.Event {
	return eventstore.Event{
		Type: "test.thing.happened", Source: "bench", Payload: benchPayload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "acme", Producer: "bench", CorrelationID: "c-1"},
	}
}

// parallel runs fn from workers goroutines until total calls are done and
// reports events/s (each call writing perCall events).
func parallel(b *testing.B, workers, perCall int, fn func(worker, call int) error) {
	b.Helper()
	calls := (b.N + perCall - 1) / perCall
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				c := int(next.Add(1)) - 1
				if c >= calls {
					return
				}
				if err := fn(w, c); err != nil {
					failed.Store(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(calls*perCall)/elapsed.Seconds(), "events/s")
}

func rawPool(b *testing.B, conns int32) *pgxpool.Pool {
	_, pool := newStore(b, conns)
	if _, err := pool.Exec(context.Background(), rawTable); err != nil {
		b.Fatal(err)
	}
	return pool
}

func rawRow(pos int64, stream string, version int64) []any {
	meta, _ := json.Marshal(eventstore.Meta{SchemaVersion: 1, TenantID: "acme", Producer: "bench", CorrelationID: "c-1"})
	return []any{pos, uuid.New(), stream, version, "test.thing.happened", "bench", nil, "acme", "c-1", nil, "bench", 1,
		time.Now().UTC(), []byte(benchPayload), meta}
}

// BenchmarkAppendSingle: single-event appends from 64 goroutines on
// distinct streams, validated, coalesced by group commit.
func BenchmarkAppendSingle(b *testing.B) {
	s, _ := newStore(b, 0)
	ctx := context.Background()
	parallel(b, 64, 1, func(w, c int) error {
		_, err := s.Append(ctx, fmt.Sprintf("single-%d-%d", w, c), eventstore.NoStream, benchEvent())
		return err
	})
	reportGroups(b, s)
}

// BenchmarkAppendSingleNoLinger is BenchmarkAppendSingle with
// Options.Linger off: what waiting for the writers of the last group buys.
func BenchmarkAppendSingleNoLinger(b *testing.B) {
	s, _ := newStoreWith(b, 0, postgres.Options{Linger: -1})
	ctx := context.Background()
	parallel(b, 64, 1, func(w, c int) error {
		_, err := s.Append(ctx, fmt.Sprintf("single-%d-%d", w, c), eventstore.NoStream, benchEvent())
		return err
	})
	reportGroups(b, s)
}

// BenchmarkRawInsertPerCommit: the ceiling for single events: one INSERT
// per transaction from 64 goroutines, each with its own connection.
func BenchmarkRawInsertPerCommit(b *testing.B) {
	pool := rawPool(b, 64)
	ctx := context.Background()
	var pos atomic.Int64
	parallel(b, 64, 1, func(w, c int) error {
		_, err := pool.Exec(ctx, `INSERT INTO raw_events VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`,
			rawRow(pos.Add(1), fmt.Sprintf("single-%d-%d", w, c), 1)...)
		return err
	})
}

// BenchmarkAppendBatch: 100-event appends from 4 goroutines.
func BenchmarkAppendBatch(b *testing.B) {
	s, _ := newStore(b, 0)
	ctx := context.Background()
	parallel(b, 4, 100, func(w, c int) error {
		evs := make([]eventstore.Event, 100)
		for i := range evs {
			evs[i] = benchEvent()
		}
		_, err := s.Append(ctx, fmt.Sprintf("batch-%d-%d", w, c), eventstore.NoStream, evs...)
		return err
	})
	reportGroups(b, s)
}

// BenchmarkRawCopyBatch: the ceiling for batches: pgx CopyFrom of 100 rows
// per transaction from 4 goroutines.
func BenchmarkRawCopyBatch(b *testing.B) { rawCopyBatch(b, false) }

// BenchmarkRawCopyBatchIndexed is BenchmarkRawCopyBatch into a table with
// the log's three unique indexes (position, id, stream and version), ids
// time-ordered as Append makes them: what the indexes alone cost the
// ceiling, with no lock, no ordering and no validation.
func BenchmarkRawCopyBatchIndexed(b *testing.B) { rawCopyBatch(b, true) }

func rawCopyBatch(b *testing.B, indexed bool) {
	pool := rawPool(b, 4)
	ctx := context.Background()
	if indexed {
		if _, err := pool.Exec(ctx, `ALTER TABLE raw_events ADD PRIMARY KEY (position), ADD UNIQUE (id), ADD UNIQUE (stream, version)`); err != nil {
			b.Fatal(err)
		}
	}
	var pos atomic.Int64
	parallel(b, 4, 100, func(w, c int) error {
		rows := make([][]any, 100)
		stream := fmt.Sprintf("batch-%d-%d", w, c)
		for i := range rows {
			rows[i] = rawRow(pos.Add(1), stream, int64(i+1))
			if indexed {
				rows[i][1] = eventstore.NewID()
			}
		}
		return copyRaw(ctx, pool, rows)
	})
}

// copyRaw copies rows into raw_events in a transaction of their own.
func copyRaw(ctx context.Context, pool *pgxpool.Pool, rows [][]any) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"raw_events"}, []string{"position", "id", "stream", "version", "type", "source",
			"target", "tenant_id", "correlation_id", "causation_id", "producer", "schema_version", "timestamp", "payload", "meta"},
			pgx.CopyFromRows(rows))
		return err
	})
}

// BenchmarkValidate: the write-time validation of one envelope.
func BenchmarkValidate(b *testing.B) {
	v, err := eventstore.NewValidator(testRegistry(b))
	if err != nil {
		b.Fatal(err)
	}
	evs := []eventstore.Event{benchEvent()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Check("s", eventstore.Any, evs); err != nil {
			b.Fatal(err)
		}
	}
}

func reportGroups(b *testing.B, s interface{ Stats() postgres.Stats }) {
	st := s.Stats()
	if st.Groups > 0 {
		b.ReportMetric(float64(st.Events)/float64(st.Groups), "events/group")
		b.ReportMetric(float64(st.GroupTime.Microseconds())/float64(st.Groups), "µs/group")
	}
}
