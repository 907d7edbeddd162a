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
	"log/slog"
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
	Name   string // the token's name: optional, not unique
	// KeyID tells the token apart from every other, named alike or not:
	// KeyID of its stored hash, as TokenTable.List shows it.
	KeyID string
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

// TokenSource lists the valid tokens. Tokens must return once ctx is done:
// the Authenticator bounds each read with AuthConfig.ReadTimeout and counts
// on it to end.
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

// KeyIDLen is the length, in hex digits, of a token's key id.
const KeyIDLen = 12

// KeyID returns the key id of a token whose stored hash is h: the first
// KeyIDLen hex digits (lower case) of the SHA-256 of its secret, the
// hash_prefix of TokenTable.List and `eventstream tokens list`. It names
// the token where a name cannot (names are optional and not unique).
// It is no secret, and every reader of the events the token appends sees
// it: 48 bits of the hash of a secret of NewToken's 256 random bits help
// no one find the secret (a guessable secret hashed into a tokens file
// could be guessed offline against them: the docs ask for random ones).
// Two tokens share an id with a chance of 1 in 2^48 per pair.
func KeyID(h [sha256.Size]byte) string {
	return hex.EncodeToString(h[:KeyIDLen/2])
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

// ErrTokensUnavailable: the list of tokens cannot be read and the last one
// read is too old to be trusted (or none was ever read). The request must be
// refused (503), never checked against a list that may still hold a
// revoked token.
var ErrTokensUnavailable = errors.New("the tokens cannot be read")

// AuthConfig tunes an Authenticator. The zero value of a field means its
// default (in brackets).
type AuthConfig struct {
	// TTL is how long a list of tokens is used before it is read again
	// [5s]: a revocation applies within it (plus the time of one read)
	// while the list can be read. After a read fails, the next one starts
	// no sooner than TTL later, however many requests come meanwhile.
	TTL time.Duration
	// MaxStale bounds the age of the list used while it cannot be read
	// again (the database is down, unreachable or does not answer) [1m].
	// Within it, tokens are checked against the last list read, so that a
	// short outage does not take the API down; past it, every request with
	// a token fails with ErrTokensUnavailable until the list is read again,
	// so that a token revoked just before an outage is not accepted for as
	// long as the outage lasts. Less than TTL means TTL.
	MaxStale time.Duration
	// ReadTimeout bounds one read of the list [3s]. A read runs on its
	// own, not with the context of the request that started it (a client
	// that goes away does not cut it short for everyone), one at a time; a
	// read that has not answered within ReadTimeout has failed.
	ReadTimeout time.Duration
	// Logger gets one warning when an outage starts refusing requests and
	// one line when the tokens can be read again [the Server's Logger when
	// a Server uses the Authenticator, else slog.Default()].
	Logger *slog.Logger
	// Now is the clock [time.Now].
	Now func() time.Time
}

// WithDefaults fills the zero fields (but Logger).
func (c AuthConfig) WithDefaults() AuthConfig {
	if c.TTL <= 0 {
		c.TTL = 5 * time.Second
	}
	if c.MaxStale <= 0 {
		c.MaxStale = time.Minute
	}
	c.MaxStale = max(c.MaxStale, c.TTL)
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 3 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Authenticator checks bearer tokens against a TokenSource, caching the
// list for a few seconds so that revocations apply quickly without a
// database round trip per request. While the source fails, the cached list
// is used up to AuthConfig.MaxStale, then requests are refused: a
// revocation is never ignored for longer than that.
//
// A source that hangs (the database accepts the connection and never
// answers) holds up no request that the cache can answer. One read runs at
// a time, with its own context bounded by AuthConfig.ReadTimeout, and a
// failed read is retried TTL later, not once per request. A request waits
// for a read (never past its own context) only:
//   - when it started the read and either the last read succeeded, so that
//     while the source answers a revocation applies within TTL, or the
//     cache cannot answer it (no list was ever read, or the last one is
//     older than MaxStale), so that it is not refused while the source may
//     well answer;
//   - when the cache cannot answer it and the read in flight was started
//     for that same reason while no read had failed since the last success
//     (the first read at start-up, a burst of requests after an idle spell
//     longer than MaxStale).
//
// Every other request is answered at once: from the cache within MaxStale,
// refused past it. So when the source starts hanging, the request that
// started the read waits ReadTimeout, then is answered from the cache; the
// others are answered meanwhile, and none waits again while the cache can
// answer.
type Authenticator struct {
	src TokenSource
	cfg AuthConfig

	mu       sync.Mutex
	log      *slog.Logger
	cache    []Token
	loaded   time.Time // when the read that filled cache began
	reading  *read     // the read in flight, if any
	err      error     // why the last read failed; nil once one succeeds
	failed   time.Time // when it failed: the next read waits TTL
	refusing bool      // an outage is refusing requests (and was logged)
	since    time.Time // when refusing began
}

// read is one read of the list in flight. Its outcome is recorded in the
// Authenticator before done is closed; err is set by then.
type read struct {
	done   chan struct{}
	err    error
	needed bool // started while the cache could not answer and the source was answering
}

// errReadPending is why a request is refused while the first read since
// the last success has not answered yet.
var errReadPending = errors.New("the read of the tokens has not answered yet")

// NewAuthenticator returns an Authenticator over src with the default
// AuthConfig.
func NewAuthenticator(src TokenSource) *Authenticator {
	return NewAuthenticatorWithConfig(src, AuthConfig{})
}

// NewAuthenticatorWithConfig returns an Authenticator over src tuned by cfg.
func NewAuthenticatorWithConfig(src TokenSource, cfg AuthConfig) *Authenticator {
	return &Authenticator{src: src, cfg: cfg.WithDefaults(), log: cfg.Logger}
}

// useLogger makes l the logger unless one was configured.
func (a *Authenticator) useLogger(l *slog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.log == nil {
		a.log = l
	}
}

// Authenticate returns the principal of secret. Every stored hash is
// compared, in constant time, whatever matches: the time taken does not
// depend on which token (if any) matched or how much of it. The error, if
// any, wraps ErrTokensUnavailable.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (Principal, bool, error) {
	if secret == "" {
		return Principal{}, false, nil
	}
	return a.authenticateHash(ctx, sha256.Sum256([]byte(secret)))
}

// authenticateHash is Authenticate for the SHA-256 of a secret (what the
// audit browser's sessions keep).
func (a *Authenticator) authenticateHash(ctx context.Context, h [sha256.Size]byte) (Principal, bool, error) {
	tokens, err := a.tokens(ctx)
	if err != nil {
		return Principal{}, false, err
	}
	match, found := -1, 0
	for i := range tokens {
		eq := subtle.ConstantTimeCompare(h[:], tokens[i].Hash[:])
		match = subtle.ConstantTimeSelect(eq&^found, i, match) // the first match
		found |= eq
	}
	if match < 0 {
		return Principal{}, false, nil
	}
	t := tokens[match]
	if CheckTenant(t.Tenant) != nil {
		// A tenant no tokens file nor tokens create takes (a row the
		// tokens table got by hand, a list built in code): the empty
		// tenant would pass for "no tenant filter" where a tenant's reads
		// are filtered, and a padded one names no tenant. Such a token
		// opens nothing.
		return Principal{}, false, nil
	}
	return Principal{Tenant: t.Tenant, Name: t.Name, KeyID: KeyID(t.Hash)}, true, nil
}

func (a *Authenticator) tokens(ctx context.Context) ([]Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	if a.cache != nil && now.Sub(a.loaded) < a.cfg.TTL {
		return a.cache, nil
	}
	healthy := a.err == nil // no read has failed since the last success
	r, wait := a.reading, false
	switch {
	case r == nil && (healthy || now.Sub(a.failed) >= a.cfg.TTL) && ctx.Err() == nil:
		// A request already gone starts no read: its context says nothing
		// about the source.
		r = a.startRead(now)
		r.needed = healthy && !a.usable(now)
		wait = healthy || !a.usable(now)
	case r != nil:
		// A read that began while the cache could still answer, and
		// has been running since, is likely hanging: past the bound, no
		// request waits for it.
		wait = r.needed && !a.usable(now)
	}
	if wait {
		a.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
		}
		a.mu.Lock()
		if a.cache != nil && isDone(r) && r.err == nil {
			return a.cache, nil
		}
		now = a.cfg.Now()
	}
	if a.usable(now) {
		return a.cache, nil // a short outage: the list is recent enough
	}
	if err := ctx.Err(); err != nil {
		// The request is gone (or out of time): that says nothing about
		// the source, so it neither starts nor ends an outage.
		return nil, fmt.Errorf("%w: %w", ErrTokensUnavailable, err)
	}
	err := a.err
	if err == nil {
		err = errReadPending
	}
	if !a.refusing {
		a.refusing, a.since = true, now
		stale := "never read"
		if a.cache != nil {
			stale = now.Sub(a.loaded).Round(time.Millisecond).String()
		}
		a.logger().Warn("cannot read the tokens: refusing every request with a token (503) until they can be read again",
			"last_read_ago", stale, "max_stale", a.cfg.MaxStale, "err", err)
	}
	return nil, fmt.Errorf("%w: %w", ErrTokensUnavailable, err)
}

// usable reports whether the cached list may answer a request at now
// (within MaxStale of its read). a.mu is held.
func (a *Authenticator) usable(now time.Time) bool {
	return a.cache != nil && now.Sub(a.loaded) < a.cfg.MaxStale
}

func isDone(r *read) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// startRead starts a read of the list, begun at began, and returns it. a.mu is
// held. The read has its own context, bounded by ReadTimeout: it outlives
// neither that nor the source's answer.
func (a *Authenticator) startRead(began time.Time) *read {
	r := &read{done: make(chan struct{})}
	a.reading = r
	go func() {
		ts, err := a.readTokens()
		a.mu.Lock()
		defer a.mu.Unlock()
		defer close(r.done)
		a.reading, r.err = nil, err
		if err != nil {
			a.err, a.failed = err, a.cfg.Now()
			return
		}
		if a.refusing {
			a.logger().Info("the tokens can be read again: accepting requests", "refused_for", a.cfg.Now().Sub(a.since).Round(time.Millisecond))
			a.refusing = false
		}
		if ts == nil {
			ts = []Token{}
		}
		// The list is as new as the moment its read began: a revocation
		// committed after that may be missing from it.
		a.cache, a.loaded, a.err = ts, began, nil
	}()
	return r
}

// readTokens asks the source, within ReadTimeout. A panic in the source is
// a failed read: it runs outside any request, where nothing would recover
// it.
func (a *Authenticator) readTokens() (ts []Token, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ReadTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			ts, err = nil, fmt.Errorf("the token source panicked: %v", p)
		}
	}()
	ts, err = a.src.Tokens(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %v: %w", a.cfg.ReadTimeout, err)
	}
	return ts, err
}

func (a *Authenticator) logger() *slog.Logger {
	if a.log != nil {
		return a.log
	}
	return slog.Default()
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
// ('#' starts a comment). It is read again, like the tokens table, once
// the cached list is older than the authenticator's TTL.
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
			return nil, fmt.Errorf("read tokens: %w", err)
		}
		raw, err := hex.DecodeString(hash)
		if err != nil || len(raw) != sha256.Size {
			continue
		}
		tok := Token{Tenant: tenant, Name: name}
		copy(tok.Hash[:], raw)
		out = append(out, tok)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	return out, nil
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
// An empty name names no token (ErrNoToken): tokens created without a name
// are stored with the name "", and an empty argument (a script's unset
// variable) would revoke every one of them.
func (t TokenTable) Revoke(ctx context.Context, name string) (int64, error) {
	if name == "" {
		return 0, ErrNoToken
	}
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
	// HashPrefix is the token's key id (KeyID; Add stores the hash in
	// lower case): the API stamps it on the events the token appends, as
	// meta.appended_by_key.
	HashPrefix string     `json:"hash_prefix"`
	Tenant     string     `json:"tenant"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// List describes every stored token.
func (t TokenTable) List(ctx context.Context) ([]TokenInfo, error) {
	rows, err := t.Pool.Query(ctx, `SELECT left(token_sha256, $1), tenant_id, name, created_at, revoked_at FROM eventstream_api_tokens ORDER BY created_at`, KeyIDLen)
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
