package projections

import (
	"context"
	"time"
)

// SetPaceClock gives r's --max-rate pacing the clock now and sleep, for
// tests that count its waits instead of timing them.
func SetPaceClock(r *Runtime, now func() time.Time, sleep func(context.Context, time.Duration) bool) {
	r.paceNow, r.paceSleep = now, sleep
}
