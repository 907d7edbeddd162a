package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes a self-contained HTML page (inline SVG, no script) with,
// for each report, events/s over time and the latency spectrum, ours beside
// the raw ceiling, and the figures in a table.
func WriteHTML(w io.Writer, reports []Report) error {
	var b strings.Builder
	b.WriteString(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>eventstream bench</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d2430;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin:2.2rem 0 .3rem;border-top:1px solid #dde;padding-top:1rem}
.sub{color:#5b6474;margin:.1rem 0 .8rem} .charts{display:flex;flex-wrap:wrap;gap:1rem}
table{border-collapse:collapse;margin:.6rem 0;font-variant-numeric:tabular-nums} td,th{padding:.2rem .6rem;border-bottom:1px solid #e5e7ee;text-align:right}
th:first-child,td:first-child{text-align:left} .ok{color:#17803d;font-weight:600} .bad{color:#b42318;font-weight:600}
.charts svg{flex:1 1 440px;max-width:540px;height:auto}
.key{display:inline-block;width:.9rem;height:.25rem;vertical-align:middle;margin:0 .3rem 0 .8rem}
ul.notes{color:#5b6474;margin:.3rem 0}
</style></head><body>
<h1>eventstream bench</h1>
`)
	if len(reports) > 0 {
		m := reports[0].Machine
		fmt.Fprintf(&b, `<p class="sub">%s · %d CPUs (%s) · %s · synchronous_commit=%s · load average at the end %s · %s</p>`,
			html.EscapeString(m.Host), m.CPUs, html.EscapeString(m.CPUModel), html.EscapeString(m.Server), html.EscapeString(m.SynchronousCommit),
			html.EscapeString(loadString(reports[len(reports)-1].Machine.LoadAverage)), reports[0].Started.Format(time.RFC3339))
	}
	b.WriteString(`<p class="sub"><span class="key" style="background:` + oursColor + `"></span>eventstream (validated, group commit)` +
		`<span class="key" style="background:` + rawColor + `"></span>raw pgx on a bare table (the ceiling)</p>`)
	b.WriteString("<table><tr><th>scenario</th><th>events/s</th><th>raw events/s</th><th>ratio</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>raw p99 ms</th><th>verified</th></tr>")
	for _, r := range reports {
		htmlRow(&b, r.Scenario, r.Ours, r.Raw, r.Ratio, r.Verified)
		if r.OursExtra != nil {
			htmlRow(&b, r.Scenario+" (stream)", *r.OursExtra, r.RawExtra, r.StreamRatio, r.Verified)
		}
	}
	b.WriteString("</table>")
	for _, r := range reports {
		fmt.Fprintf(&b, "<h2>%s</h2><p class=\"sub\">%s</p>", html.EscapeString(r.Scenario), html.EscapeString(r.Description))
		fmt.Fprintf(&b, "<p>%s events/s ours, %s raw%s; latency per %s p50 %s ms, p99 %s ms, max %s ms.</p>",
			num(r.EventsPerSec), rawNum(r.Raw), ratioText(r.Ratio), html.EscapeString(r.Op), ms(r.P50Ms), ms(r.P99Ms), ms(r.MaxMs))
		charts(&b, r.Scenario, r.Op, r.Ours, r.Raw)
		if r.OursExtra != nil {
			fmt.Fprintf(&b, "<p>Long stream: %s events/s ours, %s raw%s.</p>", num(r.OursExtra.EventsPerSec), rawNum(r.RawExtra), ratioText(r.StreamRatio))
			charts(&b, r.Scenario+" (stream)", r.Op, *r.OursExtra, r.RawExtra)
		}
		var notes []string
		if r.Lag != nil {
			notes = append(notes, fmt.Sprintf("projection lag: p50 %s ms, p99 %s ms, max %s ms", ms(r.Lag.P50Ms), ms(r.Lag.P99Ms), ms(r.Lag.MaxMs)))
		}
		if r.RawLag != nil {
			notes = append(notes, fmt.Sprintf("raw consumer lag: p50 %s ms, p99 %s ms, max %s ms", ms(r.RawLag.P50Ms), ms(r.RawLag.P99Ms), ms(r.RawLag.MaxMs)))
		}
		if r.Config.ExactVersions {
			notes = append(notes, fmt.Sprintf("conflicts: %d (%.2f%% of attempts)", r.Conflicts, 100*r.ConflictRate))
		}
		notes = append(notes, r.Notes...)
		if len(notes) > 0 {
			b.WriteString(`<ul class="notes">`)
			for _, n := range notes {
				fmt.Fprintf(&b, "<li>%s</li>", html.EscapeString(n))
			}
			b.WriteString("</ul>")
		}
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const (
	oursColor = "#2563eb"
	rawColor  = "#ea8a1e"
)

func loadString(la []float64) string {
	if len(la) < 3 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", la[0], la[1], la[2])
}

func num(x float64) string { return fmt.Sprintf("%.0f", x) }

func rawNum(p *Phase) string {
	if p == nil {
		return "n/a"
	}
	return num(p.EventsPerSec)
}

func ratioText(r float64) string {
	if r <= 0 {
		return ""
	}
	return fmt.Sprintf(" (ratio %.2f)", r)
}

func htmlRow(b *strings.Builder, name string, o Phase, raw *Phase, ratio float64, verified bool) {
	rawEPS, rawP99, rat := "–", "–", "–"
	if raw != nil {
		rawEPS, rawP99 = num(raw.EventsPerSec), ms(raw.P99Ms)
	}
	if ratio > 0 {
		rat = fmt.Sprintf("%.2f", ratio)
	}
	v := `<span class="bad">no</span>`
	if verified {
		v = `<span class="ok">yes</span>`
	}
	fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
		html.EscapeString(name), num(o.EventsPerSec), rawEPS, rat, ms(o.P50Ms), ms(o.P99Ms), ms(o.MaxMs), rawP99, v)
}

type series struct {
	name  string
	color string
	pts   [][2]float64
}

type tick struct {
	v     float64
	label string
}

// charts writes the two charts of one pair of phases.
func charts(b *strings.Builder, title, op string, ours Phase, raw *Phase) {
	b.WriteString(`<div class="charts">`)
	rate := []series{{"ours", oursColor, perSecondPoints(ours)}}
	lat := []series{{"ours", oursColor, spectrumPoints(ours)}}
	if raw != nil {
		rate = append(rate, series{"raw", rawColor, perSecondPoints(*raw)})
		lat = append(lat, series{"raw", rawColor, spectrumPoints(*raw)})
	}
	b.WriteString(lineChart(title+": events/s over time", "seconds since the phase started", "events/s", rate, nil, false))
	b.WriteString(lineChart(title+": latency per "+op, "percentile", "ms (log scale)", lat,
		[]tick{{0, "0"}, {1, "90"}, {2, "99"}, {3, "99.9"}, {4, "99.99"}, {4.3, "max"}}, true))
	b.WriteString(`</div>`)
}

// perSecondPoints turns the timeline into a rate series; slices shorter
// than a fifth of a second are too short to say anything.
func perSecondPoints(p Phase) [][2]float64 {
	pts := make([][2]float64, 0, len(p.Timeline))
	for _, b := range p.Timeline {
		if b.Seconds < 0.2 {
			continue
		}
		pts = append(pts, [2]float64{b.At + b.Seconds/2, float64(b.Events) / b.Seconds})
	}
	return pts
}

// spectrumPoints places each percentile at its number of nines (90 → 1,
// 99 → 2, ...); the maximum sits at 4.3.
func spectrumPoints(p Phase) [][2]float64 {
	pts := make([][2]float64, 0, len(p.Latency))
	for _, q := range p.Latency {
		x := 4.3
		if q.Percentile < 100 {
			x = -math.Log10(1 - q.Percentile/100)
		}
		pts = append(pts, [2]float64{x, math.Max(q.Ms, 0.001)})
	}
	return pts
}

// lineChart draws series as an SVG line chart. xTicks nil: numeric ticks.
func lineChart(title, xLabel, yLabel string, ss []series, xTicks []tick, logY bool) string {
	const W, H, L, R, T, B = 520.0, 300.0, 64.0, 14.0, 30.0, 44.0
	pw, ph := W-L-R, H-T-B
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, p := range s.pts {
			xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
			ymin, ymax = math.Min(ymin, p[1]), math.Max(ymax, p[1])
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`,
		W, H, W, H, html.EscapeString(title))
	fmt.Fprintf(&sb, `<rect width="%.0f" height="%.0f" fill="#fff"/><text x="%.0f" y="18" font-size="13" font-weight="600">%s</text>`, W, H, L, html.EscapeString(title))
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" fill="#888">no data</text></svg>`, L+20, T+ph/2)
		return sb.String()
	}
	if xTicks != nil {
		xmin, xmax = 0, xTicks[len(xTicks)-1].v
	} else {
		xmin = 0
		xmax = math.Max(xmax+0.5, 1)
	}
	fy := func(y float64) float64 { return y }
	if logY {
		ymin = math.Pow(10, math.Floor(math.Log10(math.Max(ymin, 0.001))))
		ymax = math.Pow(10, math.Ceil(math.Log10(math.Max(ymax, ymin*10))))
		fy = math.Log10
	} else {
		ymin = 0
		ymax = niceCeil(ymax * 1.05)
	}
	px := func(x float64) float64 { return L + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return T + ph - (fy(y)-fy(ymin))/(fy(ymax)-fy(ymin))*ph }
	// Grid and y ticks.
	var yt []tick
	if logY {
		for v := ymin; v <= ymax*1.0001; v *= 10 {
			yt = append(yt, tick{v, trimNum(v)})
		}
	} else {
		step := ymax / 5
		for i := 0; i <= 5; i++ {
			yt = append(yt, tick{float64(i) * step, shortNum(float64(i) * step)})
		}
	}
	for _, t := range yt {
		y := py(t.v)
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e6e8ef"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="#5b6474">%s</text>`,
			L, L+pw, y, y, L-6, y+4, t.label)
	}
	if xTicks == nil {
		step := niceCeil(xmax / 6)
		for v := 0.0; v <= xmax; v += step {
			xTicks = append(xTicks, tick{v, trimNum(v)})
		}
	}
	for _, t := range xTicks {
		x := px(t.v)
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#f0f1f5"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#5b6474">%s</text>`,
			x, x, T, T+ph, x, T+ph+15, t.label)
	}
	fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#c9cdd8"/>`, L, T, pw, ph)
	fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#5b6474">%s</text>`, L+pw/2, H-8, html.EscapeString(xLabel))
	fmt.Fprintf(&sb, `<text transform="translate(14 %.1f) rotate(-90)" font-size="11" text-anchor="middle" fill="#5b6474">%s</text>`, T+ph/2, html.EscapeString(yLabel))
	for _, s := range ss {
		if len(s.pts) == 0 {
			continue
		}
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`, s.color, strings.Join(pts, " "), s.name)
		if len(s.pts) == 1 {
			fmt.Fprintf(&sb, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), s.color)
		}
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

// niceCeil rounds x up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return trimNum(v/1e6) + "M"
	case v >= 1e3:
		return trimNum(v/1e3) + "k"
	}
	return trimNum(v)
}

func trimNum(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}
