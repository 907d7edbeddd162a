package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// A pool may be set to any of pgx's query exec modes (the simple protocol
// is what a PgBouncer in transaction mode before 1.21 needs): appends,
// their retries and conflicts, and reads work the same under each.
func TestEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			u, _ := pgtest.Schema(t)
			s := readTestStore(t, u, mode)
			evs := readTestEvents()
			var results []eventstore.AppendResult
			for i, e := range evs {
				res, err := s.Append(ctx, fmt.Sprintf("mode-%d", i%2), eventstore.Any, e)
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				results = append(results, res)
			}
			batch, err := s.Append(ctx, "mode-batch", eventstore.NoStream, evs...)
			if err != nil {
				t.Fatalf("append of %d events: %v", len(evs), err)
			}
			// A retry of a stored append (the careful path) gets its result;
			// a stale expected version is a conflict.
			again, err := s.Append(ctx, "mode-batch", eventstore.NoStream, batch.Events...)
			if err != nil || len(again.Events) != len(evs) || again.Events[0].Position != batch.Events[0].Position {
				t.Fatalf("retry of a stored append: %+v, %v; want its original result", again, err)
			}
			if _, err := s.Append(ctx, "mode-batch", eventstore.NoStream, evs[1]); !isConflict(err) {
				t.Fatalf("append with a stale expected version: %v, want a concurrency error", err)
			}
			page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if want := len(results) + len(batch.Events); len(page.Events) != want {
				t.Fatalf("read %d events, want %d", len(page.Events), want)
			}
			for i, res := range results {
				sameAsAppended(t, fmt.Sprintf("single %d", i), page.Events[i], res.Events[0], evs[i])
			}
			for i, e := range batch.Events {
				sameAsAppended(t, fmt.Sprintf("batch %d", i), page.Events[len(results)+i], e, evs[i])
			}
		})
	}
}

func isConflict(err error) bool {
	var ce *eventstore.ConcurrencyError
	return errors.As(err, &ce)
}
