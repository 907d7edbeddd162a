package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/server"
)

// gateStore holds every Append at the gate until the test opens it, then
// appends even if the request's deadline passed meanwhile (a slow store
// that does finish).
type gateStore struct {
	eventstore.Store
	entered chan struct{}
	open    chan struct{}
}

func (g *gateStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	g.entered <- struct{}{}
	<-g.open
	return g.Store.Append(context.WithoutCancel(ctx), stream, expected, events...)
}

// TestAppendBodiesInFlightAreBounded: while one append's body fills
// MaxInFlightBodyBytes, another append waits for room and, at its
// deadline, fails with 503 "busy" having written nothing; a body of
// unknown length counts as MaxBodyBytes; reads and requests without a
// valid token are not held. Once the first append ends, appends go
// through again.
func TestAppendBodiesInFlightAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	body := requestedEvent("")
	gate := &gateStore{Store: e.store, entered: make(chan struct{}, 8), open: make(chan struct{})}
	s, err := server.New(server.Config{Store: gate, Registry: schemasReg(), Limits: server.Limits{
		MaxBodyBytes:         64 << 10,
		MaxInFlightBodyBytes: int64(len(body)) * 3 / 2, // room for one body, not two
		RequestTimeout:       time.Second,
	}, Auth: server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	gated := &env{t: t, srv: srv}
	post := func(path string, r io.Reader) (int, string, http.Header) {
		req, err := http.NewRequest("POST", srv.URL+path, r)
		if err != nil {
			return 0, err.Error(), nil
		}
		req.Header.Set("Authorization", "Bearer "+acmeToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error(), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	first := make(chan int, 1)
	go func() {
		code, _, _ := post("/streams/first/events", strings.NewReader(body))
		first <- code
	}()
	select {
	case <-gate.entered: // the first append holds its room, at the gate
	case <-time.After(10 * time.Second):
		t.Fatal("the first append never reached the store")
	}

	// It waits for room until its deadline (1 s), not refused at once.
	asked := time.Now()
	code, text, h := post("/streams/second/events", strings.NewReader(requestedEvent("")))
	if waited := time.Since(asked); waited < time.Second {
		t.Errorf("an append with no room left was answered after %s, want it to wait for room until its 1s deadline", waited)
	}
	if code != 503 || !strings.Contains(text, `"kind":"busy"`) || h.Get("Retry-After") == "" {
		t.Errorf("an append with no room left: %d %s (Retry-After %q), want 503 busy with Retry-After", code, text, h.Get("Retry-After"))
	}
	// Unknown length (chunked): counted as MaxBodyBytes, more than is left.
	code, text, _ = post("/streams/third/events", io.MultiReader(strings.NewReader(requestedEvent(""))))
	if code != 503 || !strings.Contains(text, `"kind":"busy"`) {
		t.Errorf("a chunked append with no room left: %d %s, want 503 busy", code, text)
	}
	if r := gated.do("POST", "/streams/second/events", "", body); r.code != 401 {
		t.Errorf("an append without a token while the room is taken: %d %s, want 401 at once", r.code, r.body)
	}
	if r := gated.do("GET", "/streams/second", acmeToken, ""); r.code != 404 {
		t.Errorf("a read while the room is taken: %d %s, want 404 (the busy appends wrote nothing)", r.code, r.body)
	}
	select {
	case <-gate.entered:
		t.Error("a busy append reached the store")
	default:
	}

	close(gate.open)
	if code := <-first; code != 201 {
		t.Fatalf("the first append: %d, want 201", code)
	}
	if code, text, _ := post("/streams/second/events", strings.NewReader(requestedEvent(""))); code != 201 {
		t.Errorf("an append once the room is free: %d %s, want 201", code, text)
	}
	// Alone, a chunked body fits: its MaxBodyBytes is cut to the bound.
	if code, text, _ := post("/streams/third/events", io.MultiReader(strings.NewReader(requestedEvent("")))); code != 201 {
		t.Errorf("a chunked append once the room is free: %d %s, want 201", code, text)
	}
	for _, stream := range []string{"first", "second", "third"} {
		evs, err := e.store.ReadStream(context.Background(), stream, 1, 0)
		if err != nil || len(evs) != 1 {
			t.Errorf("stream %s: %d events, %v; want 1", stream, len(evs), err)
		}
	}
}
