package projections_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// A partitioned table's index is kept while a rebuild with DeferIndexes
// loads: pg_get_indexdef writes it "ON ONLY" the parent, so made again
// from its definition it would be an invalid index without its
// partitions' indexes. A plain index of one partition alone is deferred
// and made again as it was.
func TestRebuildKeepsThePartitionedIndexes(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 200, 20)
	pool := database(t)
	migrations := fstest.MapFS{"001_parted.up.sql": {Data: []byte(`
CREATE TABLE parted (position bigint NOT NULL, type text NOT NULL, stream text NOT NULL) PARTITION BY RANGE (position);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (100) TO (MAXVALUE);
CREATE INDEX parted_low_by_type ON parted_low (type);
CREATE INDEX parted_type_idx ON ONLY parted (type);
ALTER INDEX parted_type_idx ATTACH PARTITION parted_low_by_type;
CREATE INDEX parted_high_type_idx ON parted_high (type);
ALTER INDEX parted_type_idx ATTACH PARTITION parted_high_type_idx;
CREATE INDEX parted_stream_idx ON parted (stream);
CREATE INDEX parted_low_stream_only ON parted_low (stream, type);
`)}}
	p := projections.Projection{
		Name:         "parted",
		AllTypes:     true,
		DeferIndexes: true,
		Migrations:   migrations,
		Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
			rows := make([][]any, len(evs))
			for i, e := range evs {
				rows[i] = []any{int64(e.Position.Commit), e.Type, e.Stream}
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"parted"}, []string{"position", "type", "stream"}, pgx.CopyFromRows(rows))
			return err
		}),
	}
	rt := newRuntime(t, pool, store, fastConfig(), p)
	runUntilCaughtUp(t, rt)
	want := generationIndexes(t, pool, "parted", 1)
	var recorded []string
	res, err := rt.Rebuild(context.Background(), "parted", projections.RebuildOptions{Progress: func(projections.RebuildProgress) {
		if recorded == nil {
			recorded = deferredRecords(t, pool, "parted")
		}
	}})
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if !sameNames(recorded, []string{"parted_low_stream_only"}) {
		t.Errorf("while loading, deferred indexes recorded: %v, want only the partition's own", recorded)
	}
	checkIndexesAfterSwap(t, pool, "parted", res.Generation, want)
	var invalid []string
	rows, err := pool.Query(context.Background(), `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN projection_generations g ON g.schema_name = c.relnamespace::regnamespace::text
		WHERE g.projection = 'parted' AND g.generation = $1 AND NOT i.indisvalid`, res.Generation)
	if err == nil {
		invalid, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(invalid) != 0 {
		t.Errorf("after the swap, invalid indexes: %v", invalid)
	}
}
