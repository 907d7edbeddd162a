package server_test

import (
	"context"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

// TestDatabaseOutageIsUnavailable: while the database cannot be reached,
// the API answers 503 "unavailable" (retry later), not 500 "internal"
// (a defect of the server), and says nothing of the connection; an
// append's answer carries its ids, since a connection lost at the commit
// leaves its outcome unknown.
func TestDatabaseOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	pu.Host = proxy.Addr()
	pool, err := pgxpool.New(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg := schemas.MustDefault()
	store, err := postgres.New(ctx, pool, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s, err := server.New(server.Config{Store: store, Registry: reg, Auth: server.NewAuthenticator(server.Tokens{
		server.TokenFor(acmeToken, "acme", "acme-app"), server.TokenFor(operatorToken, server.AllTenants, "ops"),
	})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	proxy.SetRefuse(true) // the database is down: no new connection
	proxy.CutAll()        // and the open ones are gone
	for _, req := range []struct{ method, path, token string }{
		{"POST", "/streams/s/events", acmeToken}, {"POST", "/streams/s/events", acmeToken},
		{"POST", "/streams/t/events", operatorToken}, {"GET", "/streams/s", acmeToken}, {"GET", "/events", acmeToken},
	} {
		body := ""
		if req.method == "POST" {
			body = requestedEvent("acme")
		}
		r := e.do(req.method, req.path, req.token, body)
		if r.code != 503 || !strings.Contains(r.body, `"kind":"unavailable"`) || strings.Contains(r.body, pu.Host) {
			t.Errorf("%s %s with the database unreachable: %d %s, want 503 unavailable", req.method, req.path, r.code, r.body)
			continue
		}
		if ids := strings.Contains(r.body, `"event_ids"`); ids != (req.method == "POST") {
			t.Errorf("%s %s: event_ids given: %v: %s", req.method, req.path, ids, r.body)
		}
	}
}

// truncated is a request body that ends before its end, as when the
// client goes away in the middle of sending it.
type truncated struct{ sent bool }

func (b *truncated) Read(p []byte) (int, error) {
	if b.sent {
		return 0, io.ErrUnexpectedEOF
	}
	b.sent = true
	return copy(p, `{"type":"course.generation.req`), nil
}

// TestTruncatedBodyIsTheClients: a body cut short is a 400, not taken for
// a database outage (503) nor logged as a defect of the server (500).
func TestTruncatedBodyIsTheClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	req := httptest.NewRequest("POST", "/streams/s/events", &truncated{})
	req.Header.Set("Authorization", "Bearer "+acmeToken)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	if w.Code != 400 || !strings.Contains(w.Body.String(), `"rule":"body"`) {
		t.Fatalf("a truncated body: %d %s, want 400 with rule body", w.Code, w.Body.String())
	}
}

// TestDatabaseRestartIsUnavailable: when PostgreSQL ends the server's
// connections (a restart, a failover, an administrator), the request that
// finds its connection gone is told to retry (503 unavailable), not that
// the server failed (500), and the retry succeeds.
func TestDatabaseRestartIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := pgtest.Schema(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set("application_name", schema) // so that only this test's connections are ended
	pu.RawQuery = q.Encode()
	pool, err := pgxpool.New(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	admin := pgtest.Pool(t)
	reg := schemas.MustDefault()
	store, err := postgres.New(ctx, pool, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s, err := server.New(server.Config{Store: store, Registry: reg, Auth: server.NewAuthenticator(server.Tokens{
		server.TokenFor(acmeToken, "acme", "acme-app"),
	})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	e.must(201, "POST", "/streams/s/events", acmeToken, requestedEvent(""))
	e.must(200, "GET", "/streams/s", acmeToken, "")
	var ended int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, schema).Scan(&ended); err != nil || ended == 0 {
		t.Fatalf("ending the server's connections: %d ended, %v", ended, err)
	}
	if r := e.do("GET", "/streams/s", acmeToken, ""); r.code != 503 || !strings.Contains(r.body, `"kind":"unavailable"`) {
		t.Fatalf("a read on a connection the database ended: %d %s, want 503 unavailable", r.code, r.body)
	}
	e.must(200, "GET", "/streams/s", acmeToken, "")
}
