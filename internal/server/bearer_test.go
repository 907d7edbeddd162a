package server_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestBearerCredentialsAsRFC6750Writes: the API and /metrics take a
// bearer token as RFC 6750 writes it, "Bearer" in any case, one or more
// spaces (1*SP), the token, and nothing else: not another scheme, not
// "Bearer" glued to the token, not a tab after the scheme, not a token
// followed by more words. Before, a tab or other whitespace after
// "Bearer " was trimmed away and the token accepted. A refusal is 401 with
// a Bearer challenge, which says error="invalid_token" when a bearer token
// was presented (RFC 6750, 3.1) and none when none was, and a message
// telling the two apart.
func TestBearerCredentialsAsRFC6750Writes(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte(metricsSecret))
	e := newEnvWith(t, envOptions{limits: server.Limits{}, metricsToken: &h})
	for _, c := range []struct {
		name, header string
		ok           bool
	}{
		{"Bearer", "Bearer %s", true},
		{"lower case", "bearer %s", true},
		{"upper case", "BEARER %s", true},
		{"two spaces (1*SP)", "Bearer  %s", true},
		{"a tab after the scheme", "Bearer\t%s", false},
		{"a space and a tab", "Bearer \t%s", false},
		{"no space", "Bearer%s", false},
		{"another scheme", "Basic %s", false},
		{"the token and more", "Bearer %s x", false},
		{"the scheme twice", "Bearer Bearer %s", false},
	} {
		for _, ep := range []struct{ path, secret string }{{"/events", acmeToken}, {"/metrics", metricsSecret}} {
			header := strings.Replace(c.header, "%s", ep.secret, 1)
			r := e.do("GET", ep.path, "", "", "Authorization", header)
			if c.ok {
				if r.code != 200 {
					t.Errorf("GET %s with %s (%q): %d, want 200: %s", ep.path, c.name, header, r.code, r.body)
				}
				continue
			}
			if r.code != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer realm=") {
				t.Errorf("GET %s with %s (%q): %d, WWW-Authenticate %q; want 401 with a Bearer challenge", ep.path, c.name, header, r.code, r.header.Get("WWW-Authenticate"))
			}
		}
	}

	for _, ep := range []struct{ path, realm string }{{"/events", "eventstream"}, {"/metrics", "eventstream-metrics"}} {
		for _, c := range []struct{ name, header, challenge, says string }{
			{"no header", "", `Bearer realm="` + ep.realm + `"`, "no Authorization header"},
			{"another scheme", "Basic dXNlcjpwYXNz", `Bearer realm="` + ep.realm + `"`, "not a bearer token"},
			{"an unknown token", "Bearer es_nobody", `Bearer realm="` + ep.realm + `", error="invalid_token"`, "the bearer token is not"},
		} {
			var r struct {
				code      int
				challenge string
				body      string
			}
			var headers []string
			if c.header != "" {
				headers = []string{"Authorization", c.header}
			}
			res := e.do("GET", ep.path, "", "", headers...)
			r.code, r.challenge, r.body = res.code, res.header.Get("WWW-Authenticate"), res.body
			if r.code != 401 || r.challenge != c.challenge || !strings.Contains(r.body, c.says) {
				t.Errorf("GET %s with %s: %d, WWW-Authenticate %q, %s; want 401, %q, saying %q", ep.path, c.name, r.code, r.challenge, r.body, c.challenge, c.says)
			}
		}
	}
}
