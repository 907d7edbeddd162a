package projections_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/projections"
)

// CatchUp and Rebuild follow Run's rule: an event that breaks its session
// MaxSessionBreaks times in a row, or whose failures (each closing the
// connection) reach MaxAttempts, is parked, and the call goes on to the
// head. Ending at the first break instead would end every call at the
// same event, since a new call starts without the count.
func TestCatchUpAndRebuildParkAnEventThatBreaksTheSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		fail     func(ctx context.Context, tx pgx.Tx) error
		attempts int
		text     string
	}{
		{"connection dropped", dropConnection, maxBreaks, "session broke 3 times in a row"},
		{"rows left open", failures[0].fail, maxAttempts, failures[0].text},
	} {
		for _, how := range []string{"CatchUp", "Rebuild"} {
			t.Run(how+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				store := logStore(t)
				poison := poisoned(t, store)
				var met atomic.Int32
				pool := database(t)
				rt := newRuntime(t, pool, store, breaksConfig(), breakingProjection("poisoned", poison.ID, tc.fail, &met))
				if how == "CatchUp" {
					pos, err := rt.CatchUp(ctx, "poisoned", 0)
					if err != nil {
						t.Fatalf("CatchUp: %v", err)
					}
					if head := headOf(t, store); pos != head {
						t.Fatalf("CatchUp ended at %s, want the head %s", pos, head)
					}
				} else {
					res, err := rt.Rebuild(ctx, "poisoned", projections.RebuildOptions{})
					if err != nil {
						t.Fatalf("Rebuild: %v", err)
					}
					if res.Parked != 1 {
						t.Fatalf("Rebuild parked %d events, want 1", res.Parked)
					}
				}
				parked, err := rt.ListParked(ctx, "poisoned")
				if err != nil {
					t.Fatal(err)
				}
				if len(parked) != 1 || parked[0].EventID != poison.ID || parked[0].Attempts != tc.attempts || !strings.Contains(parked[0].Error, tc.text) {
					t.Fatalf("parked %+v, want the poisoned event after %d attempts with %q", parked, tc.attempts, tc.text)
				}
				appliedOnceExceptPoison(t, pool, store, poison.ID)
			})
		}
	}
}
