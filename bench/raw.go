package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The raw ceiling writes the same rows as our store into a bare table of
// the same columns (stream in byte order, as the log's since its migration
// 004): no constraint, no index, no validation, no ordering
// guard. It is what PostgreSQL itself does on this machine for the same
// work, so ours / raw is the figure to track.
const rawEventsDDL = `CREATE TABLE raw_events (
	position bigint, id uuid, stream text COLLATE "C", version bigint, type text, source text, target text,
	tenant_id text, correlation_id text, causation_id text, producer text, schema_version integer,
	"timestamp" timestamptz, payload jsonb, meta jsonb)`

var rawColumns = []string{"position", "id", "stream", "version", "type", "source", "target", "tenant_id",
	"correlation_id", "causation_id", "producer", "schema_version", "timestamp", "payload", "meta"}

const rawInsert = `INSERT INTO raw_events (position, id, stream, version, type, source, target, tenant_id,
	correlation_id, causation_id, producer, schema_version, "timestamp", payload, meta)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`

// rawWriter writes batches the raw way: one INSERT per transaction for a
// single event, one COPY (its own transaction) for a batch.
type rawWriter struct {
	pool     *pgxpool.Pool
	pos      atomic.Int64
	versions []atomic.Int64 // per shared stream; nil: a new stream per append
}

func newRawWriter(ctx context.Context, pool *pgxpool.Pool, streams int) (*rawWriter, error) {
	if _, err := pool.Exec(ctx, rawEventsDDL); err != nil {
		return nil, fmt.Errorf("bench: create raw_events: %w", err)
	}
	w := &rawWriter{pool: pool}
	if streams > 0 {
		w.versions = make([]atomic.Int64, streams)
	}
	return w, nil
}

// rows returns the batch's rows, numbered by the writer's own counters.
func (w *rawWriter) rows(b *batch, streamIdx int) [][]any {
	n := int64(len(b.events))
	last := w.pos.Add(n)
	first := last - n + 1
	v0 := int64(0)
	if w.versions != nil {
		v0 = w.versions[streamIdx].Add(n) - n
	}
	now := time.Now().UTC()
	rows := make([][]any, len(b.events))
	for i := range b.events {
		rows[i] = rawRow(first+int64(i), b.stream, v0+int64(i)+1, &b.events[i], b.metas[i], now)
	}
	return rows
}

func (w *rawWriter) writeRows(ctx context.Context, rows [][]any) (int, error) {
	if len(rows) == 1 {
		if _, err := w.pool.Exec(ctx, rawInsert, rows[0]...); err != nil {
			return 0, fmt.Errorf("bench: raw insert: %w", err)
		}
		return 1, nil
	}
	n, err := w.pool.CopyFrom(ctx, pgx.Identifier{"raw_events"}, rawColumns, pgx.CopyFromRows(rows))
	if err != nil {
		return 0, fmt.Errorf("bench: raw copy: %w", err)
	}
	return int(n), nil
}
