package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 5 minutes with three
// significant digits: within 0.1% at every scale. A longer one is recorded
// as 5 minutes, counted as over the range, and kept as the max: the
// report gives the true max and says how many percentiles are cut off.
const (
	histMinMicros = 1
	histMaxMicros = 5 * 60 * 1_000_000
	histSigFigs   = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
}

// micros returns d in microseconds within the histogram's range, and
// whether d was above it.
func micros(d time.Duration) (us int64, over bool) {
	us = max(d.Microseconds(), histMinMicros)
	if us > histMaxMicros {
		return histMaxMicros, true
	}
	return us, false
}

// recorder is one worker's record of a phase: an HDR histogram of
// operation latencies and the events it completed in each second since
// the phase started. Each worker owns one, so recording takes no lock;
// the phase merges them at the end.
type recorder struct {
	start    time.Time
	hist     *hdrhistogram.Histogram
	perSec   []int64
	events   int64
	ops      int64
	overflow int64
	// maxUs is the longest latency recorded, in microseconds, even above
	// the histogram's range.
	maxUs int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, hist: newHistogram()}
}

// record notes one operation of n events that took d and ended at end.
func (r *recorder) record(n int, d time.Duration, end time.Time) {
	r.maxUs = max(r.maxUs, d.Microseconds())
	us, over := micros(d)
	if over {
		r.overflow++
	}
	_ = r.hist.RecordValue(us)
	sec := int(end.Sub(r.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	for len(r.perSec) <= sec {
		r.perSec = append(r.perSec, 0)
	}
	r.perSec[sec] += int64(n)
	r.events += int64(n)
	r.ops++
}

// merge folds recorders into one.
func merge(start time.Time, rs []*recorder) *recorder {
	out := newRecorder(start)
	for _, r := range rs {
		out.hist.Merge(r.hist)
		for len(out.perSec) < len(r.perSec) {
			out.perSec = append(out.perSec, 0)
		}
		for i, n := range r.perSec {
			out.perSec[i] += n
		}
		out.events += r.events
		out.ops += r.ops
		out.overflow += r.overflow
		out.maxUs = max(out.maxUs, r.maxUs)
	}
	return out
}

// Bucket is the events completed in one slice of a phase: a second, or the
// shorter last second of a round.
type Bucket struct {
	// At is when the slice starts, in seconds since the phase started
	// (rounds of one side follow each other).
	At      float64 `json:"at"`
	Seconds float64 `json:"seconds"`
	Events  int64   `json:"events"`
}

// timeline turns the per-second counts of a phase that lasted elapsed into
// buckets.
func (r *recorder) timeline(elapsed time.Duration) []Bucket {
	out := make([]Bucket, 0, len(r.perSec))
	for i, n := range r.perSec {
		secs := min(elapsed.Seconds()-float64(i), 1)
		if secs <= 0 {
			secs = 0.001 // an op that ended after the phase's clock stopped
		}
		out = append(out, Bucket{At: float64(i), Seconds: round(secs, 3), Events: n})
	}
	return out
}
