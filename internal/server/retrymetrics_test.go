package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/server"
)

// TestMetricsCountIdempotentRetriesApart: an append retried with the same
// event ids and content answers 201 with the original result and writes
// nothing; eventstream_events_total and eventstream_appends_total count it
// under outcome "retry", not "ok", which counts written events only (as
// the store's Stats.Events does). Before, a retry was counted as "ok", so
// the written-events rate (the dashboard's event rate) grew with every
// client retry.
func TestMetricsCountIdempotentRetriesApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	ev := fmt.Sprintf(`{"id":%q,"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}}`, uuid.New(), uuid.New())
	first := e.must(201, "POST", "/streams/s/events", acmeToken, ev)
	again := e.must(201, "POST", "/streams/s/events", acmeToken, ev)
	if first.body != again.body {
		t.Fatalf("the retry's answer differs from the original's:\n%s\n%s", first.body, again.body)
	}
	if n := e.logSize(); n != 1 {
		t.Fatalf("the log holds %d events, want 1", n)
	}
	r := e.must(200, "GET", "/metrics", "", "")
	for _, want := range []string{
		`eventstream_events_total{outcome="ok",type="course.generation.requested"} 1`,
		`eventstream_events_total{outcome="retry",type="course.generation.requested"} 1`,
		`eventstream_appends_total{outcome="ok"} 1`,
		`eventstream_appends_total{outcome="retry"} 1`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(r.body, "_total{outcome="))
	}
}
