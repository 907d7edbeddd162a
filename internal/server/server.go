package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/schemas"
)

// Limits bound what one request may cost. The zero value of a field means
// its default (in brackets).
type Limits struct {
	// MaxBodyBytes bounds a request body [4 MiB]; larger is 413.
	MaxBodyBytes int64
	// MaxBatchEvents bounds the events of one append [1,000]; more is 400.
	MaxBatchEvents int
	// MaxHeaderBytes bounds the request line and headers [64 KiB]; more
	// is 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading the headers [10s].
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request [30s].
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response [60s].
	WriteTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection [120s].
	IdleTimeout time.Duration
	// RequestTimeout is the deadline of a request's work [30s]; past it the
	// request fails with 503. An append past it may still have been
	// written (the store may commit it after the deadline): the body names
	// the events' ids (event_ids), and retrying the append with the same
	// ids is idempotent.
	RequestTimeout time.Duration
	// MaxPageEvents bounds the events one GET returns [1,000].
	MaxPageEvents int
	// MaxScanEvents bounds the events of the log one GET /events looks at
	// [10,000], those its filters leave out included (a tenant's token
	// always filters by its tenant): a page that reaches it ends early,
	// not end, and its next goes on from the first event it did not look
	// at. Without it a filter that matches little costs a scan of the
	// whole log per request (eventstore.ReadAllOptions.ScanLimit).
	MaxScanEvents int
	// MaxInFlightBodyBytes bounds the append bodies being handled at once
	// [64 MiB], each counted at its Content-Length (MaxBodyBytes when the
	// client does not say). Decoding and validating a body takes many
	// times its size in memory (about 50 times for JSON made only of tiny
	// values), so without a bound a burst of large appends could take the
	// process's memory. An append past it waits for room until its
	// deadline, then fails with 503 "busy", having written nothing.
	MaxInFlightBodyBytes int64
}

// WithDefaults fills the zero fields.
func (l Limits) WithDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 4 << 20
	}
	if l.MaxBatchEvents <= 0 || l.MaxBatchEvents > eventstore.MaxBatchEvents {
		l.MaxBatchEvents = min(1000, eventstore.MaxBatchEvents)
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxPageEvents <= 0 {
		l.MaxPageEvents = 1000
	}
	if l.MaxScanEvents <= 0 {
		l.MaxScanEvents = 10_000
	}
	if l.MaxInFlightBodyBytes <= 0 {
		l.MaxInFlightBodyBytes = 64 << 20
	}
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.ReadTimeout, 30*time.Second)
	def(&l.WriteTimeout, 60*time.Second)
	def(&l.IdleTimeout, 120*time.Second)
	def(&l.RequestTimeout, 30*time.Second)
	return l
}

// Config is what the server serves.
type Config struct {
	// Store is the log. Wrap it with Metrics.InstrumentStore to count
	// appends.
	Store eventstore.Store
	// Registry holds the schemas GET /schemas serves.
	Registry *schemas.Registry
	// Pool is the PostgreSQL database of the read models: the audit
	// browser reads audit_events there.
	Pool *pgxpool.Pool
	// Runtime, if set, answers GET /projections and the UI's lag page.
	Runtime *projections.Runtime
	// Auth checks bearer tokens. Required. Its outage warnings go to
	// Logger unless it was given its own (AuthConfig.Logger).
	Auth *Authenticator
	// Gatherer serves GET /metrics (nil: no metrics endpoint).
	Gatherer prometheus.Gatherer
	// MetricsToken, if set, is the SHA-256 of the secret GET /metrics
	// asks for (Authorization: Bearer SECRET; 401 otherwise). Only the
	// digest is kept, and it is a secret of its own: no API token opens
	// /metrics, and it opens nothing else. Nil leaves /metrics open to
	// whoever reaches it, as before it existed; the metrics carry every
	// tenant's figures.
	MetricsToken *[sha256.Size]byte
	// MetricsTokenFile, if set, is a file holding the secret GET /metrics
	// asks for, as MetricsToken would hold its digest, but followed: a
	// request to /metrics stats the file and, when it changed (another
	// file at the path, another size, mode or modification time), reads
	// it again, so a new secret takes over, and the old one stops
	// opening /metrics, without a restart. The file is also read again,
	// at most once a second, while its modification time is within 2
	// seconds of its last read, for a rewrite a coarse clock would not
	// tell apart. While it cannot be read or holds no valid secret
	// (ReadMetricsSecret), the last secret read stays in use (/metrics
	// never opens, and the scrapes that know that secret go on), the
	// error is logged once, and the file is tried again at most once a
	// second. New reads it first and fails if it cannot. Set MetricsToken
	// or MetricsTokenFile, not both.
	MetricsTokenFile string
	// Metrics counts requests (nil: not counted).
	Metrics *Metrics
	// Ready reports whether the server may take traffic (GET /readyz).
	Ready func(ctx context.Context) error
	// SessionTTL is how long a sign-in to the audit browser lasts
	// [DefaultSessionTTL, 12h]. Sessions are kept in Pool's
	// eventstream_ui_sessions table (the server's migrations), shared by
	// every server on the database; without a Pool, in the process.
	SessionTTL time.Duration
	// MaxSessions is how many live sessions of the audit browser one
	// token keeps (0: DefaultMaxSessions, 20): a sign-in past it ends the
	// token's oldest session.
	MaxSessions int
	// SessionPurgeInterval is how often a started server (Start) deletes
	// the expired sessions of the audit browser [DefaultSessionPurgeInterval,
	// 15m]. A sign-in deletes them too; this bounds the table of a server
	// nobody signs in to.
	SessionPurgeInterval time.Duration
	// SessionPurgeBatch is how many expired sessions one statement of a
	// purge deletes [DefaultSessionPurgeBatch, 10000]: a purge deletes
	// batch after batch, each in its own transaction, until one deletes
	// fewer, within 30 seconds per purge.
	SessionPurgeBatch int
	Limits            Limits
	Logger            *slog.Logger
}

// Server serves the API, the metrics and the audit browser.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	handler http.Handler // mux, with the security headers
	log     *slog.Logger
	ui      *ui
	// bodies holds MaxInFlightBodyBytes, taken by the appends in flight.
	bodies *semaphore.Weighted
	// metricsSecret follows Config.MetricsTokenFile (nil without one).
	metricsSecret *metricsSecret

	// The upkeep Start starts and Close stops.
	mu     sync.Mutex
	closed bool
	stop   context.CancelFunc // nil until started
	done   chan struct{}      // closed when the upkeep has returned
}

// New checks cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("server: a store is required")
	case cfg.Registry == nil:
		return nil, errors.New("server: a schema registry is required")
	case cfg.Auth == nil:
		return nil, errors.New("server: an authenticator is required")
	case cfg.MetricsToken != nil && *cfg.MetricsToken == sha256.Sum256(nil):
		// No header at all would present that secret.
		return nil, errors.New("server: the metrics token is the SHA-256 of an empty secret")
	case cfg.MetricsToken != nil && cfg.MetricsTokenFile != "":
		return nil, errors.New("server: both a metrics token and a metrics token file: set one")
	}
	if cfg.MetricsToken != nil {
		h := *cfg.MetricsToken // the caller's array is the caller's to change
		cfg.MetricsToken = &h
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SessionPurgeInterval <= 0 {
		cfg.SessionPurgeInterval = DefaultSessionPurgeInterval
	}
	if cfg.SessionPurgeBatch <= 0 {
		cfg.SessionPurgeBatch = DefaultSessionPurgeBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Auth.useLogger(cfg.Logger)
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, bodies: semaphore.NewWeighted(cfg.Limits.MaxInFlightBodyBytes)}
	var err error
	if cfg.MetricsTokenFile != "" {
		if s.metricsSecret, err = newMetricsSecret(cfg.MetricsTokenFile, cfg.Logger); err != nil {
			return nil, err
		}
	}
	if s.ui, err = newUI(s); err != nil {
		return nil, err
	}
	s.routes()
	s.handler = securityHeaders(s.mux)
	return s, nil
}

// Start starts the server's upkeep, which runs until ctx ends or Close is
// called: it deletes the audit browser's expired sessions now and every
// Config.SessionPurgeInterval. New starts nothing, so a server that is
// never started leaks no goroutine; it serves all the same, and its
// expired sessions, which never open a page, are deleted at sign-ins only.
// Start may be called once; Close stops what it started.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("server: start: closed")
	case s.stop != nil:
		return errors.New("server: start: already started")
	}
	ctx, s.stop = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.purgeSessions(ctx)
	}()
	return nil
}

// Close stops the upkeep Start started, a purge in flight included, and
// returns once it has stopped. It does not stop serving: shut the
// http.Server down first. Close may be called more than once, and without
// Start.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// purgeSessions deletes the expired sessions now and every
// SessionPurgeInterval until ctx ends, SessionPurgeBatch per statement. A
// failed purge (one that ran out of its 30 seconds included) is logged and
// tried again at the next tick: nothing depends on it but the table's size,
// and the batches it committed stay deleted.
func (s *Server) purgeSessions(ctx context.Context) {
	t := time.NewTicker(s.cfg.SessionPurgeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, sessionPurgeTimeout)
		n, err := s.ui.sessions.purge(pctx, s.cfg.SessionPurgeBatch)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("ui: delete the expired sessions", "err", err, "deleted", n, "retry_in", s.cfg.SessionPurgeInterval)
		case n > 0:
			s.log.Debug("ui: deleted the expired sessions", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// securityHeaders gives every response the headers that keep a browser
// from reading it as something else: not only the audit browser's pages
// but its redirects, its style sheet and the plain-text errors of net/http,
// and the API's JSON, which holds strings any tenant wrote. A handler may
// replace them (the audit browser's pages set their own policy).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without it
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) routes() {
	api := func(route string, h func(http.ResponseWriter, *http.Request, Principal)) {
		s.mux.Handle(route, s.instrument(route, s.limit(s.authAPI(h))))
	}
	api("POST /streams/{stream}/events", s.admit(s.appendEvents))
	api("GET /streams/{stream}", s.readStream)
	api("GET /events", s.readAll)
	api("GET /projections", s.projectionStatus)
	api("GET /schemas", s.listSchemas)
	api("GET /schemas/{type}/{version}", s.getSchema)
	s.mux.Handle("GET /healthz", s.instrument("/healthz", http.HandlerFunc(s.healthz)))
	s.mux.Handle("GET /readyz", s.instrument("/readyz", http.HandlerFunc(s.readyz)))
	if s.cfg.Gatherer != nil {
		// Scrapes are counted like every request, under their own route
		// (401s included: a scraper with the wrong secret shows), where
		// promhttp.Handler would count them in a metric of its own.
		s.mux.Handle("GET /metrics", s.instrument("GET /metrics", s.authMetrics(promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))))
	}
	s.ui.routes()
	// The root is the way to the audit browser, a route of its own: under
	// "other" it counted as no such endpoint.
	s.mux.Handle("GET /{$}", s.instrument("GET /", http.RedirectHandler("/ui/", http.StatusSeeOther)))
	s.mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint", nil)
	})))
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPServer returns an http.Server for addr with the limits applied.
func (s *Server) HTTPServer(addr string) *http.Server {
	l := s.cfg.Limits
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) instrument(route string, h http.Handler) http.Handler {
	if s.cfg.Metrics == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.cfg.Metrics.requests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(sw.code)).Inc()
		s.cfg.Metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// methodLabel is a request's method as a metrics label: one of HTTP's, or
// "other". net/http takes any token as a method, and a label per made-up
// method would be a series kept for the life of the process, added by
// anyone, without a token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// limit applies the body size limit and the request deadline.
func (s *Server) limit(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBodyBytes)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Limits.RequestTimeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// admit runs h once the request's body fits in MaxInFlightBodyBytes
// beside the bodies in flight, and holds its room until h returns. A body
// of unknown length counts as MaxBodyBytes, which the body cannot pass. It
// runs after authentication: a request without a valid token takes no
// room. A request still waiting at its deadline fails with 503 "busy".
func (s *Server) admit(h func(http.ResponseWriter, *http.Request, Principal)) func(http.ResponseWriter, *http.Request, Principal) {
	return func(w http.ResponseWriter, r *http.Request, p Principal) {
		n := s.cfg.Limits.MaxBodyBytes
		if r.ContentLength >= 0 && r.ContentLength < n {
			n = r.ContentLength
		}
		n = min(max(n, 1), s.cfg.Limits.MaxInFlightBodyBytes)
		if err := s.bodies.Acquire(r.Context(), n); err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "busy",
				"the server is handling as many append bodies as it takes at once; nothing was written; retry later", nil)
			return
		}
		defer s.bodies.Release(n)
		h(w, r, p)
	}
}

// bearer returns the token of an Authorization: Bearer header, as RFC
// 6750 writes it: the scheme in any case, one or more spaces, the token
// (net/http has trimmed the value's ends). Anything else is no bearer
// token (""): another scheme, no space, a tab, a token holding a space
// or any byte outside printable ASCII. Printable ASCII is wider than RFC
// 6750's b64token (A-Z a-z 0-9 - . _ ~ + / and trailing =), which the
// API's tokens (es_ and base64url) keep to: a metrics secret may be any
// printable ASCII (ReadMetricsSecret), and Prometheus sends it as written.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 8 || !strings.EqualFold(h[:6], "bearer") || h[6] != ' ' {
		return ""
	}
	t := strings.TrimLeft(h[7:], " ")
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return ""
		}
	}
	return t
}

// challenge sets the WWW-Authenticate header of a 401 for realm: with
// error="invalid_token" when the request presented a bearer token (RFC
// 6750, 3.1), without when it presented none (no header, another scheme,
// a malformed one).
func challenge(w http.ResponseWriter, r *http.Request, realm string) {
	v := `Bearer realm="` + realm + `"`
	if bearer(r) != "" {
		v += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", v)
}

// unauthorizedMessage says why a request got 401: invalid when it
// presented a bearer token, else that it presented none, and want, what
// the endpoint asks for ("Authorization: Bearer X").
func unauthorizedMessage(r *http.Request, want, invalid string) string {
	switch {
	case bearer(r) != "":
		return invalid
	case r.Header.Get("Authorization") != "":
		return "the Authorization header is not a bearer token: want " + want + " (the scheme Bearer, a space, the token)"
	}
	return "no Authorization header: want " + want
}

func (s *Server) authAPI(h func(http.ResponseWriter, *http.Request, Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A tenant's events and payloads: no cache keeps them past the
		// token's life, whatever a client or proxy would infer.
		w.Header().Set("Cache-Control", "no-store")
		p, ok, err := s.cfg.Auth.Authenticate(r.Context(), bearer(r))
		if err != nil {
			// The Authenticator logs an outage once, not per request.
			if !errors.Is(err, ErrTokensUnavailable) {
				s.log.Error("authenticate", "err", err)
			}
			writeError(w, http.StatusServiceUnavailable, "unavailable", "cannot check tokens right now (the token list cannot be read); retry later", nil)
			return
		}
		if !ok {
			challenge(w, r, "eventstream")
			writeError(w, http.StatusUnauthorized, "unauthorized", unauthorizedMessage(r, "Authorization: Bearer TOKEN", "the bearer token is not valid (unknown or revoked)"), nil)
			return
		}
		h(w, r, p)
	})
}

// authMetrics lets a request through to h only with the metrics secret
// as its bearer token, when Config.MetricsToken or Config.MetricsTokenFile
// is set. The digests are compared, in constant time, so neither the
// secret's length nor a prefix of it shows in the time taken.
func (s *Server) authMetrics(h http.Handler) http.Handler {
	var want func() [sha256.Size]byte
	switch {
	case s.metricsSecret != nil:
		want = s.metricsSecret.current
	case s.cfg.MetricsToken != nil:
		d := *s.cfg.MetricsToken
		want = func() [sha256.Size]byte { return d }
	default:
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every tenant's figures: no cache keeps them for whoever asks next.
		w.Header().Set("Cache-Control", "no-store")
		got, secret := sha256.Sum256([]byte(bearer(r))), want()
		if subtle.ConstantTimeCompare(got[:], secret[:]) != 1 {
			challenge(w, r, "eventstream-metrics")
			writeError(w, http.StatusUnauthorized, "unauthorized", unauthorizedMessage(r, "Authorization: Bearer SECRET",
				"the bearer token is not the metrics secret (API tokens do not open /metrics)"), nil)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ReadMetricsSecret reads the file of Config.MetricsTokenFile and returns
// the SHA-256 of the secret it holds, which is all the server keeps; the
// secret's bytes are zeroed once hashed. One trailing newline ("\n" or
// "\r\n", as editors and echo write) is not part of it. An empty secret is
// refused (no header at all would present it), and so is one Prometheus
// could not send as written: it trims spaces around credentials_file's
// content, and a header value cannot hold control characters, so such a
// secret would never match. No error shows the secret.
func ReadMetricsSecret(path string) ([sha256.Size]byte, error) {
	raw, err := os.ReadFile(path)
	defer clear(raw)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	secret := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
	if len(secret) == 0 {
		return [sha256.Size]byte{}, fmt.Errorf("%s is empty: want the secret GET /metrics asks for (a trailing newline is dropped)", path)
	}
	for _, c := range secret {
		if c < 0x21 || c > 0x7e {
			return [sha256.Size]byte{}, fmt.Errorf("%s: the secret holds a space, a control character, a second line or a byte outside ASCII; want printable ASCII without spaces (as Prometheus sends it: openssl rand -hex 32, say)", path)
		}
	}
	return sha256.Sum256(secret), nil
}

// metricsSecretRetry is how often, at most, a metrics token file is read
// again when a stat cannot tell it is unchanged: while its last read
// failed, and while its modification time is too close to its last read.
const metricsSecretRetry = time.Second

// metricsSecretRacy is how close to a read a file's modification time
// leaves the read in doubt: a file rewritten within the same tick of a
// coarse file-system clock, at the same size, stats the same.
const metricsSecretRacy = 2 * time.Second

// metricsSecret is the digest of the secret a metrics token file holds,
// read again when the file changes (Config.MetricsTokenFile).
type metricsSecret struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	digest  [sha256.Size]byte // the last secret read
	stat    os.FileInfo       // the file at the last read (nil: no stat)
	readAt  time.Time         // when the last read was
	failure string            // the last read's error ("": it succeeded)
}

// newMetricsSecret reads path, and fails if it holds no secret.
func newMetricsSecret(path string, log *slog.Logger) (*metricsSecret, error) {
	m := &metricsSecret{path: path, log: log}
	if err := m.read(time.Now()); err != nil {
		return nil, fmt.Errorf("server: the metrics token file: %w", err)
	}
	return m, nil
}

// read stats the file, then reads it: a change between the two shows at
// the next stat. A secret read replaces the digest; a failure keeps it.
func (m *metricsSecret) read(now time.Time) error {
	fi, err := os.Stat(m.path)
	var h [sha256.Size]byte
	if err == nil {
		h, err = ReadMetricsSecret(m.path)
	}
	m.stat, m.readAt = fi, now
	if err != nil {
		return err
	}
	m.digest = h
	return nil
}

// current is the digest /metrics asks for now: the file's secret, read
// again if the file changed, or the last one read while the file holds
// none. A failure is logged once (until the error changes or the file
// reads again), and so is the file's reading again.
func (m *metricsSecret) current() [sha256.Size]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.unchanged(now) {
		return m.digest
	}
	old := m.digest
	err := m.read(now)
	switch {
	case err != nil:
		if msg := err.Error(); msg != m.failure {
			m.failure = msg
			m.log.Error("metrics token file: no secret can be read from it; GET /metrics keeps asking for the last secret read until the file holds one again (tried at requests to /metrics, at most once a second)",
				"file", m.path, "err", err)
		}
	case m.failure != "" || m.digest != old:
		m.failure = ""
		m.log.Info("metrics token file read again", "file", m.path, "secret_changed", m.digest != old)
	}
	return m.digest
}

// unchanged reports whether a stat shows the file as last read, so that
// reading it again would bring nothing new (or, after a failure, nothing
// yet worth trying again).
func (m *metricsSecret) unchanged(now time.Time) bool {
	fi, err := os.Stat(m.path)
	switch {
	case err != nil && m.stat == nil:
		// No stat then, none now: only trying again tells.
		return now.Sub(m.readAt) < metricsSecretRetry
	case err != nil, m.stat == nil, !os.SameFile(fi, m.stat), fi.Size() != m.stat.Size(),
		fi.Mode() != m.stat.Mode(), !fi.ModTime().Equal(m.stat.ModTime()):
		return false
	case m.failure != "", m.readAt.Sub(fi.ModTime()) < metricsSecretRacy:
		return now.Sub(m.readAt) < metricsSecretRetry
	}
	return true
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// apiError is the body of every error response.
type apiError struct {
	Error   string                 `json:"error"`
	Kind    string                 `json:"kind"`
	Index   *int                   `json:"index,omitempty"`
	Type    string                 `json:"type,omitempty"`
	Schema  int                    `json:"schema_version,omitempty"`
	Pointer string                 `json:"pointer,omitempty"`
	Rule    string                 `json:"rule,omitempty"`
	Causes  []eventstore.Violation `json:"causes,omitempty"`
	Stream  string                 `json:"stream,omitempty"`
	Expect  string                 `json:"expected_version,omitempty"`
	Actual  *int64                 `json:"actual_version,omitempty"`
	// EventIDs are the ids of an append's events when its outcome is
	// unknown (503, 500): it may have been written, and a retry with
	// these ids is idempotent.
	EventIDs []string `json:"event_ids,omitempty"`
	// Module is the domain module that alone writes the stream of a
	// module_stream refusal.
	Module string `json:"module,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, msg string, extra func(*apiError)) {
	e := apiError{Error: msg, Kind: kind}
	if extra != nil {
		extra(&e)
	}
	writeJSON(w, code, e)
}

// writeStoreError maps the log's typed errors to HTTP.
func (s *Server) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeAppendError(w, r, err, nil)
}

// writeAppendError is writeStoreError for an append of events with these
// ids:
// when the error leaves it unknown whether the append was written (a
// timeout, a cancellation, an internal error), the body carries ids so
// that the client can retry without writing the events twice. A refusal
// (400, 409) wrote nothing and carries none.
func (s *Server) writeAppendError(w http.ResponseWriter, r *http.Request, err error, ids []string) {
	unknown := func(e *apiError) {
		if len(ids) > 0 {
			e.EventIDs = ids
			e.Error += "; the append may have been written: retry it with the same event ids (event_ids), which is idempotent"
		}
	}
	var ve *eventstore.ValidationError
	var je *eventstore.JSONError
	var ce *eventstore.ConcurrencyError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the request body is over %d bytes", mb.Limit), nil)
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, "validation", strings.TrimPrefix(err.Error(), "eventstore: "), func(e *apiError) {
			if ve.Index >= 0 {
				i := ve.Index
				e.Index = &i
			}
			e.Type, e.Schema, e.Pointer, e.Rule, e.Causes = ve.Type, ve.SchemaVersion, ve.Pointer, ve.Rule, ve.Causes
		})
	case errors.As(err, &je):
		writeError(w, http.StatusBadRequest, "validation", je.Message, func(e *apiError) { e.Rule, e.Pointer = je.Rule, "" })
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, "concurrency", strings.TrimPrefix(err.Error(), "eventstore: "), func(e *apiError) {
			a := ce.Actual
			e.Stream, e.Expect, e.Actual = ce.Stream, ce.Expected.String(), &a
		})
	case errors.Is(err, eventstore.ErrDuplicateEvent):
		writeError(w, http.StatusConflict, "duplicate", strings.TrimPrefix(err.Error(), "eventstore: "), nil)
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil:
		writeError(w, http.StatusServiceUnavailable, "timeout", "the request took longer than the server allows", unknown)
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "cancelled", "the request was cancelled", unknown)
	case unreachable(err):
		s.log.Warn("request failed: the database cannot be reached", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the database cannot be reached right now; retry later", unknown)
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error (logged on the server)", unknown)
	}
}

// unreachable reports whether err says the database could not be reached
// or the connection to it was lost (it is down, restarting, or the network
// is), or the store is closed: an outage to retry after, not a defect of
// the server. The store says so itself (eventstore.ErrUnavailable); for
// the server's own queries (read models, tokens) it looks at the standard
// library's errors and at the
// SQLSTATE a PostgreSQL driver's error reports (through a method, so that
// no driver's types leak in here).
func unreachable(err error) bool {
	var ne net.Error
	if errors.Is(err, eventstore.ErrUnavailable) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, eventstore.ErrClosed) {
		return true
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		switch code := pg.SQLState(); {
		case strings.HasPrefix(code, "08"): // connection exception
			return true
		case code == "57P01", code == "57P02", code == "57P03": // shut down by an administrator, crashed, starting up
			return true
		case code == "53300": // too many connections
			return true
		}
	}
	return false
}
