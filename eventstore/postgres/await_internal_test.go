package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

func awaitRequest() *request { return &request{result: make(chan outcome, 1)} }

var committed = outcome{res: eventstore.AppendResult{Stream: "s", Events: []eventstore.Event{{Stream: "s", Version: 1}}}, wrote: true}

// An append whose group committed before the caller's context ended
// returns its result, not the context's error: the events are stored,
// and the caller (and the server's metrics, which count it as written)
// would otherwise be told they may not be. Go's select picks at random
// among ready cases, so the outcome must be looked at first.
func TestAppendCommittedBeforeTheContextEndedReturnsItsResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &Store{}
	for i := range 200 {
		r := awaitRequest()
		s.answer(r, committed)
		o := awaitOutcome(ctx, r)
		if o.err != nil || !o.wrote || len(o.res.Events) != 1 {
			t.Fatalf("try %d: outcome %+v; want the committed result, written", i, o)
		}
	}
	if st := s.Stats(); st.UnreportedAppends != 0 || st.UnreportedEvents != 0 {
		t.Fatalf("stats %+v: writes counted as unreported, but their callers got them", st)
	}
}

// A write whose caller had stopped waiting is told exactly once: to the
// caller, or in Stats.UnreportedEvents, never both nor neither, however
// the caller's giving up and the committer's answer race. Before, the
// caller gave up on an outcome not delivered yet and nothing counted the
// write it then brought: no call reported those events as written, and
// their retry reports wrote=false.
func TestWriteOfAnAbandonedAppendIsToldOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &Store{}
	r := awaitRequest()
	if o := awaitOutcome(ctx, r); !errors.Is(o.err, context.Canceled) || o.wrote {
		t.Fatalf("nothing delivered: outcome %+v; want the context's error", o)
	}
	s.answer(r, committed)
	if st := s.Stats(); st.UnreportedAppends != 1 || st.UnreportedEvents != 1 || len(r.result) != 0 {
		t.Fatalf("stats %+v, %d outcomes queued after the caller gave up; want 1 append and 1 event unreported, none queued", st, len(r.result))
	}
	s.answer(awaitRequest(), outcome{err: errors.New("refused")})
	abandoned := awaitRequest()
	_ = awaitOutcome(ctx, abandoned)
	s.answer(abandoned, outcome{err: errors.New("refused")})
	if st := s.Stats(); st.UnreportedAppends != 1 {
		t.Fatalf("stats %+v: a failed append counted as an unreported write", st)
	}

	s = &Store{}
	const tries = 2000
	told := 0
	var answers sync.WaitGroup
	for range tries {
		r := awaitRequest()
		answers.Add(1)
		go func() {
			defer answers.Done()
			s.answer(r, committed)
		}()
		if o := awaitOutcome(ctx, r); o.wrote {
			told++
		}
	}
	answers.Wait()
	if st := s.Stats(); uint64(told)+st.UnreportedAppends != tries {
		t.Fatalf("%d told to callers + %d unreported; want each of %d writes told once", told, st.UnreportedAppends, tries)
	}
}
