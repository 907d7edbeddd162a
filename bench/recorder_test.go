package bench

import (
	"strings"
	"testing"
	"time"
)

// A latency above the histogram's range (5 minutes) is not a 5-minute
// latency: a paced run whose server stalls for longer must report the max
// it saw and say that the percentiles above the range are cut off,
// instead of showing the range's top as if it were the worst.
func TestLatencyAboveTheHistogramIsNotClamped(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rec := newRecorder(start)
	rec.record(1, 2*time.Millisecond, start.Add(time.Second))
	rec.record(1, 10*time.Minute, start.Add(2*time.Second))
	p := phase(timed{rec: merge(start, []*recorder{rec}), elapsed: 3 * time.Second})
	if got, want := p.MaxMs, 600_000.0; got != want {
		t.Errorf("max %v ms, want the 10 minutes seen, %v ms", got, want)
	}
	if got := p.Latency[len(p.Latency)-1].Ms; got != p.MaxMs {
		t.Errorf("the spectrum ends at %v ms, the max is %v ms", got, p.MaxMs)
	}
	if p.OverRange != 1 {
		t.Errorf("over_range %d, want the 1 op above the histogram's range", p.OverRange)
	}
	rep := Report{Ours: p, Raw: &Phase{EventsPerSec: 1}}
	rep.finish()
	if rep.MaxMs != 600_000 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "above the histogram's range") {
		t.Errorf("report: max %v ms, notes %q", rep.MaxMs, rep.Notes)
	}
}

// The same holds for project's lag: an event that took 10 minutes to show
// in the read model has a lag of 10 minutes.
func TestLagAboveTheHistogramIsNotClamped(t *testing.T) {
	t.Parallel()
	done := time.Now()
	v := &visibility{samples: []visSample{{at: done.Add(time.Millisecond), pos: 1}, {at: done.Add(10 * time.Minute), pos: 2}}}
	lag := v.lag([]appended{{pos: 1, n: 1, done: done}, {pos: 2, n: 1, done: done}})
	if lag.MaxMs != 600_000 || lag.OverRange != 1 || lag.Events != 2 {
		t.Errorf("lag %+v, want a max of 600000 ms, 1 over the range, 2 events", lag)
	}
}
