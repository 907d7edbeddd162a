package eventstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// heldOfSource is how many of src's events the target's log holds as the
// source has them (id, stream, version, type, payload), read back from the
// target. It fails unless they are a prefix of src: what a copy that
// stopped part way leaves.
func heldOfSource(t *testing.T, dst eventstore.Store, src []eventstore.Event) int {
	t.Helper()
	stored := map[string]eventstore.Event{}
	for _, e := range readLog(t, dst) {
		stored[e.ID.String()] = e
	}
	holds := func(w eventstore.Event) bool {
		g, ok := stored[w.ID.String()]
		return ok && g.Stream == w.Stream && g.Version == w.Version && g.Type == w.Type && eventstore.JSONEqual(g.Payload, w.Payload)
	}
	n := 0
	for n < len(src) && holds(src[n]) {
		n++
	}
	for i := n; i < len(src); i++ {
		if holds(src[i]) {
			t.Fatalf("the target holds source event %d (%s@%d) but not event %d: not a prefix of the source", i, src[i].Stream, src[i].Version, n)
		}
	}
	return n
}

// checkCopyProgress fails unless p (and the last of calls, the Progress
// callback's, when it was called) counts exactly the source's events the
// target holds, and its position is the last of them.
func checkCopyProgress(t *testing.T, p eventstore.CopyProgress, calls []eventstore.CopyProgress, dst eventstore.Store, src []eventstore.Event) {
	t.Helper()
	held := heldOfSource(t, dst, src)
	want := eventstore.CopyProgress{Events: int64(held), Position: eventstore.Start}
	if held > 0 {
		want.Position = src[held-1].Position
	}
	if p.Events != want.Events || p.Position != want.Position {
		t.Errorf("progress: %d events up to %v; the target holds %d of the source's, up to %v", p.Events, p.Position, want.Events, want.Position)
	}
	if calls == nil {
		return
	}
	if held > 0 && len(calls) == 0 {
		t.Errorf("Progress was never called; the target holds %d of the source's events", held)
		return
	}
	if len(calls) > 0 {
		last := calls[len(calls)-1]
		if last.Events != want.Events || last.Position != want.Position || last.Appends != p.Appends {
			t.Errorf("Progress's last call: %+v; want %d events up to %v and the %d appends returned", last, want.Events, want.Position, p.Appends)
		}
	}
}

// A copy that fails part way through a page returns, and last tells
// Progress, exactly the events the target holds from it: the earlier
// pages, and of the failing page the runs before the failing one and the
// events of the failing run the target held before (retried) when the
// refusal is past them. Counting the failing page as nothing, as Copy
// did, undercounts by those. Each case runs with one page and with pages
// of 4, into PostgreSQL and into the memory store; the source's log is
// fallbackSource's (before v1..3, fb v1..8, after v1..3, fb v9..10).
func TestCopy_ProgressCountsWhatTheTargetHoldsAfterAFailure(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	cases := []struct {
		name string
		// prepare writes the target's state before the copy.
		prepare func(t *testing.T, dst eventstore.Store, src []eventstore.Event)
		want    error
		// held: the source's events the target holds after the copy;
		// heldPage4, if set, with pages of 4 events, which cut the runs.
		held, heldPage4 int
	}{
		{
			// before and fb are written; after's run is refused whole,
			// and its first event alone.
			name: "RunRefusedAfterEarlierRuns",
			prepare: func(t *testing.T, dst eventstore.Store, src []eventstore.Event) {
				if _, err := dst.Append(t.Context(), "after", eventstore.NoStream, otherEvent(1)); err != nil {
					t.Fatal(err)
				}
			},
			want: eventstore.ErrConcurrency, held: fbRunHead + fbRunLen,
		},
		{
			// fb's sixth event's id is stored in another stream: the run
			// is refused whole, and the target holds none of it, so none
			// of it is written (the fallback wrote its first five one by
			// one, then the sixth was refused). Pages of 4 cut fb's run at
			// their ends: the run refused is fb v6..8, after v1..5.
			name: "RunRefusedWholeForAnIDTakenElsewhere",
			prepare: func(t *testing.T, dst eventstore.Store, src []eventstore.Event) {
				e := otherEvent(1)
				e.ID = src[fbRunHead+5].ID
				if _, err := dst.Append(t.Context(), "elsewhere", eventstore.NoStream, e); err != nil {
					t.Fatal(err)
				}
			},
			want: eventstore.ErrDuplicateEvent, held: fbRunHead, heldPage4: fbRunHead + 5,
		},
		{
			// An earlier copy stored before and fb's first three events,
			// then fb diverged: before and the three are retries, the
			// fourth is refused.
			name: "StoredPrefixThenAnotherEvent",
			prepare: func(t *testing.T, dst eventstore.Store, src []eventstore.Event) {
				if _, err := eventstore.Import(t.Context(), dst, src[:fbRunHead+fbPrefix], 0); err != nil {
					t.Fatal(err)
				}
				if _, err := dst.Append(t.Context(), fbStream, eventstore.Exact(fbPrefix), otherEvent(1)); err != nil {
					t.Fatal(err)
				}
			},
			want: eventstore.ErrConcurrency, held: fbRunHead + fbPrefix,
		},
	}
	for _, target := range fallbackTargets {
		for _, c := range cases {
			for _, pageSize := range []int{0, 4} {
				t.Run(fmt.Sprintf("%s/%s/page%d", target.name, c.name, pageSize), func(t *testing.T) {
					t.Parallel()
					src, log := fallbackSource(t, reg)
					dst := target.open(t, reg)
					c.prepare(t, dst, log)

					var calls []eventstore.CopyProgress
					p, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{
						PageSize: pageSize,
						Progress: func(p eventstore.CopyProgress) { calls = append(calls, p) },
					})
					if !errors.Is(err, c.want) {
						t.Fatalf("copy: %v, want %v", err, c.want)
					}
					held := c.held
					if pageSize == 4 && c.heldPage4 != 0 {
						held = c.heldPage4
					}
					if got := heldOfSource(t, dst, log); got != held {
						t.Fatalf("the target holds %d of the source's events, the case expects %d", got, held)
					}
					checkCopyProgress(t, p, calls, dst, log)
					exactlyOnce(t, readLog(t, dst))
				})
			}
		}
	}
}

// After a copy completes, the progress counts every event of the source,
// and resuming from a position counts those after it: the two add up to
// the log, nothing counted twice.
func TestCopy_ProgressCountsAResumedCopy(t *testing.T) {
	t.Parallel()
	reg := copyRegistry(t)
	for _, target := range fallbackTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			src, log := fallbackSource(t, reg)
			dst := target.open(t, reg)
			// An earlier copy that stopped within fb's run.
			if _, err := eventstore.Import(t.Context(), dst, log[:fbRunHead+fbPrefix], 0); err != nil {
				t.Fatal(err)
			}
			after := log[fbRunHead+fbPrefix-1].Position
			var calls []eventstore.CopyProgress
			p, err := eventstore.Copy(t.Context(), src, dst, eventstore.CopyOptions{
				After: after, PageSize: 4,
				Progress: func(p eventstore.CopyProgress) { calls = append(calls, p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			rest := log[fbRunHead+fbPrefix:]
			if p.Events != int64(len(rest)) || p.Position != log[len(log)-1].Position {
				t.Errorf("resumed copy: %d events up to %v, want %d up to %v", p.Events, p.Position, len(rest), log[len(log)-1].Position)
			}
			if len(calls) == 0 || calls[len(calls)-1] != p {
				t.Errorf("Progress's calls %+v; want the last to be %+v", calls, p)
			}
			checkCopyProgress(t, eventstore.CopyProgress{Events: int64(fbRunHead+fbPrefix) + p.Events, Position: p.Position}, nil, dst, log)
		})
	}
}
