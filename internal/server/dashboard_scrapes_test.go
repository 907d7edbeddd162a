package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrafanaDashboardLeavesScrapesOutOfHTTPRequests: since scrapes of
// /metrics are counted in eventstream_http_requests_total (route "GET
// /metrics", 401s included), the dashboard's "HTTP requests by status"
// panel showed Prometheus's own scrapes, and a scraper's 401s, as traffic.
// Every dashboard query of that metric leaves them out, as the serve docs
// say to.
func TestGrafanaDashboardLeavesScrapesOutOfHTTPRequests(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "eventstream_http_requests_total") {
				continue
			}
			n++
			if !strings.Contains(tg.Expr, `eventstream_http_requests_total{route!="GET /metrics"}`) {
				t.Errorf("panel %q counts scrapes of /metrics as requests: %s", p.Title, tg.Expr)
			}
		}
	}
	if n == 0 {
		t.Fatal("no panel queries eventstream_http_requests_total")
	}
}
