package server_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

const metricsSecret = "es_metrics_scraper_secret"

// newMetricsEnv is the test server (newEnvWith) whose GET /metrics asks
// for metricsToken (nil: open).
func newMetricsEnv(t *testing.T, metricsToken *[sha256.Size]byte) *env {
	t.Helper()
	return newEnvWith(t, envOptions{metricsToken: metricsToken})
}

// With a metrics token, GET /metrics answers its secret only: not nothing,
// not a near miss, not an API token (a tenant's or an operator's), which
// is a credential for one tenant's data, not for every tenant's figures.
func TestMetricsTokenGuardsMetrics(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newMetricsEnv(t, &h)
	e.must(200, "GET", "/events", acmeToken, "") // a figure to scrape

	for _, c := range []struct{ name, header string }{
		{"no header", ""},
		{"an empty bearer", "Bearer "},
		{"a wrong secret", "Bearer es_metrics_scraper_secreT"},
		{"a prefix of the secret", "Bearer " + metricsSecret[:len(metricsSecret)-1]},
		{"the secret and more", "Bearer " + metricsSecret + "x"},
		{"the secret, not as a bearer token", "Basic " + metricsSecret},
		{"a tenant's API token", "Bearer " + acmeToken},
		{"an operator's API token", "Bearer " + operatorToken},
	} {
		var hdr []string
		if c.header != "" {
			hdr = []string{"Authorization", c.header}
		}
		r := e.do("GET", "/metrics", "", "", hdr...)
		if r.code != 401 {
			t.Errorf("GET /metrics with %s: %d, want 401", c.name, r.code)
			continue
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("GET /metrics with %s: 401 with WWW-Authenticate %q, want a Bearer challenge", c.name, got)
		}
		if strings.Contains(r.body, "eventstream_") {
			t.Errorf("GET /metrics with %s: the 401 carries metrics: %s", c.name, r.body)
		}
	}

	r := e.must(200, "GET", "/metrics", metricsSecret, "")
	if want := `eventstream_http_requests_total{code="200",method="GET",route="GET /events"} 1`; !strings.Contains(r.body, want) {
		t.Fatalf("GET /metrics with the secret: no %s in\n%s", want, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /metrics with the secret: Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}
	// The scheme is case-insensitive, as for the API's tokens.
	e.must(200, "GET", "/metrics", "", "", "Authorization", "bearer "+metricsSecret)
}

// The metrics secret is no API token: it opens no tenant's data, and
// signs no one in to the audit browser.
func TestMetricsSecretOpensNoAPI(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newMetricsEnv(t, &h)
	for _, path := range []string{"/events", "/projections", "/schemas", "/streams/orders-1"} {
		r := e.do("GET", path, metricsSecret, "")
		if r.code != 401 {
			t.Errorf("GET %s with the metrics secret: %d, want 401: %s", path, r.code, r.body)
		}
	}
	if r := e.do("POST", "/streams/orders-1/events", metricsSecret, requestedEvent("acme")); r.code != 401 {
		t.Errorf("an append with the metrics secret: %d, want 401: %s", r.code, r.body)
	}
	if r := e.do("POST", "/ui/login", "", "token="+metricsSecret+"&next=%2Fui%2F", "Content-Type", "application/x-www-form-urlencoded"); r.code != 401 {
		t.Errorf("signing in to the audit browser with the metrics secret: %d, want 401 (Set-Cookie %q)", r.code, r.header.Values("Set-Cookie"))
	}
}

// Without a metrics token, GET /metrics stays open, as it always was.
func TestMetricsOpenWithoutMetricsToken(t *testing.T) {
	t.Parallel()
	e := newMetricsEnv(t, nil)
	e.must(200, "GET", "/events", acmeToken, "")
	r := e.must(200, "GET", "/metrics", "", "")
	if !strings.Contains(r.body, "eventstream_http_requests_total") {
		t.Fatalf("GET /metrics: no eventstream_http_requests_total in\n%s", r.body)
	}
	if r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("GET /metrics: WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
}

// The digest of an empty secret is refused: no header at all presents it.
func TestNewRefusesAnEmptyMetricsSecret(t *testing.T) {
	t.Parallel()
	sreg := schemas.MustDefault()
	store, err := postgres.New(context.Background(), pgtest.Pool(t), sreg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := server.Config{
		Store: store, Registry: sreg, Auth: server.NewAuthenticator(server.Tokens{}),
		Gatherer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	}
	empty := sha256.Sum256(nil)
	cfg.MetricsToken = &empty
	if _, err := server.New(cfg); err == nil || !strings.Contains(err.Error(), "empty secret") {
		t.Fatalf("server.New with the SHA-256 of an empty secret as the metrics token: %v, want a refusal", err)
	}
	// The control: any other secret is taken.
	h := sha256.Sum256([]byte(" "))
	cfg.MetricsToken = &h
	if _, err := server.New(cfg); err != nil {
		t.Fatalf("server.New with a metrics token: %v", err)
	}
}
