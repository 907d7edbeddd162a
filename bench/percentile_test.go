package bench

import (
	"testing"
	"time"
)

// A percentile is a value that at least that share of the ops did not
// exceed. With 60 appends, one of them slow, the slow one is 1.7% of the
// ops: the p99 must be it, not the fast ones under it (the histogram's
// own rounding, to the nearest rank, gave the 59th of 60).
func TestP99OfASmallSampleIsNotRoundedDown(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rec := newRecorder(start)
	for range 59 {
		rec.record(1, time.Millisecond, start)
	}
	rec.record(1, 100*time.Millisecond, start)
	p := phase(timed{rec: rec, elapsed: time.Second})
	if p.P99Ms != 100 {
		t.Errorf("p99 %v ms of 59 ops of 1 ms and one of 100 ms: want 100 ms, the slow one", p.P99Ms)
	}
	if p.P50Ms != 1 || p.P95Ms != 1 {
		t.Errorf("p50 %v ms, p95 %v ms: want 1 ms (98%% of the ops took 1 ms)", p.P50Ms, p.P95Ms)
	}
	// The same rank for the lag of project.
	done := time.Now()
	v := &visibility{samples: []visSample{{at: done.Add(time.Millisecond), pos: 59}, {at: done.Add(100 * time.Millisecond), pos: 60}}}
	apps := make([]appended, 60)
	for i := range apps {
		apps[i] = appended{pos: int64(i + 1), n: 1, done: done}
	}
	if lag := v.lag(apps); lag.P99Ms != 100 || lag.P50Ms != 1 {
		t.Errorf("lag %+v: want p50 1 ms, p99 100 ms", lag)
	}
}

// Every percentile is at least the share it names: check each rank of
// samples of every size up to 300 against a sorted list.
func TestPercentilesAreAtLeastTheirShare(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 300; n++ {
		h := newHistogram()
		for i := 1; i <= n; i++ {
			_ = h.RecordValue(int64(i)) // exact below 2048 µs
		}
		for _, permille := range []int64{500, 950, 990, 999} {
			q := float64(permille) / 10
			got := ranksOf(h, int64(n)).at(q)
			// The smallest value with at least q% of the n values at or
			// below it.
			want := int64(0)
			for v := int64(1); v <= int64(n); v++ {
				if v*1000 >= permille*int64(n) {
					want = v
					break
				}
			}
			if got != want {
				t.Fatalf("n %d: p%v is %d, want %d", n, q, got, want)
			}
		}
	}
}

// The max is the longest op seen, not the top of its histogram bucket, and
// no percentile is above it.
func TestMaxIsTheLongestSeen(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rec := newRecorder(start)
	rec.record(1, 100_003*time.Microsecond, start)
	p := phase(timed{rec: rec, elapsed: time.Second})
	if p.MaxMs != 100.003 {
		t.Errorf("max %v ms, want the 100.003 ms seen", p.MaxMs)
	}
	if p.P50Ms > p.MaxMs || p.P99Ms > p.MaxMs || p.Latency[len(p.Latency)-2].Ms > p.MaxMs {
		t.Errorf("percentiles above the max %v: p50 %v p99 %v spectrum %v", p.MaxMs, p.P50Ms, p.P99Ms, p.Latency)
	}
}
