package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
	"github.com/brainhq/eventstream/schemas"
)

// Tokens of the test tenants.
const (
	acmeToken     = "es_acme_secret"
	globexToken   = "es_globex_secret"
	operatorToken = "es_operator_secret"
)

// env is a server on a fresh schema, with the audit projection.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	h     http.Handler // the server's handler, which srv serves
	store *postgres.Store
	pool  *pgxpool.Pool
	rt    *projections.Runtime
	reg   *prometheus.Registry
	ready error
}

func newEnv(t testing.TB, limits server.Limits) *env {
	t.Helper()
	return newEnvWith(t, envOptions{limits: limits})
}

// envOptions adjusts newEnvWith's server.
type envOptions struct {
	limits server.Limits
	// extra projections run besides the audit projection, retried
	// per retry.
	extra []projections.Projection
	retry projections.RetryPolicy
	// tokenTable replaces the test tenants' fixed tokens with the
	// eventstream_api_tokens table, checked with auth.
	tokenTable bool
	auth       server.AuthConfig
	// sessionTTL is the audit browser's session lifetime (0: default).
	sessionTTL time.Duration
	// maxSessions is the audit browser's sessions per token (0: default).
	maxSessions int
	// purgeInterval, if set, starts the server (Server.Start) with this
	// SessionPurgeInterval, and closes it at the end of the test.
	purgeInterval time.Duration
	// metricsToken, if set, is the digest of the secret GET /metrics asks
	// for (Config.MetricsToken).
	metricsToken *[sha256.Size]byte
}

func newEnvWith(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	sreg := schemas.MustDefault()
	store, err := postgres.New(ctx, pool, sreg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ms, err := server.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, pool: pool, reg: prometheus.NewRegistry()}
	m, err := server.NewMetrics(e.reg, sreg)
	if err != nil {
		t.Fatal(err)
	}
	logStore := m.InstrumentStore(store)
	e.rt, err = projections.New(pool, logStore, sreg, projections.Config{Registerer: e.reg, Logger: slog.New(slog.DiscardHandler), Retry: o.retry},
		append([]projections.Projection{audit.Projection()}, o.extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var tokens server.TokenSource = server.Tokens{
		server.TokenFor(acmeToken, "acme", "acme-app"),
		server.TokenFor(globexToken, "globex", "globex-app"),
		server.TokenFor(operatorToken, server.AllTenants, "ops"),
	}
	if o.tokenTable {
		tokens = server.TokenTable{Pool: pool}
	}
	s, err := server.New(server.Config{
		Store: logStore, Registry: sreg, Pool: pool, Runtime: e.rt,
		Auth: server.NewAuthenticatorWithConfig(tokens, o.auth), Gatherer: e.reg, Metrics: m,
		Ready:  func(context.Context) error { return e.ready },
		Limits: o.limits, SessionTTL: o.sessionTTL, MaxSessions: o.maxSessions,
		SessionPurgeInterval: o.purgeInterval, MetricsToken: o.metricsToken,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.purgeInterval > 0 {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
	}
	e.h = s.Handler()
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// project brings the audit projection to the head.
func (e *env) project() {
	e.t.Helper()
	if _, err := e.rt.CatchUp(context.Background(), audit.Name, 0); err != nil {
		e.t.Fatal(err)
	}
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("not JSON (%d): %s", r.code, r.body)
	}
	return m
}

func (e *env) do(method, path, token, body string, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{code: res.StatusCode, header: res.Header, body: string(b)}
}

// must fails the test unless the status is want.
func (e *env) must(want int, method, path, token, body string, headers ...string) response {
	e.t.Helper()
	r := e.do(method, path, token, body, headers...)
	if r.code != want {
		e.t.Fatalf("%s %s: want %d, got %d: %s", method, path, want, r.code, r.body)
	}
	return r
}

func requestedEvent(tenant string) string {
	meta := ""
	if tenant != "" {
		meta = fmt.Sprintf(`,"meta":{"tenant_id":%q,"correlation_id":"corr-1"}`, tenant)
	}
	return fmt.Sprintf(`{"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}%s}`, uuid.New(), meta)
}

// logSize counts the whole log as the operator sees it.
func (e *env) logSize() int {
	e.t.Helper()
	r := e.must(200, "GET", "/events?limit=1000", operatorToken, "")
	return len(r.json(e.t)["events"].([]any))
}
