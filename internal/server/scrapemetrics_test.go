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
// GET /, the 303 to the audit browser, is counted under route "GET /"; it
// was counted under "other", the route of requests for no such endpoint
// (404), which it is not. A path that is no endpoint is still "other", and
// so is another method on / (it was redirected too).
func TestMetricsCountEveryRoute(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newMetricsEnv(t, &h)
	e.must(401, "GET", "/metrics", "es_stale_secret", "")
	e.must(200, "GET", "/metrics", metricsSecret, "")
	e.must(301, "GET", "/ui", "", "")
	e.must(200, "GET", "/ui/static/style.css", "", "")
	if r := e.must(303, "GET", "/", "", ""); r.header.Get("Location") != "/ui/" {
		t.Fatalf("GET / redirects to %q, want /ui/", r.header.Get("Location"))
	}
	e.must(404, "GET", "/nowhere", "", "")
	e.must(404, "POST", "/", "", "") // no endpoint: only GET / is the way in
	r := e.must(200, "GET", "/metrics", metricsSecret, "")
	for _, want := range []string{
		`eventstream_http_requests_total{code="401",method="GET",route="GET /metrics"} 1`,
		`eventstream_http_requests_total{code="200",method="GET",route="GET /metrics"} 1`,
		`eventstream_http_requests_total{code="301",method="GET",route="GET /ui"} 1`,
		`eventstream_http_requests_total{code="200",method="GET",route="GET /ui/static/style.css"} 1`,
		`eventstream_http_request_duration_seconds_count{route="GET /metrics"} 2`,
		`eventstream_http_requests_total{code="303",method="GET",route="GET /"} 1`,
		`eventstream_http_requests_total{code="404",method="GET",route="other"} 1`,
		`eventstream_http_requests_total{code="404",method="POST",route="other"} 1`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(r.body, `code="303",method="GET",route="other"`) {
		t.Errorf("the redirect from / is counted under route other")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(r.body, "eventstream_http_request"))
	}
}
