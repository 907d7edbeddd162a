package projections

import (
	"context"
	"math"
	"time"
)

// paceSlice is how many events a paced drain applies at once: those of
// this much time at its rate (at least one). A page is applied in slices
// of that size, each its own transaction, so that a page of thousands of
// events does not go out at full speed before the rate is looked at.
const paceSlice = 100 * time.Millisecond

// pacer keeps a drain to rate events per second: a token bucket that
// holds at most burst events (a slice's worth) and refills at rate. Over
// any span of time d it lets at most burst + rate·d events go.
type pacer struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(context.Context, time.Duration) bool
}

// newPacer returns a pacer at rate events per second whose bucket starts
// full; now and pause are the clock (nil: the real one).
func newPacer(rate float64, now func() time.Time, pause func(context.Context, time.Duration) bool) *pacer {
	if now == nil {
		now = time.Now
	}
	if pause == nil {
		pause = sleep
	}
	burst := max(1, math.Floor(rate*paceSlice.Seconds()))
	return &pacer{rate: rate, burst: burst, tokens: burst, last: now(), now: now, sleep: pause}
}

// take waits until min(want, burst) events may go, takes them and
// returns how many; an error only when ctx ends while it waits.
func (p *pacer) take(ctx context.Context, want int) (int, error) {
	need := min(float64(want), p.burst)
	for {
		t := p.now()
		if t.After(p.last) {
			p.tokens = min(p.burst, p.tokens+t.Sub(p.last).Seconds()*p.rate)
			p.last = t
		}
		if p.tokens >= need {
			p.tokens -= need
			return int(need), nil
		}
		wait := (need - p.tokens) / p.rate * float64(time.Second)
		d := time.Duration(math.MaxInt64)
		if wait < float64(math.MaxInt64) {
			d = max(time.Duration(math.Ceil(wait)), 1)
		}
		if !p.sleep(ctx, d) {
			return 0, ctx.Err()
		}
	}
}
