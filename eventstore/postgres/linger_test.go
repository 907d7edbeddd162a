package postgres

import (
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
)

// lingerStore is a Store with just what linger reads: no database.
func lingerStore(linger, lastGroup time.Duration) *Store {
	s := &Store{opts: Options{Linger: linger, MaxGroupEvents: 4000}, queue: make(chan *request, 64)}
	s.lastGroup.Store(int64(lastGroup))
	return s
}

func oneEvent() *request { return &request{events: make([]eventstore.Prepared, 1)} }

// seen records n Append calls in progress at once, then their return.
func (s *Store) seen(n int) {
	for range n {
		s.callers.enter()
	}
	for range n {
		s.callers.leave()
	}
}

func TestLingerWaitsForTheWritersItSawAtOnce(t *testing.T) {
	s := lingerStore(5*time.Second, 10*time.Second)
	s.seen(8)
	if got := s.callers.expected(); got != 8 {
		t.Fatalf("expected %d appends after 8 at once, want 8", got)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		for range 7 {
			s.queue <- oneEvent()
		}
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	start := time.Now()
	group := s.linger([]*request{oneEvent()}, 1, hold)
	if len(group) != 8 {
		t.Fatalf("group of %d, want the 8 writers", len(group))
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("linger took %s although all 8 came after 10 ms", took)
	}
	if st := s.Stats(); st.Lingers != 1 || st.LingersTimedOut != 0 {
		t.Errorf("stats %+v, want one linger, none timed out", st)
	}
	if got := s.callers.expected(); got != 8 {
		t.Errorf("expectation %d after a linger that got all, want 8 kept", got)
	}
}

func TestLingerThatTimesOutLowersTheExpectation(t *testing.T) {
	s := lingerStore(30*time.Millisecond, 10*time.Second)
	s.seen(8)
	for range 2 {
		s.queue <- oneEvent()
	}
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	group := s.linger([]*request{oneEvent()}, 1, hold)
	if len(group) != 3 {
		t.Fatalf("group of %d, want the 3 that came", len(group))
	}
	if st := s.Stats(); st.Lingers != 1 || st.LingersTimedOut != 1 {
		t.Errorf("stats %+v, want one linger, timed out", st)
	}
	if got := s.callers.expected(); got != 3 {
		t.Errorf("expectation %d after the wait timed out with 3, want 3", got)
	}
	// The next group of 3 does not wait for the 8 again.
	group = s.linger([]*request{oneEvent(), oneEvent(), oneEvent()}, 3, hold)
	if len(group) != 3 {
		t.Errorf("group of %d, want the 3 as they were", len(group))
	}
	if st := s.Stats(); st.Lingers != 1 {
		t.Errorf("stats %+v: a second linger although 3 were expected and 3 came", st)
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
		group := s.linger([]*request{oneEvent()}, tc.n, hold)
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
	group := s.linger([]*request{oneEvent()}, 1, hold)
	took := time.Since(start)
	if len(group) != 1 || s.Stats().LingersTimedOut != 1 {
		t.Fatalf("group of %d, stats %+v; want 1 and a timed-out linger", len(group), s.Stats())
	}
	if took < 20*time.Millisecond || took > 5*time.Second {
		t.Errorf("waited %s, want about 20 ms (half of 40 ms), far below Linger (10 s)", took)
	}
}
