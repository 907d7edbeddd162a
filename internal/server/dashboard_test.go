package server_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/server"
)

// TestGrafanaDashboardUsesExistingMetrics: every metric the dashboard in
// docs/ queries is one the server exports.
func TestGrafanaDashboardUsesExistingMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`eventstream_[a-z_]+`).FindAllString(string(raw), -1) {
		names[strings.TrimSuffix(m, "_bucket")] = true
	}
	if len(names) < 8 {
		t.Fatalf("the dashboard queries only %v", names)
	}
	e := envWithEveryOutcome(t)

	deadline := time.Now().Add(30 * time.Second)
	for {
		body := e.must(200, "GET", "/metrics", "", "").body
		var missing []string
		for n := range names {
			if !strings.Contains(body, "\n"+n+"{") && !strings.Contains(body, "\n"+n+" ") && !strings.Contains(body, "\n"+n+"_bucket{") {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard queries metrics the server does not export: %v", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// envWithEveryOutcome is an env whose metrics have seen an append of each
// outcome (accepted, refused, conflicting) and whose projection runtime
// runs until the test ends, so that every metric the docs name is there.
func envWithEveryOutcome(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, server.Limits{})
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	e.must(400, "POST", "/streams/s/events", acmeToken, `{"type":"course.generation.requested","payload":{}}`)
	e.must(409, "POST", "/streams/s/events", acmeToken, requestedEvent(""), "Expected-Version", "no-stream")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}
