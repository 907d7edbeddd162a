package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/pgtest"

	"github.com/brainhq/eventstream/eventstore"
)

// lingerStore is a Store with just what linger reads: no database.
func lingerStore(linger, lastGroup time.Duration) *Store {
	s := &Store{opts: Options{Linger: linger, MaxGroupEvents: 4000, MaxGroupBytes: 64 << 20}, queue: make(chan *request, 64)}
	s.lastGroup.Store(int64(lastGroup))
	return s
}

func oneEvent() *request { return &request{events: make([]eventstore.Prepared, 1)} }

// seen sets what the last group left a lingering committer to expect.
func (s *Store) seen(n int) { s.expect.Store(int64(n)) }

func TestLingerWaitsForTheAppendsItExpects(t *testing.T) {
	s := lingerStore(5*time.Second, 10*time.Second)
	s.seen(8)
	go func() {
		time.Sleep(10 * time.Millisecond)
		for range 7 {
			s.queue <- oneEvent()
		}
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	start := time.Now()
	group := s.linger([]*request{oneEvent()}, 1, 0, hold)
	if len(group) != 8 {
		t.Fatalf("group of %d, want the 8 writers", len(group))
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("linger took %s although all 8 came after 10 ms", took)
	}
	if st := s.Stats(); st.Lingers != 1 || st.LingersTimedOut != 0 {
		t.Errorf("stats %+v, want one linger, none timed out", st)
	}
}

func TestLingerTakesWhatCameWhenTheWaitTimesOut(t *testing.T) {
	s := lingerStore(30*time.Millisecond, 10*time.Second)
	s.seen(8)
	for range 2 {
		s.queue <- oneEvent()
	}
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	group := s.linger([]*request{oneEvent()}, 1, 0, hold)
	if len(group) != 3 {
		t.Fatalf("group of %d, want the 3 that came", len(group))
	}
	if st := s.Stats(); st.Lingers != 1 || st.LingersTimedOut != 1 {
		t.Errorf("stats %+v, want one linger, timed out", st)
	}
}

// What a group leaves the next lingering committer to expect, with a real
// store: a lone writer's group leaves 1 (itself, released), so a lone
// writer never waits.
func TestLingerExpectsTheWritersAGroupReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	s := readTestStore(t, u, pgx.QueryExecModeCacheStatement)
	for i := range 20 {
		if _, err := s.Append(ctx, fmt.Sprintf("lone-%d", i), eventstore.NoStream, readTestEvents()[0]); err != nil {
			t.Fatal(err)
		}
		if got := s.expect.Load(); got != 1 {
			t.Fatalf("after the lone writer's append %d the next group expects %d, want 1", i, got)
		}
	}
	if st := s.Stats(); st.Lingers != 0 || st.Groups != 20 {
		t.Errorf("stats %+v: want 20 groups and no linger for a lone writer", st)
	}
}

// No wait: a lone writer, a group in flight, Linger off, a full group, or
// no group measured yet.
func TestLingerDoesNotWait(t *testing.T) {
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	for _, tc := range []struct {
		name  string
		store func() *Store
		n     int
	}{
		{"lone writer", func() *Store { s := lingerStore(time.Second, time.Second); s.seen(1); return s }, 1},
		{"group in flight", func() *Store { s := lingerStore(time.Second, time.Second); s.seen(8); s.inFlight.Add(1); return s }, 1},
		{"linger off", func() *Store { s := lingerStore(-1, time.Second); s.seen(8); return s }, 1},
		{"group full", func() *Store { s := lingerStore(time.Second, time.Second); s.seen(8); return s }, 4000},
		{"no group yet", func() *Store { s := lingerStore(time.Second, 0); s.seen(8); return s }, 1},
	} {
		s := tc.store()
		s.queue <- oneEvent()
		start := time.Now()
		group := s.linger([]*request{oneEvent()}, tc.n, 0, hold)
		if len(group) != 1 || s.Stats().Lingers != 0 {
			t.Errorf("%s: group of %d, %d lingers; want 1 and no linger", tc.name, len(group), s.Stats().Lingers)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("%s: took %s", tc.name, took)
		}
	}
}

// The wait is bounded by half the last group's time when that is shorter
// than Linger.
func TestLingerBoundedByHalfTheLastGroup(t *testing.T) {
	s := lingerStore(10*time.Second, 40*time.Millisecond)
	s.seen(8)
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	start := time.Now()
	group := s.linger([]*request{oneEvent()}, 1, 0, hold)
	took := time.Since(start)
	if len(group) != 1 || s.Stats().LingersTimedOut != 1 {
		t.Fatalf("group of %d, stats %+v; want 1 and a timed-out linger", len(group), s.Stats())
	}
	if took < 20*time.Millisecond || took > 5*time.Second {
		t.Errorf("waited %s, want about 20 ms (half of 40 ms), far below Linger (10 s)", took)
	}
}

// Waits that time out back off: after the k-th in a row, the next 2^(k-1)
// groups (at most maxLingerBackoff) go without waiting, however many
// appends were in progress at once meanwhile; a wait that gets all it
// expected ends the back-off.
func TestLingerBacksOffAfterWaitsThatTimeOut(t *testing.T) {
	s := lingerStore(5*time.Millisecond, 10*time.Second)
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	lingerOnce := func() (waited bool) {
		t.Helper()
		s.seen(8) // writers seen at once again: the expectation is 8
		before := s.Stats().Lingers
		s.linger([]*request{oneEvent()}, 1, 0, hold)
		return s.Stats().Lingers > before
	}
	// Timed out k times in a row: then 1, 2, 4 groups skip.
	var got []bool
	for range 1 + 1 + 1 + 2 + 1 + 4 + 1 {
		got = append(got, lingerOnce())
	}
	want := []bool{true, false, true, false, false, true, false, false, false, false, true}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("groups waited %v, want %v", got, want)
		}
	}
	// A wait that gets its 8 ends the back-off: after it, a wait that
	// times out skips one group only.
	for s.lingerSkip > 0 {
		lingerOnce()
	}
	for range 7 {
		s.queue <- oneEvent()
	}
	if !lingerOnce() || s.Stats().LingersTimedOut != 4 {
		t.Fatalf("stats %+v: want a fifth wait that got all it expected", s.Stats())
	}
	if !lingerOnce() || lingerOnce() || !lingerOnce() {
		t.Errorf("after a wait that got all, a timeout should skip exactly one group (skip %d, back-off %d)", s.lingerSkip, s.lingerBackoff)
	}
	for range maxLingerBackoff {
		lingerOnce()
	}
	if s.lingerBackoff > maxLingerBackoff {
		t.Errorf("back-off %d above its bound %d", s.lingerBackoff, maxLingerBackoff)
	}
}
