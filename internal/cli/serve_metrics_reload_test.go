package cli_test

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The metrics token file is followed without a restart: a new secret
// written to it opens /metrics and the old one no longer does; emptied,
// it leaves the last secret in use (never an open /metrics) and says so in
// the log. Named by $EVENTSTREAM_METRICS_TOKEN_FILE here; the flag is the
// same file (TestServeMetricsTokenFile).
func TestServeMetricsTokenFileChangesWithoutARestart(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const old, next, last = "metrics-old-5b7e", "metrics-next-0c4d9a11", "metrics-last-77f0e2"
	file := writeFile(t, c.dir, "metrics-token", old+"\n")
	c.env = []string{"EVENTSTREAM_METRICS_TOKEN_FILE=" + file}
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections")
	scrapes := func(when string, within time.Duration, want map[string]int) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ok := true
			for secret, code := range want {
				if got, _ := s.do(t, "GET", "/metrics", secret, ""); got != code {
					ok = false
					if !time.Now().Before(deadline) {
						t.Errorf("%s: GET /metrics with %q: %d, want %d", when, secret, got, code)
					}
				}
			}
			if ok || !time.Now().Before(deadline) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	scrapes("as started", 0, map[string]int{old: 200, next: 401, "": 401})

	writeFile(t, c.dir, "metrics-token", next+"\n")
	scrapes("the file rewritten", 0, map[string]int{next: 200, old: 401, "": 401})

	writeFile(t, c.dir, "metrics-token", "")
	scrapes("the file emptied", 0, map[string]int{next: 200, old: 401, "": 401})
	// The server logs before it answers, but its stderr reaches s.log
	// through a pipe another goroutine copies: wait for the line.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(s.log.String(), "is empty"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the emptied file is not logged:\n%s", s.log)
			break
		}
	}

	writeFile(t, c.dir, "metrics-token", last+"\n")
	scrapes("a secret written again", 2*time.Second, map[string]int{last: 200, next: 401, old: 401, "": 401})

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	scrapes("the file removed", 0, map[string]int{last: 200, "": 401})
	s.stop(t)
	for _, secret := range []string{old, next, last} {
		if strings.Contains(s.log.String(), secret) {
			t.Fatalf("a metrics secret appears in the server's log:\n%s", s.log)
		}
	}
}
