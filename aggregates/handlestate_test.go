package aggregates_test

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/aggregates"
)

// TestHandleReturnsTheStateTheLogHolds: the state Handle returns is the
// one a load rebuilds, even for a decided value JSON does not store as it
// is (a string that is not UTF-8 is stored with U+FFFD for its bad bytes).
func TestHandleReturnsTheStateTheLogHolds(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	ctx := context.Background()
	repo := counterRepo(t, memStore(t, s), testRegistry(t, s), nil)
	res, err := repo.Handle(ctx, "utf8", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Named{CounterID: "utf8", Title: "a\xffb", Lang: "en"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := repo.Load(ctx, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Aggregate.State, a.State; got != want || a.State.Title != "a\uFFFDb" {
		t.Fatalf("Handle returned %+v, the log holds %+v (title %q)", got, want, a.State.Title)
	}
}
