package server_test

import (
	"net/url"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestAppendLocationNamesTheStream: the Location of an append is the URL of
// the stream it wrote to, whatever characters its id holds; a client that
// follows it reads that stream, not another one or a malformed URL.
func TestAppendLocationNamesTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	for _, stream := range []string{"course-1", "a/b", "50%", "a b?c#d", "é", "x&y=z"} {
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
