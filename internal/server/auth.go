package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/migrate"
)

// AllTenants is the tenant of an operator's token: it sees every tenant.
const AllTenants = "*"

// Principal is who a request authenticated as.
type Principal struct {
	Tenant string
	Name   string
}

// Operator reports whether the principal sees every tenant.
func (p Principal) Operator() bool { return p.Tenant == AllTenants }

// Sees reports whether the principal may see a tenant's events.
func (p Principal) Sees(tenant string) bool { return p.Operator() || p.Tenant == tenant }

// Token is a stored token: the SHA-256 of the secret, never the secret.
type Token struct {
	Hash   [sha256.Size]byte
	Tenant string
	Name   string
}

// TokenSource lists the valid tokens.
type TokenSource interface {
	Tokens(ctx context.Context) ([]Token, error)
}

// NewToken returns a new random secret for a bearer token.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "es_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// TokenFor returns the stored form of a secret.
func TokenFor(secret, tenant, name string) Token {
	return Token{Hash: sha256.Sum256([]byte(secret)), Tenant: tenant, Name: name}
}

// HashToken returns the hex SHA-256 of a token secret, as stored.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CheckTenant refuses a tenant id a token cannot carry.
func CheckTenant(tenant string) error {
	if tenant == "" || len(tenant) > 255 || strings.ContainsAny(tenant, " \t\r\n\x00") {
		return fmt.Errorf("tenant %q: want 1 to 255 characters without spaces (or %q for an operator)", tenant, AllTenants)
	}
	return nil
}

// Authenticator checks bearer tokens against a TokenSource, caching the
// list for a few seconds so that revocations apply quickly without a
// database round trip per request.
type Authenticator struct {
	src TokenSource
	ttl time.Duration

	mu     sync.Mutex
	cache  []Token
	loaded time.Time
}

// NewAuthenticator returns an Authenticator over src.
func NewAuthenticator(src TokenSource) *Authenticator {
	return &Authenticator{src: src, ttl: 5 * time.Second}
}

// Authenticate returns the principal of secret. Every stored hash is
// compared, in constant time, whatever matches: the time taken does not
// depend on which token (if any) matched or how much of it.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (Principal, bool, error) {
	if secret == "" {
		return Principal{}, false, nil
	}
	tokens, err := a.tokens(ctx)
	if err != nil {
		return Principal{}, false, err
	}
	h := sha256.Sum256([]byte(secret))
	match, found := -1, 0
	for i := range tokens {
		eq := subtle.ConstantTimeCompare(h[:], tokens[i].Hash[:])
		match = subtle.ConstantTimeSelect(eq&^found, i, match) // the first match
		found |= eq
	}
	if match < 0 {
		return Principal{}, false, nil
	}
	return Principal{Tenant: tokens[match].Tenant, Name: tokens[match].Name}, true, nil
}

func (a *Authenticator) tokens(ctx context.Context) ([]Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache != nil && time.Since(a.loaded) < a.ttl {
		return a.cache, nil
	}
	ts, err := a.src.Tokens(ctx)
	if err != nil {
		if a.cache != nil {
			return a.cache, nil // keep serving while the source is briefly down
		}
		return nil, err
	}
	if ts == nil {
		ts = []Token{}
	}
	a.cache, a.loaded = ts, time.Now()
	return ts, nil
}

// Tokens is a fixed list (tests, the dev token of serve --dev).
type Tokens []Token

// Tokens returns the list.
func (t Tokens) Tokens(context.Context) ([]Token, error) { return t, nil }

// Sources merges token sources.
type Sources []TokenSource

// Tokens returns every source's tokens.
func (s Sources) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	for _, src := range s {
		ts, err := src.Tokens(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

// TokenFile reads tokens from a file of lines "TENANT SHA256-HEX [NAME]"
// ('#' starts a comment). It is read again when it changes.
type TokenFile struct {
	Path string
}

// Tokens parses the file.
func (f TokenFile) Tokens(context.Context) ([]Token, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer fh.Close()
	return ParseTokenFile(fh.Name(), bufio.NewScanner(fh))
}

// ParseTokenFile parses the lines of a tokens file.
func ParseTokenFile(name string, sc *bufio.Scanner) ([]Token, error) {
	var out []Token
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s:%d: want TENANT SHA256-HEX [NAME]", name, n)
		}
		raw, err := hex.DecodeString(fields[1])
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s:%d: the second field must be the token's SHA-256 in hex (64 characters), never the token itself", name, n)
		}
		if err := CheckTenant(fields[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, n, err)
		}
		t := Token{Tenant: fields[0], Name: strings.Join(fields[2:], " ")}
		copy(t.Hash[:], raw)
		out = append(out, t)
	}
	return out, sc.Err()
}

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Component names the server's migrations in eventstream_migrations.
const Component = "api"

// Migrations returns the server's embedded migrations (the tokens table).
func Migrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	return migrate.Load(sub)
}

// TokenTable keeps tokens in the eventstream_api_tokens table.
type TokenTable struct {
	Pool *pgxpool.Pool
}

// Tokens lists the tokens not revoked.
func (t TokenTable) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := t.Pool.Query(ctx, `SELECT token_sha256, tenant_id, name FROM eventstream_api_tokens WHERE revoked_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var hash, tenant, name string
		if err := rows.Scan(&hash, &tenant, &name); err != nil {
			return nil, err
		}
		raw, err := hex.DecodeString(hash)
		if err != nil || len(raw) != sha256.Size {
			continue
		}
		tok := Token{Tenant: tenant, Name: name}
		copy(tok.Hash[:], raw)
		out = append(out, tok)
	}
	return out, rows.Err()
}

// Add stores a new token for tenant and returns its secret (shown once).
func (t TokenTable) Add(ctx context.Context, tenant, name string) (string, error) {
	if err := CheckTenant(tenant); err != nil {
		return "", err
	}
	secret, err := NewToken()
	if err != nil {
		return "", err
	}
	_, err = t.Pool.Exec(ctx, `INSERT INTO eventstream_api_tokens (token_sha256, tenant_id, name) VALUES ($1, $2, $3)`, HashToken(secret), tenant, name)
	if err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return secret, nil
}

// ErrNoToken: no token matches.
var ErrNoToken = errors.New("no such token")

// Revoke revokes the tokens named name (or whose hash starts with name,
// of at least 8 characters, compared literally: never as a LIKE pattern).
func (t TokenTable) Revoke(ctx context.Context, name string) (int64, error) {
	tag, err := t.Pool.Exec(ctx, `UPDATE eventstream_api_tokens SET revoked_at = now()
		WHERE revoked_at IS NULL AND (name = $1 OR (length($1) >= 8 AND left(token_sha256, length($1)) = $1))`, name)
	if err != nil {
		return 0, err
	}
	if tag.RowsAffected() == 0 {
		return 0, ErrNoToken
	}
	return tag.RowsAffected(), nil
}

// TokenInfo describes a stored token (never its secret).
type TokenInfo struct {
	HashPrefix string     `json:"hash_prefix"`
	Tenant     string     `json:"tenant"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// List describes every stored token.
func (t TokenTable) List(ctx context.Context) ([]TokenInfo, error) {
	rows, err := t.Pool.Query(ctx, `SELECT left(token_sha256, 12), tenant_id, name, created_at, revoked_at FROM eventstream_api_tokens ORDER BY created_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TokenInfo
	for rows.Next() {
		var i TokenInfo
		if err := rows.Scan(&i.HashPrefix, &i.Tenant, &i.Name, &i.CreatedAt, &i.RevokedAt); err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}
