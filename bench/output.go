package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable writes the reports as a table for people: one row per
// scenario (two for read: the log and the long stream), our figures, the
// raw ceiling's, their ratio, and what else each scenario measures.
func WriteTable(w io.Writer, reports []Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tevents/s\tops/s\traw events/s\tratio\tp50 ms\tp95 ms\tp99 ms\tmax ms\traw p99 ms\tbench cpu s\tpg cpu s\tcpu µs/event\traw cpu µs/event\tpeak RSS MiB\tverified\t")
	for _, r := range reports {
		row(tw, r.Scenario, r.Ours, r.Raw, r.Ratio, r.Verified)
		if r.OursExtra != nil {
			row(tw, r.Scenario+" (stream)", *r.OursExtra, r.RawExtra, r.StreamRatio, r.Verified)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reports {
		var extra []string
		if r.Config.ExactVersions {
			landed := "no"
			if r.RetriedLanded != nil && *r.RetriedLanded {
				landed = "yes"
			}
			extra = append(extra, fmt.Sprintf("conflicts %d (rate %.2f%%), every retried append landed: %s", r.Conflicts, 100*r.ConflictRate, landed))
		}
		if r.Lag != nil {
			extra = append(extra, fmt.Sprintf("projection lag p50 %s, p99 %s, max %s ms over %d events", ms(r.Lag.P50Ms), ms(r.Lag.P99Ms), ms(r.Lag.MaxMs), r.Lag.Events))
		}
		if r.RawLag != nil {
			extra = append(extra, fmt.Sprintf("raw consumer lag p50 %s, p99 %s, max %s ms", ms(r.RawLag.P50Ms), ms(r.RawLag.P99Ms), ms(r.RawLag.MaxMs)))
		}
		if g := r.GroupCommit; g != nil && g.Groups > 0 {
			extra = append(extra, fmt.Sprintf("group commit: %.1f appends, %.1f events, %.0f µs per group", g.AppendsPerGroup, g.EventsPerGroup, g.MicrosPerGroup))
		}
		if bg := backgroundLine(r); bg != "" {
			extra = append(extra, bg)
		}
		if r.Ours.Waits != nil {
			extra = append(extra, describeWaits("ours", r.Ours.Waits))
		}
		if r.Raw != nil && r.Raw.Waits != nil {
			extra = append(extra, describeWaits("raw", r.Raw.Waits))
		}
		if r.LoadedEvents > 0 {
			extra = append(extra, fmt.Sprintf("loaded %d events at %.0f events/s", r.LoadedEvents, r.LoadEventsPerSec))
		}
		extra = append(extra, r.Notes...)
		if len(extra) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", r.Scenario)
		for _, e := range extra {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
	return nil
}

func row(w io.Writer, name string, o Phase, raw *Phase, ratio float64, verified bool) {
	rawEPS, rawP99, rat, rawCPU := "-", "-", "-", "-"
	if raw != nil {
		rawEPS, rawP99, rawCPU = fmt.Sprintf("%.0f", raw.EventsPerSec), ms(raw.P99Ms), fmt.Sprintf("%.1f", raw.CPUMicrosPerEvent)
		if ratio > 0 {
			rat = fmt.Sprintf("%.2f", ratio)
		}
	}
	v := "no"
	if verified {
		v = "yes"
	}
	fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%s\t%.0f\t%s\t\n", name, o.EventsPerSec, o.OpsPerSec, rawEPS, rat,
		ms(o.P50Ms), ms(o.P95Ms), ms(o.P99Ms), ms(o.MaxMs), rawP99, o.CPUSec, o.ServerCPUSec, o.CPUMicrosPerEvent, rawCPU,
		float64(o.PeakRSSBytes)/(1<<20), v)
}

func ms(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// WriteJSON writes the reports as one JSON document: {"reports": [...]}.
func WriteJSON(w io.Writer, reports []Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if reports == nil {
		reports = []Report{}
	}
	return enc.Encode(struct {
		Reports []Report `json:"reports"`
	}{reports})
}

// WriteMarkdown writes the table as Markdown (for bench/README.md).
func WriteMarkdown(w io.Writer, reports []Report) error {
	var b strings.Builder
	b.WriteString("| scenario | events/s | ops/s | raw events/s | ratio | p50 ms | p95 ms | p99 ms | max ms | raw p99 ms | cpu µs/event (bench+pg) | raw cpu µs/event | peak RSS MiB |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	line := func(name string, o Phase, raw *Phase, ratio float64) {
		rawEPS, rawP99, rat, rawCPU := "–", "–", "–", "–"
		if raw != nil {
			rawEPS, rawP99, rawCPU = fmt.Sprintf("%.0f", raw.EventsPerSec), ms(raw.P99Ms), fmt.Sprintf("%.1f", raw.CPUMicrosPerEvent)
			if ratio > 0 {
				rat = fmt.Sprintf("%.2f", ratio)
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %.0f |\n", name, o.EventsPerSec, o.OpsPerSec,
			rawEPS, rat, ms(o.P50Ms), ms(o.P95Ms), ms(o.P99Ms), ms(o.MaxMs), rawP99, o.CPUMicrosPerEvent, rawCPU, float64(o.PeakRSSBytes)/(1<<20))
	}
	for _, r := range reports {
		line(r.Scenario, r.Ours, r.Raw, r.Ratio)
		if r.OursExtra != nil {
			line(r.Scenario+" (stream)", *r.OursExtra, r.RawExtra, r.StreamRatio)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// backgroundLine reports the server's background CPU of a scenario's
// phases (WAL writer, checkpointer, background writer, autovacuum), "" when
// none was measured.
func backgroundLine(r Report) string {
	if r.Ours.ServerBackgroundCPUSec == 0 && (r.Raw == nil || r.Raw.ServerBackgroundCPUSec == 0) {
		return ""
	}
	line := fmt.Sprintf("server background cpu (WAL writer, checkpointer, autovacuum; not in cpu µs/event): ours %.2f s", r.Ours.ServerBackgroundCPUSec)
	if r.Raw != nil {
		line += fmt.Sprintf(", raw %.2f s", r.Raw.ServerBackgroundCPUSec)
	}
	return line
}
