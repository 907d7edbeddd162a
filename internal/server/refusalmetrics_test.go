package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestMetricsCountRefusalsTheAPIMakesItself: a request the API refuses
// by validation before any append call (a batch over --max-batch, an
// unknown or reserved key, malformed JSON, a bad expected version) is a
// validation refusal like the store's, with its rule, and
// eventstream_validation_refusals_total counts it; it is no append call,
// so eventstream_appends_total does not. Before, none of these was
// counted: batch-size, which the docs name among the rules, never showed.
func TestMetricsCountRefusalsTheAPIMakesItself(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{MaxBatchEvents: 2})
	ev := requestedEvent("")
	e.must(400, "POST", "/streams/s/events", acmeToken, fmt.Sprintf(`{"events":[%s,%s,%s]}`, ev, ev, ev))
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":"course.generation.requested","payload":{},"bogus":1}`)
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":"course.generation.requested","payload":{},"meta":{"appended_by":"x"}}`)
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":`)
	e.must(400, "POST", "/streams/s/events", acmeToken, ev, "Expected-Version", "sometime")
	r := e.must(200, "GET", "/metrics", "", "")
	for _, want := range []string{
		`eventstream_validation_refusals_total{rule="batch-size",type="unknown"} 1`,
		`eventstream_validation_refusals_total{rule="envelope",type="unknown"} 1`,
		`eventstream_validation_refusals_total{rule="reserved",type="course.generation.requested"} 1`,
		`eventstream_validation_refusals_total{rule="json",type="unknown"} 1`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(r.body, `eventstream_validation_refusals_total{rule="expected-version"`) {
		t.Errorf("metrics lack the refused expected version")
	}
	if strings.Contains(r.body, "eventstream_appends_total{") {
		t.Errorf("requests refused before any append call are counted as append calls:\n%s", r.body)
	}
}
