package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// promQLInDocs is every PromQL expression of the Grafana dashboard and of
// the alerts docs/operations/serve.md and docs/projections.md suggest.
func promQLInDocs(t *testing.T) map[string][]string {
	t.Helper()
	docs := filepath.Join("..", "..", "docs")
	out := map[string][]string{}
	raw, err := os.ReadFile(filepath.Join(docs, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					out["grafana-dashboard.json"] = append(out["grafana-dashboard.json"], s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	walk(doc)
	for _, f := range []string{filepath.Join("operations", "serve.md"), "projections.md"} {
		b, err := os.ReadFile(filepath.Join(docs, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)expr: (.+)$`).FindAllStringSubmatch(string(b), -1) {
			out[f] = append(out[f], m[1])
		}
		for _, m := range regexp.MustCompile("`([^`\\n]*\\(eventstream_[^`\\n]*)`").FindAllStringSubmatch(string(b), -1) {
			out[f] = append(out[f], m[1])
		}
	}
	if len(out["grafana-dashboard.json"]) < 10 || len(out[filepath.Join("operations", "serve.md")]) < 3 || len(out["projections.md"]) < 3 {
		t.Fatalf("found too few expressions: %v", out)
	}
	return out
}

// TestPromQLInDocsFitsTheMetrics: every expression the dashboard and the
// docs give names metrics the server exports, takes rate() of counters
// (and histogram buckets) only, histogram_quantile() of buckets summed by
// le, aggregates by labels the metric has, and never sums a projection
// gauge that every process reads from the database (position, head, lag,
// parked, held, stopped): with several `serve` processes on one database
// (docs/operations/serve.md) each exports the same figure, and a sum
// multiplies it by the number of processes. The dashboard's parked
// events panel and serve.md's EventsParked alert summed parked events.
func TestPromQLInDocsFitsTheMetrics(t *testing.T) {
	t.Parallel()
	exprs := promQLInDocs(t)

	e := envWithEveryOutcome(t)

	types := map[string]dto.MetricType{}
	labels := map[string]map[string]bool{}
	for deadline := time.Now().Add(30 * time.Second); ; {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			types[mf.GetName()] = mf.GetType()
			if labels[mf.GetName()] == nil {
				labels[mf.GetName()] = map[string]bool{}
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					labels[mf.GetName()][lp.GetName()] = true
				}
			}
		}
		if _, ok := types["eventstream_projection_lag_seconds"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the projections' gauges never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fromDatabase := map[string]bool{
		"eventstream_projection_position": true, "eventstream_projection_head_position": true,
		"eventstream_projection_lag_events": true, "eventstream_projection_lag_seconds": true,
		"eventstream_projection_parked_events": true, "eventstream_projection_held": true,
		"eventstream_projection_stopped": true,
	}

	metricRe := regexp.MustCompile(`eventstream_[a-z_]+`)
	rateRe := regexp.MustCompile(`\b(?:rate|irate|increase)\((eventstream_[a-z_]+)`)
	sumRe := regexp.MustCompile(`\bsum(?: by \(([a-z_, ]+)\))? \((eventstream_[a-z_]+)`)
	byRe := regexp.MustCompile(`\b(?:sum|max|min|avg) by \(([a-z_, ]+)\) \((?:rate\()?(eventstream_[a-z_]+)`)
	selRe := regexp.MustCompile(`(eventstream_[a-z_]+)\{([^}]*)\}`)
	family := func(n string) string {
		if _, ok := types[n]; ok {
			return n
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b := strings.TrimSuffix(n, suf); b != n && types[b] == dto.MetricType_HISTOGRAM {
				return b
			}
		}
		return ""
	}
	for where, list := range exprs {
		for _, x := range list {
			for _, n := range metricRe.FindAllString(x, -1) {
				if family(n) == "" {
					t.Errorf("%s: %q: no metric %s", where, x, n)
				}
			}
			for _, m := range rateRe.FindAllStringSubmatch(x, -1) {
				f := family(m[1])
				if !(types[f] == dto.MetricType_COUNTER && f == m[1] || types[f] == dto.MetricType_HISTOGRAM && strings.HasSuffix(m[1], "_bucket") || strings.HasSuffix(m[1], "_sum") || strings.HasSuffix(m[1], "_count")) {
					t.Errorf("%s: %q: rate of %s, a %v", where, x, m[1], types[f])
				}
			}
			if strings.Contains(x, "histogram_quantile") && (!strings.Contains(x, "_bucket[") || !regexp.MustCompile(`by \([^)]*\ble\b`).MatchString(x)) {
				t.Errorf("%s: %q: histogram_quantile needs buckets summed by le", where, x)
			}
			for _, m := range byRe.FindAllStringSubmatch(x, -1) {
				f := family(m[2])
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "le" && !labels[f][l] {
						t.Errorf("%s: %q: %s has no label %q", where, x, f, l)
					}
				}
			}
			for _, m := range selRe.FindAllStringSubmatch(x, -1) {
				for _, kv := range strings.Split(m[2], ",") {
					if l := strings.TrimSpace(strings.SplitN(kv, "=", 2)[0]); l != "" && !labels[family(m[1])][strings.TrimRight(l, "!~")] {
						t.Errorf("%s: %q: %s has no label %q", where, x, m[1], l)
					}
				}
			}
			for _, m := range sumRe.FindAllStringSubmatch(x, -1) {
				if fromDatabase[m[2]] {
					t.Errorf("%s: %q: sums %s, which every process reads from the database: use max", where, x, m[2])
				}
			}
		}
	}
}
