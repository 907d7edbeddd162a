package cli_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// --metrics-token-file is read before serve connects: the database URL
// here has no server behind it, so a serve that got as far as connecting
// would exit 75 (unavailable) instead of 2.
func TestServeRefusesBadMetricsTokenFileBeforeStarting(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	for _, tc := range []struct {
		file string
		want string // in the message
	}{
		{filepath.Join(c.dir, "missing"), "--metrics-token-file: open " + filepath.Join(c.dir, "missing") + ": no such file or directory"},
		{c.dir, "is a directory"},
		{writeFile(t, c.dir, "empty", ""), "is empty"},
		{writeFile(t, c.dir, "newline", "\n"), "is empty"},
		{writeFile(t, c.dir, "crlf", "\r\n"), "is empty"},
		// Secrets Prometheus could not send as written.
		{writeFile(t, c.dir, "spaced", " s3cret\n"), "want printable ASCII without spaces"},
		{writeFile(t, c.dir, "two-lines", "s3cret\nmore\n"), "want printable ASCII without spaces"},
		{writeFile(t, c.dir, "two-newlines", "s3cret\n\n"), "want printable ASCII without spaces"},
	} {
		r := c.runIn(context.Background(), "--database-url", nowhere, "serve", "--addr", "127.0.0.1:0", "--metrics-token-file", tc.file)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve --metrics-token-file %s: want exit 2, nothing served and %q in the message; got %s", filepath.Base(tc.file), tc.want, r)
		}
		if strings.Contains(r.stderr, "s3cret") {
			t.Errorf("serve --metrics-token-file %s: the message shows the secret: %s", filepath.Base(tc.file), r.stderr)
		}
	}
	// The controls get as far as connecting.
	for _, content := range []string{"s3cret", "s3cret\n", "s3cret\r\n"} {
		f := writeFile(t, c.dir, "good", content)
		if r := c.runIn(context.Background(), "--database-url", nowhere, "serve", "--addr", "127.0.0.1:0", "--metrics-token-file", f); r.code != 75 {
			t.Errorf("serve --metrics-token-file holding %q with no database: want exit 75 (unavailable), got %s", content, r)
		}
	}
	if r := c.runIn(context.Background(), "serve", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--metrics-token-file") || !strings.Contains(r.stdout, "credentials_file") {
		t.Errorf("serve --help does not document --metrics-token-file: %s", r)
	}
}

// --metrics-token-file reaches the server: /metrics answers its secret
// only, and the secret opens nothing else.
func TestServeMetricsTokenFile(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	const secret = "metrics-0f3a9c2e"
	token := strings.TrimSpace(c.must(0, "tokens", "create", "acme").stdout)
	file := writeFile(t, c.dir, "metrics-token", secret+"\n")
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections", "--metrics-token-file", file)

	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("GET /metrics without a token: %d, WWW-Authenticate %q; want 401 and a Bearer challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	for name, tok := range map[string]string{"a wrong secret": secret + "0", "a tenant's API token": token} {
		if code, _ := s.do(t, "GET", "/metrics", tok, ""); code != 401 {
			t.Errorf("GET /metrics with %s: %d, want 401", name, code)
		}
	}
	if code, body := s.do(t, "GET", "/metrics", secret, ""); code != 200 || !strings.Contains(body, "eventstream_") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics with the secret: %d\n%s", code, body)
	}
	if code, _ := s.do(t, "GET", "/events", secret, ""); code != 401 {
		t.Errorf("GET /events with the metrics secret: %d, want 401", code)
	}
	if code, body := s.do(t, "GET", "/events", token, ""); code != 200 {
		t.Errorf("GET /events with the tenant's token: %d %s", code, body)
	}
	s.stop(t)
	if strings.Contains(s.log.String(), secret) {
		t.Fatalf("the metrics secret appears in the server's log:\n%s", s.log)
	}
}

// Without --metrics-token-file, /metrics stays open, as it always was.
func TestServeMetricsOpenByDefault(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	s := startServe(t, c, "--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections")
	if code, body := s.do(t, "GET", "/metrics", "", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics without a token: %d\n%s", code, body)
	}
	s.stop(t)
}
