package bench

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Phase is what one side of a scenario (ours or raw) measured.
type Phase struct {
	// Events and Ops completed (an op is an append, a page read or a
	// projection batch, as Report.Op says).
	Events       int64   `json:"events"`
	Ops          int64   `json:"ops"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	OpsPerSec    float64 `json:"ops_per_sec"`
	// Latency of one op, in milliseconds, from an HDR histogram.
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
	// OverRange is how many ops took longer than the histogram's range
	// (5 minutes): MaxMs is still the longest seen, but percentiles that
	// fall among them read 5 minutes.
	OverRange int64 `json:"over_range,omitempty"`
	// CPU time of the bench process (user + system) during the phase; the
	// server's CPU is not included.
	CPUSec     float64 `json:"cpu_sec"`
	CPUUserSec float64 `json:"cpu_user_sec"`
	CPUSysSec  float64 `json:"cpu_sys_sec"`
	// ServerCPUSec is the CPU time of the PostgreSQL backends serving the
	// phase's connections (0 when the server is not on this host).
	ServerCPUSec float64 `json:"server_cpu_sec"`
	// ServerBackgroundCPUSec is the CPU time of the server's background
	// processes during the phase: the WAL writer, the checkpointer, the
	// background writer and autovacuum. They serve the whole server, so it
	// includes whatever else the server did meanwhile; it is not part of
	// CPUMicrosPerEvent.
	ServerBackgroundCPUSec float64 `json:"server_background_cpu_sec"`
	// CPUMicrosPerEvent is (bench + server backends) CPU time per event.
	CPUMicrosPerEvent float64 `json:"cpu_us_per_event"`
	// PeakRSSBytes is the bench process's peak resident memory during the
	// phase (VmHWM, reset at the phase's start where Linux allows; where it
	// does not, PeakRSSSinceStart is set and the peak is the process's).
	PeakRSSBytes      int64 `json:"peak_rss_bytes"`
	PeakRSSSinceStart bool  `json:"peak_rss_since_start,omitempty"`
	// Timeline is the events completed in each second of the phase.
	Timeline []Bucket `json:"timeline"`
	// Rounds is how many alternating rounds the phase ran in (see
	// Config.Rounds).
	Rounds int `json:"rounds,omitempty"`
	// Latency is the latency spectrum (percentile → ms) for charts.
	Latency []Percentile `json:"latency"`
	// Waits is what the phase's backends were doing, sampled (only with
	// Config.SampleWaits).
	Waits *Waits `json:"waits,omitempty"`
}

// Percentile is one point of a latency spectrum.
type Percentile struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// Lag is a projection's lag over a run: for each event, the time from
// its append returning to its row being visible in the read model.
type Lag struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Events is how many events the lag was measured on.
	Events int64 `json:"events"`
	// OverRange is how many of them lagged longer than the histogram's
	// range (5 minutes), as Phase.OverRange.
	OverRange int64 `json:"over_range,omitempty"`
}

// GroupCommit is our store's committer counters over our phase.
type GroupCommit struct {
	Groups          uint64  `json:"groups"`
	Appends         uint64  `json:"appends"`
	Events          uint64  `json:"events"`
	EventsPerGroup  float64 `json:"events_per_group"`
	AppendsPerGroup float64 `json:"appends_per_group"`
	MicrosPerGroup  float64 `json:"us_per_group"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs              int       `json:"cpus"`
	CPUModel          string    `json:"cpu_model"`
	GoVersion         string    `json:"go"`
	Server            string    `json:"server"`
	SynchronousCommit string    `json:"synchronous_commit"`
	LoadAverage       []float64 `json:"load_average"`
	Host              string    `json:"host"`
}

// Report is the outcome of one scenario. The flat fields are the figures
// to track (ours, the raw ceiling and their ratio); Ours and Raw hold the
// detail, including the series the HTML report charts.
type Report struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	// Op is what one latency sample measures: "append", "read page",
	// "batch applied".
	Op string `json:"op"`

	EventsPerSec    float64 `json:"events_per_sec"`
	AppendsPerSec   float64 `json:"appends_per_sec"`
	RawEventsPerSec float64 `json:"raw_events_per_sec"`
	// Ratio is ours / raw events per second (0 when raw did not run).
	Ratio        float64 `json:"ratio"`
	P50Ms        float64 `json:"p50_ms"`
	P95Ms        float64 `json:"p95_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	RawP50Ms     float64 `json:"raw_p50_ms"`
	RawP99Ms     float64 `json:"raw_p99_ms"`
	RawMaxMs     float64 `json:"raw_max_ms"`
	CPUSec       float64 `json:"cpu_sec"`
	ServerCPUSec float64 `json:"server_cpu_sec"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	// MeanPayloadBytes is the mean payload size written (weighted by the
	// mix).
	MeanPayloadBytes float64 `json:"mean_payload_bytes"`

	// With exact expected versions (hot, or ExactVersions in single,
	// batch and project): the conflicts seen and retried, their share of
	// every append attempt, and that every retried append landed.
	Conflicts     int64   `json:"conflicts,omitempty"`
	ConflictRate  float64 `json:"conflict_rate,omitempty"`
	RetriedLanded *bool   `json:"retried_landed,omitempty"`
	// project: the projection's lag (ours and raw).
	Lag    *Lag `json:"lag,omitempty"`
	RawLag *Lag `json:"raw_lag,omitempty"`
	// read: the long stream (the flat figures are the whole log).
	StreamEventsPerSec    float64 `json:"stream_events_per_sec,omitempty"`
	RawStreamEventsPerSec float64 `json:"raw_stream_events_per_sec,omitempty"`
	StreamRatio           float64 `json:"stream_ratio,omitempty"`
	// replay and read: how the log was filled before measuring.
	LoadedEvents     int64        `json:"loaded_events,omitempty"`
	LoadEventsPerSec float64      `json:"load_events_per_sec,omitempty"`
	GroupCommit      *GroupCommit `json:"group_commit,omitempty"`

	// Verified: every event our phase says it appended is in the log
	// exactly once (count and id check), and every other table the run
	// checks (a read model, the raw table) passed too; false on any
	// ErrVerify.
	Verified       bool  `json:"verified"`
	VerifiedEvents int64 `json:"verified_events"`

	Ours      Phase   `json:"ours"`
	Raw       *Phase  `json:"raw,omitempty"`
	OursExtra *Phase  `json:"ours_stream,omitempty"`
	RawExtra  *Phase  `json:"raw_stream,omitempty"`
	Config    Summary `json:"config"`
	Machine   Machine `json:"machine"`
	// Schema is the run's schema, dropped at the end unless SchemaKept.
	Schema     string    `json:"schema"`
	SchemaKept bool      `json:"schema_kept,omitempty"`
	Notes      []string  `json:"notes,omitempty"`
	Started    time.Time `json:"started"`
}

// Summary is the configuration a report was produced with.
type Summary struct {
	DurationSec     float64 `json:"duration_sec,omitempty"`
	Events          int     `json:"events,omitempty"`
	Writers         int     `json:"writers"`
	EventsPerAppend int     `json:"events_per_append"`
	Streams         int     `json:"streams"`
	ExactVersions   bool    `json:"exact_versions,omitempty"`
	EventSize       int     `json:"event_size,omitempty"`
	Rate            int     `json:"rate,omitempty"`
	LogEvents       int     `json:"log_events,omitempty"`
	StreamEvents    int     `json:"stream_events,omitempty"`
	Mix             string  `json:"mix"`
	IDs             string  `json:"ids"`
	Seed            int64   `json:"seed"`
}

func (r *run) newReport() Report {
	c := r.cfg
	rep := Report{Scenario: c.Scenario, Started: time.Now().UTC(), MeanPayloadBytes: round(r.payloads.avgSize, 1),
		Config: Summary{DurationSec: c.Duration.Seconds(), Events: c.Events, Writers: c.Writers, EventsPerAppend: c.EventsPerAppend,
			Streams: c.Streams, ExactVersions: c.ExactVersions, EventSize: c.EventSize, Mix: c.Mix.String(), IDs: idKind(c.RandomIDs), Seed: c.Seed},
		Machine: Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version(), LoadAverage: loadAverage(),
			Server: r.server, SynchronousCommit: r.syncCommit},
	}
	if c.Scenario == "project" {
		rep.Config.Rate = c.Rate
	}
	if c.Scenario == "replay" || c.Scenario == "read" {
		rep.Config.LogEvents = c.LogEvents
	}
	if c.Scenario == "read" {
		rep.Config.StreamEvents = c.StreamEvents
	}
	for _, s := range scenarios {
		if s.Name == c.Scenario {
			rep.Description = s.Description
		}
	}
	rep.Machine.Host, _ = os.Hostname()
	rep.Schema, rep.SchemaKept = r.schema, c.Keep
	return rep
}

// finish copies the headline figures out of the phases.
func (rep *Report) finish() {
	o := rep.Ours
	rep.EventsPerSec, rep.P50Ms, rep.P95Ms, rep.P99Ms, rep.MaxMs = o.EventsPerSec, o.P50Ms, o.P95Ms, o.P99Ms, o.MaxMs
	if rep.Op == "append" {
		rep.AppendsPerSec = o.OpsPerSec
	}
	rep.CPUSec, rep.ServerCPUSec, rep.PeakRSSBytes = o.CPUSec, o.ServerCPUSec, o.PeakRSSBytes
	if rep.Raw != nil {
		rep.RawEventsPerSec, rep.RawP50Ms, rep.RawP99Ms, rep.RawMaxMs = rep.Raw.EventsPerSec, rep.Raw.P50Ms, rep.Raw.P99Ms, rep.Raw.MaxMs
		if rep.Raw.EventsPerSec > 0 {
			rep.Ratio = round(o.EventsPerSec/rep.Raw.EventsPerSec, 3)
		}
	}
	if rep.OursExtra != nil {
		rep.StreamEventsPerSec = rep.OursExtra.EventsPerSec
		if rep.RawExtra != nil && rep.RawExtra.EventsPerSec > 0 {
			rep.RawStreamEventsPerSec = rep.RawExtra.EventsPerSec
			rep.StreamRatio = round(rep.OursExtra.EventsPerSec/rep.RawExtra.EventsPerSec, 3)
		}
	}
	if la := loadAverage(); la != nil {
		rep.Machine.LoadAverage = la
	}
	over := func(what string, n int64) {
		if n > 0 {
			rep.note("%s: %d above the histogram's range (%s): the max is the longest seen, percentiles among them read %s",
				what, n, time.Duration(histMaxMicros)*time.Microsecond, time.Duration(histMaxMicros)*time.Microsecond)
		}
	}
	over("ours latency", rep.Ours.OverRange)
	if rep.Raw != nil {
		over("raw latency", rep.Raw.OverRange)
	}
	if rep.OursExtra != nil {
		over("ours stream latency", rep.OursExtra.OverRange)
	}
	if rep.RawExtra != nil {
		over("raw stream latency", rep.RawExtra.OverRange)
	}
	if rep.Lag != nil {
		over("projection lag", rep.Lag.OverRange)
	}
	if rep.RawLag != nil {
		over("raw consumer lag", rep.RawLag.OverRange)
	}
}

func (rep *Report) note(format string, args ...any) {
	rep.Notes = append(rep.Notes, fmt.Sprintf(format, args...))
}

// phase turns a timed record into a Phase.
func phase(t timed) Phase {
	h := t.rec.hist
	p := Phase{Events: t.rec.events, Ops: t.rec.ops, Seconds: round(t.elapsed.Seconds(), 3),
		CPUUserSec: round(t.cpu.user.Seconds(), 3), CPUSysSec: round(t.cpu.sys.Seconds(), 3),
		CPUSec: round((t.cpu.user + t.cpu.sys).Seconds(), 3), PeakRSSBytes: t.peak, PeakRSSSinceStart: !t.ownPeak, Timeline: t.timeline}
	p.ServerCPUSec = round(t.server.Seconds(), 3)
	p.ServerBackgroundCPUSec = round(t.serverBG.Seconds(), 3)
	p.Waits = t.waits.waits()
	if p.Events > 0 {
		p.CPUMicrosPerEvent = round(float64((t.cpu.user+t.cpu.sys+t.server).Microseconds())/float64(p.Events), 1)
	}
	if s := t.elapsed.Seconds(); s > 0 {
		p.EventsPerSec = round(float64(p.Events)/s, 1)
		p.OpsPerSec = round(float64(p.Ops)/s, 1)
	}
	fillLatency(&p, h, t.rec.maxUs)
	p.OverRange = t.rec.overflow
	return p
}

// fillLatency fills p's latencies from h; maxUs is the longest latency
// seen, which h holds only up to its range.
func fillLatency(p *Phase, h *hdrhistogram.Histogram, maxUs int64) {
	if h.TotalCount() == 0 {
		return
	}
	d := ranksOf(h, maxUs)
	ms := func(us int64) float64 { return round(float64(us)/1000, 3) }
	p.P50Ms, p.P95Ms, p.P99Ms = ms(d.at(50)), ms(d.at(95)), ms(d.at(99))
	p.MaxMs, p.MeanMs = ms(d.top), round(h.Mean()/1000, 3)
	p.Latency = spectrum(h, d)
}

// ranks is a histogram's non-empty buckets in order, for percentiles.
type ranks struct {
	bars []hdrhistogram.Bar
	n    int64
	// top is the longest value seen: maxUs, which the recorders keep
	// exactly (even above the histogram's range), rather than the top of
	// the histogram's last bucket, which can be above it (by up to 0.1%).
	top int64
}

func ranksOf(h *hdrhistogram.Histogram, maxUs int64) ranks {
	r := ranks{n: h.TotalCount(), top: max(maxUs, histMinMicros)} // a value under 1 µs is recorded as 1 µs
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			r.bars = append(r.bars, b)
		}
	}
	return r
}

// at is the q-th percentile by rank: the smallest recorded value with at
// least q% of the values at or below it. (The histogram's own
// ValueAtQuantile rounds the rank to the nearest instead of up, so that
// the p99 of 60 values was the 59th, with 1.7% of them above it.) It is
// the top of that value's bucket, but never above the longest seen.
func (r ranks) at(q float64) int64 {
	if r.n == 0 {
		return 0
	}
	// The epsilon keeps a product such as 99.9 * 1000 / 100, which floats
	// make 999.0000000000001, at its integer rank.
	rank := max(int64(math.Ceil(q*float64(r.n)/100-1e-9)), 1)
	var seen int64
	for _, b := range r.bars {
		if seen += b.Count; seen >= rank {
			return min(b.To, r.top)
		}
	}
	return r.top
}

// spectrum samples the latency at percentiles spread evenly on a
// "number of nines" scale, as HDR plots do: 0, 50, 75, 90, 99, 99.9, ...
func spectrum(h *hdrhistogram.Histogram, d ranks) []Percentile {
	var out []Percentile
	for i := 0; i <= 40; i++ {
		// x from 0 to 4 nines in steps of 0.1.
		x := float64(i) / 10
		q := 100 * (1 - math.Pow(10, -x))
		v := d.at(q)
		if i == 0 {
			v = h.Min()
		}
		out = append(out, Percentile{Percentile: round(q, 4), Ms: round(float64(v)/1000, 3)})
	}
	out = append(out, Percentile{Percentile: 100, Ms: round(float64(d.top)/1000, 3)})
	return out
}

// lagOf turns a lag histogram, the longest lag seen (maxUs, even above the
// histogram's range) and how many events lagged above it into a Lag.
func lagOf(h *hdrhistogram.Histogram, maxUs, over int64) *Lag {
	if h.TotalCount() == 0 {
		return &Lag{}
	}
	d := ranksOf(h, maxUs)
	ms := func(us int64) float64 { return round(float64(us)/1000, 3) }
	return &Lag{P50Ms: ms(d.at(50)), P99Ms: ms(d.at(99)), MaxMs: ms(d.top), Events: h.TotalCount(), OverRange: over}
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}

// idKind names the event ids a run wrote, for its report.
func idKind(random bool) string {
	if random {
		return "random (v4)"
	}
	return "time-ordered (v7)"
}
