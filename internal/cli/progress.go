package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress reports a long job: a bar with rate and ETA on a terminal,
// plain periodic log lines otherwise (so logs of a job run by cron or CI
// stay readable).
type progress struct {
	a     *app
	what  string
	unit  string
	bar   *progressbar.ProgressBar
	total int64

	mu      sync.Mutex
	done    int64
	start   time.Time
	lastLog time.Time
	every   time.Duration
}

// newProgress starts reporting a job of total units (0 or less: unknown).
func (a *app) newProgress(what, unit string, total int64) *progress {
	p := &progress{a: a, what: what, unit: unit, total: total, start: time.Now(), every: a.progressEvery()}
	p.lastLog = p.start
	if isTerminal(a.io.Err) && !a.asJSON {
		p.bar = newBar(a.io.Err, what, unit, total)
	}
	return p
}

// newBar is the terminal's bar for a job of total units (0 or less:
// unknown). Its clock starts now: left to start at the first Add, it
// would take a resumed job's first chunk as done in no time and show an
// absurd rate.
func newBar(w io.Writer, what, unit string, total int64) *progressbar.ProgressBar {
	max := total
	if max <= 0 {
		max = -1
	}
	bar := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	bar.StartWithoutRender()
	return bar
}

// progressEvery is how often plain progress lines are logged
// ($EVENTSTREAM_PROGRESS_INTERVAL, default 5s).
func (a *app) progressEvery() time.Duration {
	if d, err := time.ParseDuration(a.getenv("EVENTSTREAM_PROGRESS_INTERVAL")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}

// Add counts n more units done.
func (p *progress) Add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	if now := time.Now(); now.Sub(p.lastLog) >= p.every {
		p.lastLog = now
		p.logLine("progress")
	}
}

// SetTotal changes the expected total (for jobs that learn it late).
func (p *progress) SetTotal(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = total
	if p.bar != nil {
		p.bar.ChangeMax64(total)
	}
}

func (p *progress) logLine(msg string) {
	el := time.Since(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-9)
	args := []any{"job", p.what, p.unit, p.done, "per_second", int64(rate), "elapsed", el.Round(time.Millisecond)}
	if p.total > 0 {
		args = append(args, "total", p.total)
		if rate > 0 && p.done < p.total {
			args = append(args, "eta", time.Duration(float64(p.total-p.done)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	p.a.log.Info(msg, args...)
}

// Finish ends the report with a final line.
func (p *progress) Finish(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Exit()
		fmt.Fprintln(p.a.io.Err)
		p.bar = nil
	}
	p.logLine(msg)
}
