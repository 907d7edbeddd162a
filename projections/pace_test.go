package projections

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when slept on.
type fakeClock struct {
	t      time.Time
	waits  int
	waited time.Duration
}

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) bool {
	c.waits++
	c.waited += d
	c.t = c.t.Add(d)
	return ctx.Err() == nil
}

// TestPacerHoldsTheRateAtEveryMoment: at no moment has the pacer let go
// more than a slice's worth (burst) of events beyond rate × elapsed time,
// however many events are asked for at once, and it hands them out in
// slices of at most burst.
func TestPacerHoldsTheRateAtEveryMoment(t *testing.T) {
	for _, tc := range []struct {
		rate      float64
		burst     int
		want      int
		total     int
		wantSlept time.Duration
	}{
		{rate: 1000, burst: 100, want: 5000, total: 5000, wantSlept: 4900 * time.Millisecond},
		{rate: 250, burst: 25, want: 1000, total: 1000, wantSlept: 3900 * time.Millisecond},
		{rate: 2.5, burst: 1, want: 40, total: 40, wantSlept: 39 * 400 * time.Millisecond},
		{rate: 100, burst: 10, want: 3, total: 300, wantSlept: 2900 * time.Millisecond},
	} {
		c := &fakeClock{t: time.Unix(1_000_000, 0)}
		start := c.t
		p := newPacer(tc.rate, c.now, c.sleep)
		if int(p.burst) != tc.burst {
			t.Fatalf("rate %v: burst %v, want %d", tc.rate, p.burst, tc.burst)
		}
		done := 0
		for done < tc.total {
			k, err := p.take(context.Background(), min(tc.want, tc.total-done))
			if err != nil {
				t.Fatal(err)
			}
			if k < 1 || k > tc.burst {
				t.Fatalf("rate %v: a slice of %d events, want 1 to %d", tc.rate, k, tc.burst)
			}
			done += k
			if allowed := float64(tc.burst) + tc.rate*c.t.Sub(start).Seconds(); float64(done) > allowed+1e-9 {
				t.Fatalf("rate %v: %d events let go after %v, above the %v allowed", tc.rate, done, c.t.Sub(start), allowed)
			}
		}
		if d := c.waited - tc.wantSlept; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("rate %v: %d events took %v of waits, want %v", tc.rate, tc.total, c.waited, tc.wantSlept)
		}
	}
}

// TestPacerRefillsWhileTheWorkTakesTime: time spent applying a slice
// counts towards the next one, as the old between-pages pacing did: a
// drain slower than its rate never waits.
func TestPacerRefillsWhileTheWorkTakesTime(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	p := newPacer(100, c.now, c.sleep)
	for range 50 {
		if k, err := p.take(context.Background(), 1000); err != nil || k != 10 {
			t.Fatalf("take: %d, %v; want 10", k, err)
		}
		c.t = c.t.Add(200 * time.Millisecond) // applying 10 events took 0.2 s
	}
	if c.waits != 0 {
		t.Fatalf("a drain slower than its rate waited %d times", c.waits)
	}
}

// TestPacerStopsWithTheContext: a wait ends with the context's error.
func TestPacerStopsWithTheContext(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	p := newPacer(1, c.now, c.sleep)
	ctx, cancel := context.WithCancel(context.Background())
	if k, err := p.take(ctx, 5); k != 1 || err != nil {
		t.Fatalf("first take: %d, %v", k, err)
	}
	cancel()
	if _, err := p.take(ctx, 5); err != context.Canceled {
		t.Fatalf("take after cancel: %v, want context.Canceled", err)
	}
}
