package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/server"
)

// TestAppendLocationNamesTheStream: the Location of an append is the URL of
// the stream it wrote to, whatever characters its id holds; a client that
// follows it reads that stream, not another one or a malformed URL.
func TestAppendLocationNamesTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, stream := range []string{"orders-1", "a/b", "50%", "a b?c#d", "é", "x&y=z"} {
		r := e.must(201, "POST", "/streams/"+url.PathEscape(stream)+"/events", acmeToken, requestedEvent(""))
		loc := r.header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Errorf("stream %q: Location %q is not the stream's path (%v)", stream, loc, err)
			continue
		}
		if got := e.must(200, "GET", loc, acmeToken, "").json(t)["stream"]; got != stream {
			t.Errorf("stream %q: Location %q reads stream %q", stream, loc, got)
		}
	}
}

// TestOversizedBatchIsRefusedBeforeItIsDecoded: a body of many tiny events
// (a megabyte of {}) is refused for its number of events without the
// server building every one of them first: a request may not cost the
// server hundreds of times its size in memory. Not parallel, so that the
// allocations counted are this request's.
func TestOversizedBatchIsRefusedBeforeItIsDecoded(t *testing.T) {
	const body = 1 << 20
	e := newEnv(t, server.Limits{MaxBodyBytes: body})
	for _, key := range []string{"events", "EVENTS"} {
		n := (body - 100) / 3
		in := `{"events":[{}],"` + key + `":[` + strings.Repeat("{},", n-1) + "{}]}"
		if key == "events" {
			in = `{"events":[` + strings.Repeat("{},", n-1) + "{}]}"
		}
		req := httptest.NewRequest("POST", "/streams/s/events", strings.NewReader(in))
		req.Header.Set("Authorization", "Bearer "+acmeToken)
		w := httptest.NewRecorder()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e.h.ServeHTTP(w, req)
		runtime.ReadMemStats(&after)
		if w.Code != 400 || !strings.Contains(w.Body.String(), `"rule":"batch-size"`) {
			t.Fatalf("%d events under %q: %d %s, want 400 batch-size", n, key, w.Code, w.Body.String())
		}
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(100*body); got > limit {
			t.Errorf("%d events under %q: refusing them allocated %d MB, want at most %d MB (100 times the body)", n, key, got>>20, limit>>20)
		}
	}
	if n := e.logSize(); n != 0 {
		t.Fatalf("the log has %d events, want 0", n)
	}
}

// TestAppendKeysMatchExactly: a key of an append body is one of the
// documented names, spelled as documented. encoding/json matches struct
// fields without regard to case, so "TYPE" beside "type" was a second
// value for the same field that the duplicate-key check did not see, and
// the server took whichever came last: a proxy or a log reading the body
// as JSON saw another event than the one stored.
func TestAppendKeysMatchExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	payload := `{"course_id":"0f0f0f0f-0000-4000-8000-000000000000","topic":"Go","attempt":1,"language":"en"}`
	for name, body := range map[string]string{
		"a second type in capitals":       `{"type":"course.generation.requested","TYPE":"course.generation.failed","payload":` + payload + `}`,
		"the type in capitals":            `{"Type":"course.generation.requested","payload":` + payload + `}`,
		"the payload in capitals":         `{"type":"course.generation.requested","PAYLOAD":` + payload + `}`,
		"a second expected version":       `{"expected_version":"any","Expected_Version":"exists","events":[{"type":"course.generation.requested","payload":` + payload + `}]}`,
		"a batch's event key in capitals": `{"events":[{"type":"course.generation.requested","payload":` + payload + `},{"type":"course.generation.requested","Payload":` + payload + `}]}`,
		"an empty key":                    `{"":1,"type":"course.generation.requested","payload":` + payload + `}`,
		"a second id in capitals":         `{"id":"01971b7e-5c3a-7d2e-9f4b-2a6c8e0d1f35","ID":"01971b7e-5c3a-7d2e-9f4b-2a6c8e0d1f36","type":"course.generation.requested","payload":` + payload + `}`,
	} {
		r := e.do("POST", "/streams/s/events", acmeToken, body)
		if r.code != 400 || !strings.Contains(r.body, `"rule":"envelope"`) {
			t.Errorf("%s: %d %s, want 400 with rule envelope", name, r.code, r.body)
		}
	}
	if n := e.logSize(); n != 0 {
		t.Fatalf("the log has %d events, want 0", n)
	}
}

// TestMetricsMethodLabelIsBounded: a request's method is a label of the
// HTTP metrics, and any token is a method to net/http: a client without a
// token, sending methods of its own, must not add a series per method
// (every one kept for the life of the process, and scraped).
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for i := range 20 {
		e.do(fmt.Sprintf("BOGUS%d", i), "/events", "", "")
		e.do(fmt.Sprintf("BOGUS%d", i), "/streams/s/events", acmeToken, "")
	}
	e.must(200, "GET", "/events", acmeToken, "")
	r := e.must(200, "GET", "/metrics", "", "")
	if strings.Contains(r.body, "BOGUS") {
		t.Fatalf("the metrics hold a series per made-up method:\n%s", grepLines(r.body, "BOGUS"))
	}
	if !strings.Contains(r.body, `eventstream_http_requests_total{code="404",method="other",route="other"} 40`) {
		t.Fatalf("the made-up methods are not counted as one:\n%s", grepLines(r.body, "eventstream_http_requests_total"))
	}
	if !strings.Contains(r.body, `eventstream_http_requests_total{code="200",method="GET",route="GET /events"} 1`) {
		t.Fatalf("GET is not counted as itself:\n%s", grepLines(r.body, "eventstream_http_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStreamPageStopsAtMaxPageBytes: a stream read over HTTP holds about
// eventstore.MaxPageBytes at most, whatever its limit, and its next leads
// on to the rest: a tenant's stream of near-maximum events would
// otherwise cost the server a gigabyte per request.
func TestStreamPageStopsAtMaxPageBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	const n = 40
	blob := strings.Repeat("x", 900<<10)
	for i := range n {
		ev := eventstore.Event{Type: "course.generation.requested", Source: "test",
			Payload: json.RawMessage(fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1}`, uuid.New())),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme", Extra: map[string]any{"blob": blob, "i": i}}}
		if _, err := e.store.Append(context.Background(), "big", eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	var versions []int64
	path := "/streams/big?limit=1000"
	for pages := 1; ; pages++ {
		if pages > n {
			t.Fatalf("%d pages for %d events", pages, n)
		}
		var out struct {
			Events []eventstore.Event `json:"events"`
			Next   *int64             `json:"next"`
		}
		r := e.must(200, "GET", path, acmeToken, "")
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatal(err)
		}
		if len(r.body) > eventstore.MaxPageBytes+2*eventstore.MaxEventBytes {
			t.Fatalf("page %d: %d bytes of JSON, want about MaxPageBytes (%d) at most", pages, len(r.body), eventstore.MaxPageBytes)
		}
		for _, ev := range out.Events {
			versions = append(versions, ev.Version)
		}
		if out.Next == nil {
			if pages < 3 {
				t.Fatalf("%d events of 900 KiB came in %d pages, want at least 3", n, pages)
			}
			break
		}
		path = fmt.Sprintf("/streams/big?limit=1000&from=%d", *out.Next)
	}
	if len(versions) != n {
		t.Fatalf("read %d events over the pages, want %d", len(versions), n)
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("event %d has version %d, want %d", i, v, i+1)
		}
	}
}
