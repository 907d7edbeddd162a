package server_test

import (
	"crypto/sha256"
	"strings"
	"testing"
)

// TestMetricsCountEveryRoute: eventstream_http_requests_total counts every
// request the server answers, not only the API's: scrapes of /metrics
// under route "GET /metrics" (a scrape shows in the next one, and a
// refused scrape, 401, shows too: a scraper with a stale secret is seen),
// the audit browser's redirect from /ui and its style sheet. Before, these
// were served uncounted, while the audit browser's pages and the API were.
func TestMetricsCountEveryRoute(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newMetricsEnv(t, &h)
	e.must(401, "GET", "/metrics", "es_stale_secret", "")
	e.must(200, "GET", "/metrics", metricsSecret, "")
	e.must(301, "GET", "/ui", "", "")
	e.must(200, "GET", "/ui/static/style.css", "", "")
	r := e.must(200, "GET", "/metrics", metricsSecret, "")
	for _, want := range []string{
		`eventstream_http_requests_total{code="401",method="GET",route="GET /metrics"} 1`,
		`eventstream_http_requests_total{code="200",method="GET",route="GET /metrics"} 1`,
		`eventstream_http_requests_total{code="301",method="GET",route="GET /ui"} 1`,
		`eventstream_http_requests_total{code="200",method="GET",route="GET /ui/static/style.css"} 1`,
		`eventstream_http_request_duration_seconds_count{route="GET /metrics"} 2`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(r.body, "eventstream_http_request"))
	}
}
