package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	apiserver "github.com/brainhq/eventstream/internal/server"
)

// --tokens-file (or $EVENTSTREAM_TOKENS_FILE) is read before serve
// connects, like --metrics-token-file: the database URL here has no server
// behind it, so a serve that got as far as connecting would exit 75
// (unavailable) instead of 2.
func TestServeRefusesBadTokensFileBeforeStarting(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	good := writeFile(t, dir, "good", "acme "+apiserver.HashToken("es_good")+" app\n# a comment\n\n")
	for _, tc := range []struct {
		file string
		want string // in the message
	}{
		{missing, "open " + missing + ": no such file or directory"},
		{dir, "is a directory"},
		{writeFile(t, dir, "plain", "acme es_s3cret_in_clear\n"), "plain:1: the second field must be the token's SHA-256 in hex"},
		{writeFile(t, dir, "short", "acme\n"), "short:1: want TENANT SHA256-HEX [NAME]"},
		{writeFile(t, dir, "tenant", "# ok\n"+strings.Repeat("t", 256)+" "+apiserver.HashToken("x")+"\n"), "tenant:2:"},
	} {
		for _, via := range []struct {
			name, flag string // the flag or variable named in the message
			args       []string
			env        []string
		}{
			{"flag", "--tokens-file: ", []string{"--tokens-file", tc.file}, nil},
			{"environment", "$EVENTSTREAM_TOKENS_FILE: ", nil, []string{"EVENTSTREAM_TOKENS_FILE=" + tc.file}},
		} {
			c := &cli{t: t, dir: dir, env: via.env}
			r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "serve", "--addr", "127.0.0.1:0"}, via.args...)...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, via.flag) || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "serving") {
				t.Errorf("serve with the tokens file %s by %s: want exit 2, nothing served and %q, %q in the message; got %s", filepath.Base(tc.file), via.name, via.flag, tc.want, r)
			}
			if strings.Contains(r.stderr, "s3cret") {
				t.Errorf("serve with the tokens file %s: the message shows the secret: %s", filepath.Base(tc.file), r.stderr)
			}
		}
	}
	// The controls get as far as connecting: a good file, by either way,
	// and a flag that wins over a variable naming a missing file.
	for _, c := range []*cli{
		{t: t, dir: dir},
		{t: t, dir: dir, env: []string{"EVENTSTREAM_TOKENS_FILE=" + good}},
		{t: t, dir: dir, env: []string{"EVENTSTREAM_TOKENS_FILE=" + missing}},
	} {
		args := []string{"--database-url", nowhere, "serve", "--addr", "127.0.0.1:0"}
		if len(c.env) == 0 || strings.HasSuffix(c.env[0], missing) {
			args = append(args, "--tokens-file", good)
		}
		if r := c.runIn(context.Background(), args...); r.code != 75 {
			t.Errorf("serve %s with %v and no database: want exit 75 (unavailable), got %s", strings.Join(args[2:], " "), c.env, r)
		}
	}
	if r := (&cli{t: t, dir: dir}).runIn(context.Background(), "serve", "--help"); r.code != 0 || !strings.Contains(r.stdout, "$EVENTSTREAM_TOKENS_FILE") || !strings.Contains(r.stdout, "malformed tokens file is refused (exit 2)") {
		t.Errorf("serve --help does not document the tokens file's check: %s", r)
	}
}

// $EVENTSTREAM_METRICS_TOKEN_FILE stands for --metrics-token-file, with
// the same refusals before anything connects; the flag wins over it.
func TestServeMetricsTokenFileFromEnvironment(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	good := writeFile(t, dir, "good", "s3cret\n")
	for _, tc := range []struct {
		env, flag string
		code      int
		want      string // in the message, with exit 2
	}{
		{missing, "", 2, "$EVENTSTREAM_METRICS_TOKEN_FILE: open " + missing + ": no such file or directory"},
		{dir, "", 2, "$EVENTSTREAM_METRICS_TOKEN_FILE: read " + dir + ": is a directory"},
		{writeFile(t, dir, "empty", "\n"), "", 2, "$EVENTSTREAM_METRICS_TOKEN_FILE " + filepath.Join(dir, "empty") + " is empty"},
		{writeFile(t, dir, "spaced", "s3cret more\n"), "", 2, "want printable ASCII without spaces"},
		// The flag wins: its file is the one read, and refused.
		{good, missing, 2, "--metrics-token-file: open " + missing},
		// The controls get as far as connecting.
		{good, "", 75, ""},
		{missing, good, 75, ""},
	} {
		c := &cli{t: t, dir: dir, env: []string{"EVENTSTREAM_METRICS_TOKEN_FILE=" + tc.env}}
		args := []string{"--database-url", nowhere, "serve", "--addr", "127.0.0.1:0"}
		if tc.flag != "" {
			args = append(args, "--metrics-token-file", tc.flag)
		}
		r := c.runIn(context.Background(), args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve %s with $EVENTSTREAM_METRICS_TOKEN_FILE=%s: want exit %d and %q in the message; got %s", strings.Join(args[2:], " "), filepath.Base(tc.env), tc.code, tc.want, r)
		}
		if strings.Contains(r.stderr, "s3cret") {
			t.Errorf("serve with $EVENTSTREAM_METRICS_TOKEN_FILE=%s: the message shows the secret: %s", filepath.Base(tc.env), r.stderr)
		}
	}
	if r := (&cli{t: t, dir: dir}).runIn(context.Background(), "serve", "--help"); r.code != 0 || !strings.Contains(r.stdout, "$EVENTSTREAM_METRICS_TOKEN_FILE") {
		t.Errorf("serve --help does not document $EVENTSTREAM_METRICS_TOKEN_FILE: %s", r)
	}
}

// The variable's secret reaches the server, and the flag's replaces it.
func TestServeMetricsTokenFileFromEnvironmentReachesTheServer(t *testing.T) {
	t.Parallel()
	const fromEnv, fromFlag = "metrics-env-5d1e", "metrics-flag-9b27"
	c := newCLI(t)
	c.env = []string{"EVENTSTREAM_METRICS_TOKEN_FILE=" + writeFile(t, c.dir, "env-token", fromEnv+"\n")}
	flagFile := writeFile(t, c.dir, "flag-token", fromFlag+"\n")
	for _, tc := range []struct {
		args          []string
		opens, closed []string
	}{
		{nil, []string{fromEnv}, []string{"", fromFlag}},
		{[]string{"--metrics-token-file", flagFile}, []string{fromFlag}, []string{"", fromEnv}},
	} {
		s := startServe(t, c, append([]string{"--database-url", c.url, "serve", "--addr", "127.0.0.1:0", "--no-projections"}, tc.args...)...)
		for _, tok := range tc.opens {
			if code, body := s.do(t, "GET", "/metrics", tok, ""); code != 200 || !strings.Contains(body, "go_goroutines") {
				t.Errorf("serve %v: GET /metrics with %q: %d, want 200", tc.args, tok, code)
			}
		}
		for _, tok := range tc.closed {
			if code, _ := s.do(t, "GET", "/metrics", tok, ""); code != 401 {
				t.Errorf("serve %v: GET /metrics with %q: %d, want 401", tc.args, tok, code)
			}
		}
		s.stop(t)
	}
}
