package cli_test

import (
	"strings"
	"testing"
	"time"
)

// TestServeNoProjectionsExportsTheLag: serve --no-projections runs no
// projection, but the projections' lag, head, held and stopped gauges are
// read from the database, where the processes that run them keep their
// checkpoints and locks, and /metrics exports them as every serve does
// (docs/operations/serve.md, Metrics). Before, without Run nothing
// measured them and they were missing, so an API-only fleet's /metrics
// had no lag at all.
func TestServeNoProjectionsExportsTheLag(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections")
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var code int
		code, body = s.do(t, "GET", "/metrics", "", "")
		if code == 200 && strings.Contains(body, `eventstream_projection_lag_seconds{projection="audit"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lag gauge within 30s (%d):\n%s", code, grepMetric(body, "eventstream_projection_"))
		}
	}
	for _, want := range []string{
		`eventstream_projection_head_position{projection="audit"}`,
		`eventstream_projection_held{projection="audit"} 0`,    // nobody runs it
		`eventstream_projection_running{projection="audit"} 0`, // not this process
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepMetric(body, "eventstream_projection_"))
		}
	}
	s.stop(t)
}

func grepMetric(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
