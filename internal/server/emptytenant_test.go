package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/server"
)

// TestTokenOfNoTenantOpensNothing: the tokens table takes any text as a
// token's tenant (tokens create checks it; a hand-written INSERT, or a
// tool of its own, does not). A token whose tenant is empty is no
// operator, yet the audit browser filtered a tenant's rows by its tenant
// only when it was not empty: such a token listed every tenant's events.
// A token whose tenant no tokens file or tokens create would take opens
// nothing: 401 on the API and the audit browser's sign-in form.
func TestTokenOfNoTenantOpensNothing(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{tokenTable: true})
	const blank = "es_blank_tenant_secret"
	const spaced = "es_spaced_tenant_secret"
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO eventstream_api_tokens (token_sha256, tenant_id, name)
		VALUES ($1, 'acme', 'acme-app'), ($2, 'globex', 'globex-app'), ($3, '', 'blank'), ($4, 'acme ', 'spaced')`,
		server.HashToken(acmeToken), server.HashToken(globexToken), server.HashToken(blank), server.HashToken(spaced)); err != nil {
		t.Fatal(err)
	}
	e.must(201, "POST", "/streams/acme-orders/events", acmeToken, requestedEvent(""))
	e.must(201, "POST", "/streams/globex-orders/events", globexToken, requestedEvent(""))
	e.project()
	for _, tok := range []string{blank, spaced} {
		for _, path := range []string{"/ui/", "/events", "/projections"} {
			r := e.do("GET", path, tok, "")
			if r.code != 401 || strings.Contains(r.body, "acme-orders") || strings.Contains(r.body, "globex-orders") {
				t.Errorf("GET %s with a token of tenant %q: want 401 and no tenant's events, got %d: %.400s", path, map[string]string{blank: "", spaced: "acme "}[tok], r.code, r.body)
			}
		}
		if r := e.do("POST", "/streams/blank-1/events", tok, requestedEvent("")); r.code != 401 {
			t.Errorf("append with a token of no valid tenant: want 401, got %d: %s", r.code, r.body)
		}
	}
	// The valid tokens of the same table still work.
	e.must(200, "GET", "/ui/", acmeToken, "")
}
