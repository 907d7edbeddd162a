package server_test

import (
	"bufio"
	"context"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

func schemasReg() *schemas.Registry { return schemas.MustDefault() }

func TestAuthenticatorMatchesTheRightTokenAmongMany(t *testing.T) {
	t.Parallel()
	var ts server.Tokens
	for _, s := range []string{"a", "b", "c", "d"} {
		ts = append(ts, server.TokenFor("secret-"+s, "tenant-"+s, s))
	}
	auth := server.NewAuthenticator(ts)
	for _, s := range []string{"a", "b", "c", "d"} {
		p, ok, err := auth.Authenticate(context.Background(), "secret-"+s)
		if err != nil || !ok || p.Tenant != "tenant-"+s {
			t.Fatalf("secret-%s: %+v %v %v", s, p, ok, err)
		}
	}
	for _, bad := range []string{"", "secret-", "secret-aa", "SECRET-A"} {
		if _, ok, _ := auth.Authenticate(context.Background(), bad); ok {
			t.Fatalf("%q authenticated", bad)
		}
	}
}

func TestTokenFileHoldsHashesOnly(t *testing.T) {
	t.Parallel()
	good := "# tenants\nacme " + server.HashToken("s1") + " ci\n\n* " + server.HashToken("s2") + "\n"
	ts, err := server.ParseTokenFile("tokens", bufio.NewScanner(strings.NewReader(good)))
	if err != nil || len(ts) != 2 || ts[0].Tenant != "acme" || ts[0].Name != "ci" || ts[1].Tenant != server.AllTenants {
		t.Fatalf("parse: %+v %v", ts, err)
	}
	for _, bad := range []string{"acme es_plain_secret\n", "acme\n", "acme " + server.HashToken("x")[:60] + "\n"} {
		if _, err := server.ParseTokenFile("tokens", bufio.NewScanner(strings.NewReader(bad))); err == nil || !strings.Contains(err.Error(), "tokens:1") {
			t.Fatalf("%q: want an error naming line 1, got %v", bad, err)
		}
	}
}

func TestTokenTableAddListRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	tt := server.TokenTable{Pool: pool}
	secret, err := tt.Add(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tt.Add(ctx, "bad tenant", "x"); err == nil {
		t.Fatal("a tenant with a space was accepted")
	}
	var stored string
	if err := pool.QueryRow(ctx, `SELECT token_sha256 FROM eventstream_api_tokens`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == secret || stored != server.HashToken(secret) {
		t.Fatal("the table does not hold the token's hash")
	}
	p, ok, err := server.NewAuthenticator(tt).Authenticate(ctx, secret)
	if err != nil || !ok || p.Tenant != "acme" {
		t.Fatalf("authenticate: %+v %v %v", p, ok, err)
	}
	list, err := tt.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ci" || strings.Contains(list[0].HashPrefix, secret) {
		t.Fatalf("list: %+v %v", list, err)
	}
	if n, err := tt.Revoke(ctx, "ci"); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, ok, _ := server.NewAuthenticator(tt).Authenticate(ctx, secret); ok {
		t.Fatal("a revoked token authenticated")
	}
	if _, err := tt.Revoke(ctx, "ci"); err != server.ErrNoToken {
		t.Fatalf("revoke twice: %v", err)
	}
}

// TestRevokeMatchesAHashPrefixLiterally: revoking by hash prefix treats the
// argument as hex digits, not as a LIKE pattern; "%" or "_" revoke nothing.
func TestRevokeMatchesAHashPrefixLiterally(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ms, _ := server.Migrations()
	if _, err := migrate.Apply(ctx, pool, server.Component, ms); err != nil {
		t.Fatal(err)
	}
	tt := server.TokenTable{Pool: pool}
	acme, err := tt.Add(ctx, "acme", "acme-app")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := tt.Add(ctx, "globex", "globex-app")
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"%%%%%%%%", "________", server.HashToken(acme)[:6] + "__"} {
		if n, err := tt.Revoke(ctx, pattern); err != server.ErrNoToken {
			t.Errorf("revoke %q: revoked %d tokens (%v), want ErrNoToken", pattern, n, err)
		}
	}
	for _, secret := range []string{acme, globex} {
		if _, ok, err := server.NewAuthenticator(tt).Authenticate(ctx, secret); err != nil || !ok {
			t.Fatalf("a token was revoked by a pattern: %v", err)
		}
	}
	// A real prefix revokes its token only.
	if n, err := tt.Revoke(ctx, server.HashToken(globex)[:8]); err != nil || n != 1 {
		t.Fatalf("revoke by prefix: %d %v", n, err)
	}
	if _, ok, _ := server.NewAuthenticator(tt).Authenticate(ctx, acme); !ok {
		t.Fatal("revoking globex's prefix revoked acme's token")
	}
}
