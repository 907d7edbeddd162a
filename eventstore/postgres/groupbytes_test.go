package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// A group-commit transaction stops taking appends once it holds
// Options.MaxGroupBytes of payloads and metas: six appends of about 1.1 kB
// queued behind a held lock go in two groups of three under a 3,000-byte
// bound, and in one group under the default bound (the control, which
// shows the queue would otherwise have been taken whole). Without the
// bound, appends that are each well within eventstore.MaxAppendBytes could
// add up past the 1 GB a PostgreSQL message may carry and fail together.
func TestGroupBoundedByBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		maxBytes   int
		wantGroups uint64 // the filler's, then the six appends'
	}{
		{"bound 3000 bytes", 3000, 1 + 2},
		{"default bound", 0, 1 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1, MaxGroupBytes: tc.maxBytes, Linger: -1})
			ctx := context.Background()
			release := holdAppendLock(t, s, pool)
			errs := make(chan error, 7)
			go func() { _, err := s.Append(ctx, "bytes-filler", eventstore.NoStream, thing(0)); errs <- err }()
			waitForLockWaiters(t, s, pool, 1)
			tags, _ := json.Marshal([]string{strings.Repeat("a", 200), strings.Repeat("b", 200), strings.Repeat("c", 200), strings.Repeat("d", 200), strings.Repeat("e", 200)})
			for i := 1; i <= 6; i++ {
				e := thing(i)
				e.Payload = json.RawMessage(fmt.Sprintf(`{"n": %d, "title": "heavy", "tags": %s}`, i, tags))
				go func() { _, err := s.Append(ctx, fmt.Sprintf("bytes-%d", i), eventstore.NoStream, e); errs <- err }()
			}
			// The only committer waits for the lock: the six wait in its queue.
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().Queued < 6 {
				if time.Now().After(deadline) {
					t.Fatalf("%d appends queued after 10 s, want 6", s.Stats().Queued)
				}
				time.Sleep(5 * time.Millisecond)
			}
			release()
			for range 7 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if st := s.Stats(); st.Groups != tc.wantGroups || st.Appends != 7 || st.Events != 7 {
				t.Fatalf("stats %+v: want %d groups carrying 7 appends", st, tc.wantGroups)
			}
			if head, err := s.Head(ctx); err != nil || head != eventstore.Pos(7) {
				t.Fatalf("head %v (%v), want 7", head, err)
			}
		})
	}
}
