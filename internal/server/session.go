package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultSessionTTL is how long a sign-in to the audit browser lasts.
const DefaultSessionTTL = 12 * time.Hour

// DefaultMaxSessions is how many live sessions of the audit browser one
// token keeps: a new sign-in past it ends the oldest. Without a cap, a
// token (or whoever holds it) signing in in a loop fills the sessions
// table without bound.
const DefaultMaxSessions = 20

// DefaultSessionPurgeInterval is how often a started server deletes the
// audit browser's expired sessions (Server.Start). A sign-in deletes them
// too, but a server nobody signs in to would otherwise keep them forever.
// They never open a page, expired or not: this only bounds the table.
const DefaultSessionPurgeInterval = 15 * time.Minute

// DefaultSessionPurgeBatch is how many expired sessions one statement of a
// purge deletes (Config.SessionPurgeBatch).
const DefaultSessionPurgeBatch = 10_000

// sessionPurgeTimeout bounds one purge, all its batches together, so that a database that hangs
// holds no connection of the pool for longer.
const sessionPurgeTimeout = 30 * time.Second

// sessionIDLen is the length of a session id as the cookie holds it: 32
// random bytes, base64url without padding.
const sessionIDLen = 43

// sessions maps the audit browser's session ids to the SHA-256 of the token
// each signed in with. The cookie holds the id, never the token, so a
// stolen cookie (or a log of one) is not the API token: it opens the
// audit browser only, until it expires or its browser signs out, and the
// token behind it still has to be valid on every page.
type sessions interface {
	// create starts a session for the token whose SHA-256 is token,
	// lasting ttl, and returns its id. It deletes the expired sessions,
	// and the token's oldest live ones beyond the newest max (the new one
	// included).
	create(ctx context.Context, token [sha256.Size]byte, ttl time.Duration, max int) (string, error)
	// lookup returns the token hash of a live (not ended, not expired)
	// session.
	lookup(ctx context.Context, id string) ([sha256.Size]byte, bool, error)
	// end ends a session (nothing if there is none).
	end(ctx context.Context, id string) error
	// purge deletes the expired sessions, every token's, at most batch
	// of them per statement, and returns how many it deleted (until the
	// error, if any).
	purge(ctx context.Context, batch int) (int64, error)
}

func newSessionID() (id string, hash [sha256.Size]byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", hash, err
	}
	id = base64.RawURLEncoding.EncodeToString(b[:])
	return id, sha256.Sum256([]byte(id)), nil
}

// wellFormed reports whether id can be a session id: anything else is not
// looked up.
func wellFormed(id string) bool {
	if len(id) != sessionIDLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// signInPurgeLimit bounds the expired sessions a sign-in deletes (see
// pgSessions.create).
const signInPurgeLimit = 100

// pgSessions keeps sessions in eventstream_ui_sessions, so that every
// server sharing the database knows them. Times are the database's.
type pgSessions struct {
	pool *pgxpool.Pool
}

func (s pgSessions) create(ctx context.Context, token [sha256.Size]byte, ttl time.Duration, max int) (string, error) {
	id, h, err := newSessionID()
	if err != nil {
		return "", err
	}
	tok := hex.EncodeToString(token[:])
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One sign-in of a token at a time: two at once would each count
		// the other's session out and leave one more than max.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('eventstream_ui_sessions ' || $1, 0))`, tok); err != nil {
			return err
		}
		// Expired sessions go as new ones come, at most
		// signInPurgeLimit of them, this token's first, skipping those a
		// purge or another sign-in is deleting: a sign-in never carries a
		// backlog of expired sessions nor waits on a purge's batch. The
		// backlog is the purge's, every SessionPurgeInterval on a started
		// server (Server.Start).
		if _, err := tx.Exec(ctx, `DELETE FROM eventstream_ui_sessions WHERE session_sha256 IN (
			SELECT session_sha256 FROM eventstream_ui_sessions WHERE expires_at <= now()
			ORDER BY token_sha256 = $1 DESC LIMIT $2 FOR UPDATE SKIP LOCKED)`, tok, signInPurgeLimit); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO eventstream_ui_sessions (session_sha256, token_sha256, expires_at)
			VALUES ($1, $2, now() + make_interval(secs => $3))`, hex.EncodeToString(h[:]), tok, ttl.Seconds()); err != nil {
			return err
		}
		// The new session is kept first: created_at is when each
		// transaction began, not the order in which they took the lock.
		_, err := tx.Exec(ctx, `DELETE FROM eventstream_ui_sessions WHERE session_sha256 IN (
			SELECT session_sha256 FROM eventstream_ui_sessions WHERE token_sha256 = $1
			ORDER BY session_sha256 = $3 DESC, created_at DESC, session_sha256 OFFSET $2)`, tok, max, hex.EncodeToString(h[:]))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("start a session: %w", err)
	}
	return id, nil
}

// purge deletes batch after batch, each statement its own transaction,
// until one deletes fewer than batch: a table of millions of expired
// sessions is then never cleared by one statement that locks every row
// it deletes until it commits and makes one transaction of them all. It
// skips the expired sessions a sign-in is deleting at the same moment (it
// deletes them itself): the purge then never waits on a sign-in, nor the
// two on each other, and a batch made short by them ends the purge.
func (s pgSessions) purge(ctx context.Context, batch int) (int64, error) {
	var n int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM eventstream_ui_sessions WHERE session_sha256 IN (
			SELECT session_sha256 FROM eventstream_ui_sessions WHERE expires_at <= now()
			LIMIT $1 FOR UPDATE SKIP LOCKED)`, batch)
		if err != nil {
			return n, fmt.Errorf("delete the expired sessions: %w", err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return n, nil
		}
	}
}

func (s pgSessions) lookup(ctx context.Context, id string) ([sha256.Size]byte, bool, error) {
	var out [sha256.Size]byte
	h := sha256.Sum256([]byte(id))
	var token string
	err := s.pool.QueryRow(ctx, `SELECT token_sha256 FROM eventstream_ui_sessions
		WHERE session_sha256 = $1 AND expires_at > now()`, hex.EncodeToString(h[:])).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, false, nil
	}
	if err != nil {
		return out, false, fmt.Errorf("read a session: %w", err)
	}
	raw, err := hex.DecodeString(token)
	if err != nil || len(raw) != sha256.Size {
		return out, false, nil
	}
	copy(out[:], raw)
	return out, true, nil
}

func (s pgSessions) end(ctx context.Context, id string) error {
	h := sha256.Sum256([]byte(id))
	if _, err := s.pool.Exec(ctx, `DELETE FROM eventstream_ui_sessions WHERE session_sha256 = $1`, hex.EncodeToString(h[:])); err != nil {
		return fmt.Errorf("end a session: %w", err)
	}
	return nil
}

// memSessions keeps sessions in the process, for a server without a
// database (its sessions end when it stops, and other servers do not know
// them).
type memSessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[sha256.Size]byte]memSession
	seq uint64
}

type memSession struct {
	token   [sha256.Size]byte
	expires time.Time
	seq     uint64 // the order of sign-ins, for the cap
}

func (s *memSessions) create(_ context.Context, token [sha256.Size]byte, ttl time.Duration, max int) (string, error) {
	id, h, err := newSessionID()
	if err != nil {
		return "", err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[sha256.Size]byte]memSession{}
	}
	var mine [][sha256.Size]byte // the token's live sessions
	for k, v := range s.m {
		switch {
		case !now.Before(v.expires):
			delete(s.m, k)
		case v.token == token:
			mine = append(mine, k)
		}
	}
	if extra := len(mine) + 1 - max; extra > 0 {
		slices.SortFunc(mine, func(a, b [sha256.Size]byte) int { return cmp.Compare(s.m[a].seq, s.m[b].seq) })
		for _, k := range mine[:extra] {
			delete(s.m, k)
		}
	}
	s.seq++
	s.m[h] = memSession{token: token, expires: now.Add(ttl), seq: s.seq}
	return id, nil
}

func (s *memSessions) lookup(_ context.Context, id string) ([sha256.Size]byte, bool, error) {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[h]
	if !ok || !s.now().Before(v.expires) {
		return [sha256.Size]byte{}, false, nil
	}
	return v.token, true, nil
}

// purge deletes every expired session at once: there are no locks to hold.
func (s *memSessions) purge(context.Context, int) (int64, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
			n++
		}
	}
	return n, nil
}

func (s *memSessions) end(_ context.Context, id string) error {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, h)
	return nil
}
