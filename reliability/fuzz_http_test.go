package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"testing"

	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/server"
)

// FuzzHTTPAppend posts fuzzed bodies, stream ids and Expected-Version
// headers to the real append handler (on the in-memory store): the answer
// is always one of the documented statuses with a JSON body, never a 500
// or a crash; a refusal names its rule and writes nothing; an acceptance
// is readable at once.
func FuzzHTTPAppend(f *testing.F) {
	reg := registry(f)
	store, err := memory.New(reg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	srv, err := server.New(server.Config{
		Store: store, Registry: reg,
		Auth:   server.NewAuthenticator(server.Tokens{server.TokenFor(acmeSecret, "acme", "fuzz")}),
		Logger: quietLogger(),
		Limits: server.Limits{MaxBodyBytes: 256 << 10},
	})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, stream string, expected string, body []byte) {
		req := httptest.NewRequest("POST", "/streams/x/events", bytes.NewReader(body))
		req.URL.Path = "/streams/" + stream + "/events"
		req.URL.RawPath = "/streams/" + url.PathEscape(stream) + "/events"
		req.Header.Set("Authorization", "Bearer "+acmeSecret)
		if expected != "" {
			req.Header["Expected-Version"] = []string{expected}
		}
		before, err := store.Head(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code := rec.Code
		// A refusal (or a redirect) writes nothing.
		if code != http.StatusCreated {
			if after, err := store.Head(context.Background()); err != nil || after != before {
				t.Fatalf("status %d for stream %q, body %q, yet the log's head moved from %s to %s (%v)", code, stream, body, before, after, err)
			}
		}
		if code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect || code == http.StatusMovedPermanently {
			// ServeMux sends an unclean path ("/streams//events",
			// "/streams/../events") to its clean form; nothing else.
			if path.Clean(req.URL.Path) == req.URL.Path {
				t.Fatalf("redirect %d for the clean path %q", code, req.URL.Path)
			}
			return
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", code, rec.Body.String())
		}
		switch code {
		case http.StatusCreated:
			// The store outlives the iterations: an earlier input may have
			// created the stream already, so the read must hold this
			// append's very events, at the versions the answer gave.
			var created, read struct {
				Events []struct {
					ID      string `json:"id"`
					Version int64  `json:"version"`
				} `json:"events"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil || len(created.Events) == 0 {
				t.Fatalf("201 without the appended events (%v): %s", err, rec.Body.String())
			}
			get := httptest.NewRequest("GET", "/streams/x", nil)
			get.URL.Path, get.URL.RawPath = "/streams/"+stream, "/streams/"+url.PathEscape(stream)
			get.URL.RawQuery = "from=" + strconv.FormatInt(created.Events[0].Version, 10)
			get.Header.Set("Authorization", "Bearer "+acmeSecret)
			r2 := httptest.NewRecorder()
			h.ServeHTTP(r2, get)
			if r2.Code != http.StatusOK {
				t.Fatalf("appended (201 %s) but reading the stream gives %d: %s", rec.Body.String(), r2.Code, r2.Body.String())
			}
			if err := json.Unmarshal(r2.Body.Bytes(), &read); err != nil {
				t.Fatalf("reading the stream: %v: %s", err, r2.Body.String())
			}
			for i, e := range created.Events {
				if i >= len(read.Events) || read.Events[i].ID != e.ID || read.Events[i].Version != e.Version {
					t.Fatalf("appended (201 %s) but the stream read from version %d does not hold event %s at version %d: %s",
						rec.Body.String(), created.Events[0].Version, e.ID, e.Version, r2.Body.String())
				}
			}
		case http.StatusBadRequest:
			if out["rule"] == nil || out["rule"] == "" {
				t.Fatalf("400 without a rule: %s", rec.Body.String())
			}
		case http.StatusNotFound, http.StatusConflict, http.StatusForbidden, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for stream %q, Expected-Version %q, body %q: %s", code, stream, expected, body, rec.Body.String())
		}
	})
}
