package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// Identical appends (same stream, expected version, ids and content) in
// flight at once: one of them wrote the events, the others are idempotent
// retries, whether they land in the same group or in groups one after
// another. AppendReporting must say wrote=true for exactly one of each
// set, and Stats.Events count the events once: a server's metrics and the
// CLI's counts add up the writes, so a second wrote=true counts the
// events twice. Each round releases every append together (a barrier),
// so the copies of a set fall sometimes into one group and sometimes into
// successive ones; each set is on a stream of its own, which carries one
// append per round at the version the rounds before left. The copies go
// through one Store, or alternate between two on the same schema, as two
// processes (a client retrying on another server, an import run twice
// at once) would.
func TestConcurrentIdenticalAppendsReportOneWrite(t *testing.T) {
	t.Parallel()
	for _, exp := range []struct {
		name string
		// expected is the expected version of round r's append (r from 0).
		expected func(r int) eventstore.ExpectedVersion
	}{
		{"exact", func(r int) eventstore.ExpectedVersion {
			if r == 0 {
				return eventstore.NoStream
			}
			return eventstore.Exact(int64(2 * r))
		}},
		{"any", func(int) eventstore.ExpectedVersion { return eventstore.Any }},
	} {
		for _, processes := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d-stores", exp.name, processes), func(t *testing.T) {
				t.Parallel()
				identicalAppends(t, processes, exp.expected)
			})
		}
	}
}

// identicalAppends runs the rounds of TestConcurrentIdenticalAppendsReportOneWrite
// through that many Stores on one schema.
func identicalAppends(t *testing.T, processes int, expected func(r int) eventstore.ExpectedVersion) {
	s, pool := newStoreWith(t, 0, postgres.Options{})
	stores := []*postgres.Store{s}
	for len(stores) < processes {
		other, err := postgres.New(context.Background(), pool, testRegistry(t), postgres.Options{SkipMigrate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		stores = append(stores, other)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const sets, rounds = 24, 8
	written := 0
	for r := range rounds {
		type answer struct {
			res   eventstore.AppendResult
			wrote bool
			err   error
		}
		copies := 2 + r%2 // pairs and triples
		answers := make([][]answer, sets)
		release := make(chan struct{})
		var ready, finished sync.WaitGroup
		for i := range sets {
			a, b := thing(2*r), thing(2*r+1)
			a.ID, b.ID = uuid.New(), uuid.New()
			answers[i] = make([]answer, copies)
			for c := range copies {
				ready.Add(1)
				finished.Add(1)
				go func() {
					defer finished.Done()
					ready.Done()
					<-release
					res, wrote, err := stores[c%len(stores)].AppendReporting(ctx, fmt.Sprintf("set-%d", i), expected(r), a, b)
					answers[i][c] = answer{res, wrote, err}
				}()
			}
		}
		ready.Wait()
		close(release)
		finished.Wait()
		for i, set := range answers {
			wrote := 0
			for c, a := range set {
				if a.err != nil {
					t.Fatalf("round %d, set %d, copy %d: %v", r, i, c, a.err)
				}
				if a.wrote {
					wrote++
				}
				sameResult(t, fmt.Sprintf("round %d, set %d, copy %d", r, i, c), a.res, set[0].res)
			}
			if wrote != 1 {
				t.Errorf("round %d, set %d: %d of %d identical appends report wrote=true; want exactly 1", r, i, wrote, len(set))
			}
			written += len(set[0].res.Events)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	var stored, ids int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM events`).Scan(&stored, &ids); err != nil {
		t.Fatal(err)
	}
	if stored != written || ids != written {
		t.Fatalf("the log holds %d events (%d ids); want each of the %d appended events once", stored, ids, written)
	}
	var events uint64
	for _, s := range stores {
		events += s.Stats().Events
	}
	if events != uint64(written) {
		t.Fatalf("Stats.Events %d; the appends wrote %d events", events, written)
	}
}

// sameResult fails unless got is want: the same events at the same
// versions and positions, with the same timestamp.
func sameResult(t *testing.T, what string, got, want eventstore.AppendResult) {
	t.Helper()
	if got.Stream != want.Stream || len(got.Events) != len(want.Events) {
		t.Fatalf("%s: %d events in %q; want %d in %q", what, len(got.Events), got.Stream, len(want.Events), want.Stream)
	}
	for j := range got.Events {
		g, w := got.Events[j], want.Events[j]
		if g.ID != w.ID || g.Stream != w.Stream || g.Version != w.Version || g.Position != w.Position || !g.Timestamp.Equal(w.Timestamp) || g.Type != w.Type {
			t.Fatalf("%s: event %d is %v %s v%d at %v (%v); want %v %s v%d at %v (%v)", what, j,
				g.ID, g.Stream, g.Version, g.Position, g.Timestamp, w.ID, w.Stream, w.Version, w.Position, w.Timestamp)
		}
		if !eventstore.JSONEqual(g.Payload, w.Payload) {
			t.Fatalf("%s: event %d has payload %s; want %s", what, j, g.Payload, w.Payload)
		}
	}
}

// An append whose caller's context ends while its group waits for the
// append lock returns the context's error; the group then commits its
// events. No call reports them as written (the retry is idempotent and
// says wrote=false), so Stats.UnreportedEvents counts them: before, they
// were in Stats.Events but told nowhere as the write of an unanswered
// call.
func TestAppendAbandonedBeforeItsGroupCommittedIsCountedUnreported(t *testing.T) {
	t.Parallel()
	// One committer: the retry's group is gathered only once the first
	// group has been answered.
	s, pool := newStoreWith(t, 0, postgres.Options{Committers: 1})
	a, b := thing(1), thing(2)
	a.ID, b.ID = uuid.New(), uuid.New()
	release := holdAppendLock(t, s, pool)
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		wrote bool
		err   error
	}
	answered := make(chan answer, 1)
	go func() {
		_, wrote, err := s.AppendReporting(ctx, "abandoned", eventstore.NoStream, a, b)
		answered <- answer{wrote, err}
	}()
	waitForLockWaiters(t, s, pool, 1)
	cancel()
	if got := <-answered; !errors.Is(got.err, context.Canceled) || got.wrote {
		t.Fatalf("append whose context ended in flight: wrote %v, %v; want the context's error", got.wrote, got.err)
	}
	release()
	res, wrote, err := s.AppendReporting(context.Background(), "abandoned", eventstore.NoStream, a, b)
	if err != nil || wrote || len(res.Events) != 2 || res.Events[0].Version != 1 {
		t.Fatalf("retry: %+v, wrote %v, %v; want the original result, not written", res, wrote, err)
	}
	if st := s.Stats(); st.Events != 2 || st.UnreportedEvents != 2 || st.UnreportedAppends != 1 {
		t.Fatalf("stats %+v; want 2 events written, both unreported, by 1 append", st)
	}
}
