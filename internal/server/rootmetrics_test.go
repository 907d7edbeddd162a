package server_test

import (
	"crypto/sha256"
	"strings"
	"testing"
)

// TestMetricsCountTheRootRedirectUnderItsOwnRoute: GET / is the 303 to
// the audit browser, counted under route "GET /"; it was counted under
// "other", the route of requests for no such endpoint (404), which it is
// not. A path that is no endpoint is still "other", and so is another
// method on / (it was redirected too).
func TestMetricsCountTheRootRedirectUnderItsOwnRoute(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newMetricsEnv(t, &h)
	if r := e.must(303, "GET", "/", "", ""); r.header.Get("Location") != "/ui/" {
		t.Fatalf("GET / redirects to %q, want /ui/", r.header.Get("Location"))
	}
	e.must(404, "GET", "/nowhere", "", "")
	e.must(404, "POST", "/", "", "") // no endpoint: only GET / is the way in
	r := e.must(200, "GET", "/metrics", metricsSecret, "")
	for _, want := range []string{
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
