package cli

import (
	"io"
	"testing"
	"time"
)

// The terminal bar's rate counts from when the job started, not from its
// first chunk: a job whose first Add comes late (a resumed backfill's first
// batch) must not show that chunk as done in no time.
func TestBarClockStartsWithTheJob(t *testing.T) {
	t.Parallel()
	bar := newBar(io.Discard, "job", "events", 1000)
	const wait = 30 * time.Millisecond
	time.Sleep(wait)
	if err := bar.Add(500); err != nil {
		t.Fatal(err)
	}
	if s := bar.State().SecondsSince; s < wait.Seconds() {
		t.Fatalf("bar's clock: %.3fs since start after waiting %v; it started at the first Add", s, wait)
	}
}
