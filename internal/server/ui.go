package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

//go:embed ui/*.html ui/*.css
var uiFiles embed.FS

// tokenCookie holds the id of a browser's session (never the token it
// signed in with: see sessions) over plain HTTP. The name is the one under
// which earlier versions kept the token itself, so that signing in or out
// replaces such a cookie, and one presented is looked up as a session id
// and refused.
const tokenCookie = "eventstream_token"

// hostCookie holds it over TLS. Browsers store a __Host- cookie only if it
// is Secure, for the whole host (Path=/) and without a Domain, so that no
// other subdomain, and no page of the host served over plain HTTP (which
// an attacker on the network can make a browser load), can set or replace
// it: such a page could otherwise sign the browser in to a session of the
// attacker's choosing. A __Host- cookie cannot be set over plain HTTP,
// where tokenCookie is used.
const hostCookie = "__Host-" + tokenCookie

// uiPageSize is how many events one page of the audit browser lists.
const uiPageSize = 50

type ui struct {
	s        *Server
	pages    map[string]*template.Template
	css      []byte
	sessions sessions
}

func newUI(s *Server) (*ui, error) {
	u := &ui{s: s, pages: map[string]*template.Template{}}
	if s.cfg.Pool != nil {
		u.sessions = pgSessions{pool: s.cfg.Pool}
	} else {
		u.sessions = &memSessions{now: time.Now}
	}
	for _, name := range []string{"login", "events", "event", "projections"} {
		t, err := template.ParseFS(uiFiles, "ui/layout.html", "ui/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("server: ui template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	var err error
	if u.css, err = uiFiles.ReadFile("ui/style.css"); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *ui) routes() {
	m, s := u.s.mux, u.s
	page := func(route string, h func(http.ResponseWriter, *http.Request, Principal)) {
		m.Handle(route, s.instrument(route, s.limit(u.auth(h))))
	}
	page("GET /ui/{$}", u.events)
	m.Handle("GET /ui", s.instrument("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently)))
	page("GET /ui/events/{id}", u.event)
	page("GET /ui/projections", u.projections)
	m.Handle("GET /ui/login", s.instrument("GET /ui/login", http.HandlerFunc(u.loginPage)))
	// Signing in and out set and clear the cookie, which SameSite does not
	// guard: a form on another site could sign the browser out, or in
	// with the attacker's token (the victim then trusts the attacker's
	// audit log as their own). Browsers say where a form post comes from.
	sameOrigin := http.NewCrossOriginProtection()
	sameOrigin.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.render(w, http.StatusForbidden, "login", loginView{view: view{Title: "Sign in"}, Error: "A page of another site sent this form: sign in here instead.", Next: "/ui/"})
	}))
	m.Handle("POST /ui/login", s.instrument("POST /ui/login", sameOrigin.Handler(s.limit(http.HandlerFunc(u.login)))))
	m.Handle("POST /ui/logout", s.instrument("POST /ui/logout", sameOrigin.Handler(s.limit(http.HandlerFunc(u.logout)))))
	m.Handle("GET /ui/static/style.css", s.instrument("GET /ui/static/style.css", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(u.css)
	})))
}

// view is what every page template gets.
type view struct {
	Title     string
	Page      string
	Principal *Principal
}

func (u *ui) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&b, name+".html", data); err != nil {
		u.s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// auth accepts a bearer header or the session cookie, whose session's
// token is checked like a bearer token on every page; without either the
// sign-in page is shown (401).
func (u *ui) auth(h func(http.ResponseWriter, *http.Request, Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p Principal
		var ok bool
		var err error
		msg := ""
		if secret := bearer(r); secret != "" {
			p, ok, err = u.s.cfg.Auth.Authenticate(r.Context(), secret)
			msg = "That token is not valid (any more)."
		} else if c, cerr := r.Cookie(cookieName(r)); cerr == nil && c.Value != "" {
			msg = "Your session has ended or is not valid: sign in again."
			var token [sha256.Size]byte
			var live bool
			if wellFormed(c.Value) {
				token, live, err = u.sessions.lookup(r.Context(), c.Value)
				if err != nil {
					u.s.log.Warn("ui: read session", "err", err)
					http.Error(w, "cannot check the session right now", http.StatusServiceUnavailable)
					return
				}
			}
			if live {
				p, ok, err = u.s.cfg.Auth.authenticateHash(r.Context(), token)
				msg = "The token this session signed in with is not valid (any more)."
			}
		}
		if err != nil {
			http.Error(w, "cannot check tokens right now", http.StatusServiceUnavailable)
			return
		}
		if !ok {
			u.render(w, http.StatusUnauthorized, "login", loginView{view: view{Title: "Sign in"}, Error: msg, Next: r.URL.RequestURI()})
			return
		}
		h(w, r, p)
	})
}

type loginView struct {
	view
	Error string
	Next  string
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	u.render(w, http.StatusOK, "login", loginView{view: view{Title: "Sign in"}, Next: "/ui/"})
}

// safeNext keeps a redirect inside /ui/, with an address that parses: one
// with a control character would go out as is (http.Redirect cleans only
// what parses), a Location that Go's client refuses and browsers rewrite.
func safeNext(next string) string {
	if _, err := url.Parse(next); err != nil || !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/ui/"
	}
	return next
}

// signInFormBytes bounds the sign-in form, which anyone may send and which
// is read whole before any token is checked: a token and the address to go
// back to, itself no longer than a request line, which the form's encoding
// may make three times as long. Go's server reads a request line and its
// headers up to MaxHeaderBytes plus 4 KiB (its buffer), so an address
// the audit browser served may be that long.
func (u *ui) signInFormBytes() int64 {
	return 3*(int64(u.s.cfg.Limits.MaxHeaderBytes)+4<<10) + 4<<10
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, u.signInFormBytes())
	if err := r.ParseForm(); err != nil {
		if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
			u.render(w, http.StatusRequestEntityTooLarge, "login", loginView{view: view{Title: "Sign in"}, Error: "The form is too large.", Next: "/ui/"})
			return
		}
		u.render(w, http.StatusBadRequest, "login", loginView{view: view{Title: "Sign in"}, Error: "Malformed form.", Next: "/ui/"})
		return
	}
	secret, next := strings.TrimSpace(r.PostForm.Get("token")), safeNext(r.PostForm.Get("next"))
	_, ok, err := u.s.cfg.Auth.Authenticate(r.Context(), secret)
	if err != nil {
		// Not the token's fault: saying it is not valid would send the
		// operator off to revoke or recreate a good one.
		if !errors.Is(err, ErrTokensUnavailable) {
			u.s.log.Error("authenticate", "err", err)
		}
		u.render(w, http.StatusServiceUnavailable, "login", loginView{view: view{Title: "Sign in"}, Error: "Tokens cannot be checked right now (the token list cannot be read); retry in a moment.", Next: next})
		return
	}
	if !ok {
		u.render(w, http.StatusUnauthorized, "login", loginView{view: view{Title: "Sign in"}, Error: "That token is not valid.", Next: next})
		return
	}
	// The browser's session, if any, ends before the new one starts: a
	// sign-in (as another token, or the same) leaves no session behind
	// that a copy of the old cookie would still open.
	if !u.endSessions(w, r, "Sign in", next) {
		return
	}
	id, err := u.sessions.create(r.Context(), sha256.Sum256([]byte(secret)), u.s.cfg.SessionTTL, u.s.cfg.MaxSessions)
	if err != nil {
		u.s.log.Error("ui: start a session", "err", err)
		u.render(w, http.StatusServiceUnavailable, "login", loginView{view: view{Title: "Sign in"}, Error: "A session cannot be started right now; retry in a moment.", Next: next})
		return
	}
	clearLegacyCookie(w, r)
	http.SetCookie(w, sessionCookie(r, id))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// endSessions ends the sessions of the cookies the request carries (both
// names: a browser may hold either). It answers 503 and returns false when
// one cannot be ended.
func (u *ui) endSessions(w http.ResponseWriter, r *http.Request, title, next string) bool {
	for _, name := range []string{hostCookie, tokenCookie} {
		ck, err := r.Cookie(name)
		if err != nil || !wellFormed(ck.Value) {
			continue
		}
		if err := u.sessions.end(r.Context(), ck.Value); err != nil {
			u.s.log.Error("ui: end a session", "err", err)
			u.render(w, http.StatusServiceUnavailable, "login", loginView{view: view{Title: title}, Error: "The session cannot be ended right now; " + strings.ToLower(title) + " again in a moment.", Next: next})
			return false
		}
	}
	return true
}

// logout ends the session on the server, so that its cookie opens nothing
// any more wherever a copy of it is, then clears the cookie. When the
// session cannot be ended, the cookie is kept so that signing out can be
// retried.
func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	if !u.endSessions(w, r, "Sign out", "/ui/") {
		return
	}
	clearLegacyCookie(w, r)
	c := sessionCookie(r, "")
	c.MaxAge = -1
	http.SetCookie(w, c)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// sessionCookie is the cookie that holds a browser's session id (or clears
// it, with an empty value). Whenever the browser reached us over TLS,
// including through a proxy that terminates TLS (the deployment the
// documentation recommends), it is hostCookie: Secure, since a cookie that
// is not is sent in clear to any http:// URL of the host the browser is
// made to load, and out of reach of what plain HTTP and other subdomains
// set. Over plain HTTP (serve --dev on a laptop) it is tokenCookie, limited
// to /ui/ and not Secure: browsers refuse a Secure cookie from an http://
// page (but localhost's, in some of them) and so a __Host- one.
func sessionCookie(r *http.Request, id string) *http.Cookie {
	if overTLS(r) {
		return &http.Cookie{Name: hostCookie, Value: id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	}
	return &http.Cookie{Name: tokenCookie, Value: id, Path: "/ui/", HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

// cookieName is the name of the session cookie r's transport uses. Over
// TLS only hostCookie is read: a tokenCookie there may have been set by a
// page over plain HTTP.
func cookieName(r *http.Request) string {
	if overTLS(r) {
		return hostCookie
	}
	return tokenCookie
}

// clearLegacyCookie clears, over TLS, a tokenCookie that an earlier
// version (or plain HTTP) left in the browser: it may hold the token
// itself, and it is no longer read there.
func clearLegacyCookie(w http.ResponseWriter, r *http.Request) {
	if overTLS(r) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	}
}

// overTLS reports whether the browser's connection was TLS: ours, or the
// one a proxy in front of us terminated and reported with
// X-Forwarded-Proto or Forwarded (RFC 7239; the first hop's, the one the
// browser made). The headers are trusted without knowing the proxy: all a
// client forging them over plain HTTP gets is a Secure cookie that its
// browser refuses to store there, so only its own sign-in fails.
func overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if v := r.Header.Get("X-Forwarded-Proto"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		return strings.EqualFold(strings.TrimSpace(first), "https")
	}
	if v := r.Header.Get("Forwarded"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		for pair := range strings.SplitSeq(first, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if strings.EqualFold(k, "proto") {
				return strings.EqualFold(strings.Trim(val, `"`), "https")
			}
		}
	}
	return false
}

// likeTypePattern turns the type filter's pattern into LIKE's.
var likeTypePattern = strings.NewReplacer(`\`, `\\`, "_", `\_`, "*", "%")

// filters are the audit browser's query parameters.
type filters struct {
	Type, Stream, Tenant, Correlation, Since, Until string
	// Before is the cursor of an older page: the position, both halves,
	// of the last row of the page before it (zero: the newest page).
	// Events of one transaction on EventStoreDB share a commit position,
	// so the commit position alone would skip the rest of one that a
	// page boundary cut.
	Before eventstore.Position
}

func (f filters) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"type": f.Type, "stream": f.Stream, "tenant": f.Tenant, "correlation": f.Correlation, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

type eventRow struct {
	Position                                string
	ID                                      uuid.UUID
	Time, Type, Stream, Tenant, Correlation string
	Version                                 int64
}

type eventsView struct {
	view
	F           filters
	Rows        []eventRow
	More        bool
	Older       string
	Unavailable string
	Lagging     int64
	// LaggingAtLeast: Lagging is a lower bound, a tenant's count over a
	// bounded window of the log (measureTenantLag).
	LaggingAtLeast bool
}

// parseUITime reads a datetime-local value (UTC).
func parseUITime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want YYYY-MM-DDTHH:MM (UTC)", s)
}

func (u *ui) events(w http.ResponseWriter, r *http.Request, p Principal) {
	q := r.URL.Query()
	f := filters{Type: q.Get("type"), Stream: q.Get("stream"), Tenant: q.Get("tenant"), Correlation: q.Get("correlation"), Since: q.Get("since"), Until: q.Get("until")}
	if !p.Operator() {
		f.Tenant = p.Tenant
	}
	v := eventsView{view: view{Title: "Audit log", Page: "events", Principal: &p}, F: f}
	// A value PostgreSQL cannot take as text is the caller's mistake, not
	// an outage: it is refused here rather than sent, which would answer
	// 503 "cannot be read" and log a warning at any caller's will.
	for _, c := range []struct{ name, value string }{{"type", f.Type}, {"stream", f.Stream}, {"tenant", f.Tenant}, {"correlation", f.Correlation}} {
		if !utf8.ValidString(c.value) || strings.ContainsRune(c.value, 0) {
			v.Unavailable = fmt.Sprintf("The %s filter is not valid text (UTF-8 without NUL).", c.name)
			u.render(w, http.StatusBadRequest, "events", v)
			return
		}
	}
	if b := q.Get("before"); b != "" {
		pos, err := eventstore.ParsePosition(b)
		// audit_events keeps positions as bigint.
		if err != nil || pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
			v.Unavailable = fmt.Sprintf("before=%q: want a position (N or COMMIT/PREPARE, at most %d), as the Older events link gives.", b, int64(math.MaxInt64))
			u.render(w, http.StatusBadRequest, "events", v)
			return
		}
		f.Before = pos
	}
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Type != "" {
		if strings.ContainsAny(f.Type, "%*") {
			// "*" and "%" match any run of characters; nothing else is a
			// wildcard. A backslash is LIKE's escape character: doubled,
			// it is matched as itself (one ending the pattern is an
			// error), and "_", which type names hold, is escaped, or it
			// would match any one character.
			add("type LIKE $%d", likeTypePattern.Replace(f.Type))
		} else {
			add("type = $%d", f.Type)
		}
	}
	if f.Stream != "" {
		add("stream = $%d", f.Stream)
	}
	if f.Tenant != "" {
		add("tenant_id = $%d", f.Tenant)
	}
	if f.Correlation != "" {
		add("correlation_id = $%d", f.Correlation)
	}
	for _, t := range []struct {
		s, op string
	}{{f.Since, ">="}, {f.Until, "<"}} {
		if t.s == "" {
			continue
		}
		tm, err := parseUITime(t.s)
		if err != nil {
			v.Unavailable = err.Error()
			u.render(w, http.StatusBadRequest, "events", v)
			return
		}
		add("occurred_at "+t.op+" $%d", tm)
	}
	if !f.Before.IsZero() {
		args = append(args, int64(f.Before.Commit), int64(f.Before.Prepare))
		where = append(where, fmt.Sprintf("(position, prepare_position) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := `SELECT position, prepare_position, event_id, occurred_at, type, stream, version, tenant_id, coalesce(correlation_id, '') FROM audit_events`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += fmt.Sprintf(" ORDER BY position DESC, prepare_position DESC LIMIT %d", uiPageSize+1)
	if u.s.cfg.Pool == nil {
		v.Unavailable = "The audit log needs the PostgreSQL read models."
		u.render(w, http.StatusServiceUnavailable, "events", v)
		return
	}
	rows, err := u.s.cfg.Pool.Query(r.Context(), sql, args...)
	if err != nil {
		u.unavailable(w, &v, err)
		return
	}
	var last eventstore.Position // the position of the last row shown
	for rows.Next() {
		var row eventRow
		var pos, prep int64
		var at time.Time
		if err := rows.Scan(&pos, &prep, &row.ID, &at, &row.Type, &row.Stream, &row.Version, &row.Tenant, &row.Correlation); err != nil {
			rows.Close()
			u.unavailable(w, &v, err)
			return
		}
		row.Position = strconv.FormatInt(pos, 10)
		if prep != pos {
			row.Position += "/" + strconv.FormatInt(prep, 10)
		}
		row.Time = at.UTC().Format("2006-01-02 15:04:05.000")
		if len(v.Rows) < uiPageSize {
			last = eventstore.Position{Commit: uint64(pos), Prepare: uint64(prep)}
		}
		v.Rows = append(v.Rows, row)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		u.unavailable(w, &v, err)
		return
	}
	if len(v.Rows) > uiPageSize {
		v.Rows, v.More = v.Rows[:uiPageSize], true
		older := f.values()
		older.Set("before", last.String())
		v.Older = "/ui/?" + older.Encode()
	}
	v.Lagging, v.LaggingAtLeast = u.auditLag(r.Context(), p)
	u.render(w, http.StatusOK, "events", v)
}

func (u *ui) unavailable(w http.ResponseWriter, v *eventsView, err error) {
	v.Unavailable = "The audit log cannot be read: " + friendly(err)
	u.s.log.Warn("ui: read audit_events", "err", err)
	u.render(w, http.StatusServiceUnavailable, "events", v)
}

func friendly(err error) string {
	if strings.Contains(err.Error(), "SQLSTATE 42P01") {
		return "the audit projection is not installed (run eventstream migrate)."
	}
	return "see the server's log."
}

// auditLag returns how many events the audit projection is behind (0 if
// unknown): for a tenant, how many of its own events (forPrincipal), and
// whether that is a lower bound because the count stopped at its window.
func (u *ui) auditLag(ctx context.Context, p Principal) (events int64, atLeast bool) {
	if u.s.cfg.Runtime == nil {
		return 0, false
	}
	lags, err := u.s.cfg.Runtime.Lag(ctx)
	if err != nil {
		return 0, false
	}
	for _, l := range lags {
		if l.Projection != "audit" {
			continue
		}
		if !p.Operator() {
			m, err := u.s.measureTenantLag(ctx, p, l.Position, time.Now())
			if err != nil {
				return 0, false
			}
			return m.events, m.atLeast
		}
		return l.LagEvents, false
	}
	return 0, false
}

type eventDetail struct {
	ID                                                   uuid.UUID
	Position, Time, Type, Stream, Source, Target, Tenant string
	Correlation, Causation, Producer                     string
	Version                                              int64
	SchemaVersion                                        int
}

type eventView struct {
	view
	E         eventDetail
	Payload   string
	Meta      string
	CauseLink string
}

func (u *ui) event(w http.ResponseWriter, r *http.Request, p Principal) {
	id, err := uuid.Parse(r.PathValue("id"))
	notFound := func() {
		v := eventsView{view: view{Title: "Not found", Page: "events", Principal: &p}, Unavailable: "No such event."}
		u.render(w, http.StatusNotFound, "events", v)
	}
	if err != nil || u.s.cfg.Pool == nil {
		notFound()
		return
	}
	var e eventDetail
	var pos, prep int64
	var at time.Time
	var payload, meta []byte
	// Ids are unique per stream only on some backends (EventStoreDB):
	// another tenant's event may carry the same id, so the tenant's own
	// row is looked for, not the first row with the id, which could be
	// the other's and hide this one. Of several, the first in the log.
	err = u.s.cfg.Pool.QueryRow(r.Context(), `SELECT position, prepare_position, event_id, occurred_at, type, stream, version, source, coalesce(target, ''),
		tenant_id, coalesce(correlation_id, ''), coalesce(causation_id, ''), coalesce(producer, ''), schema_version, payload, meta
		FROM audit_events WHERE event_id = $1 AND ($2 OR tenant_id = $3)
		ORDER BY position, prepare_position LIMIT 1`, id, p.Operator(), p.Tenant).Scan(&pos, &prep, &e.ID, &at, &e.Type, &e.Stream, &e.Version, &e.Source, &e.Target,
		&e.Tenant, &e.Correlation, &e.Causation, &e.Producer, &e.SchemaVersion, &payload, &meta)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !p.Sees(e.Tenant)) {
		notFound()
		return
	}
	if err != nil {
		v := eventsView{view: view{Title: "Audit log", Page: "events", Principal: &p}}
		u.unavailable(w, &v, err)
		return
	}
	e.Position = strconv.FormatInt(pos, 10)
	if prep != pos {
		e.Position += "/" + strconv.FormatInt(prep, 10)
	}
	e.Time = at.UTC().Format(time.RFC3339Nano)
	v := eventView{view: view{Title: e.Type, Page: "events", Principal: &p}, E: e, Payload: indentJSON(payload), Meta: indentJSON(meta)}
	if _, err := uuid.Parse(e.Causation); err == nil && e.Causation != e.ID.String() {
		v.CauseLink = "/ui/events/" + e.Causation
	}
	u.render(w, http.StatusOK, "event", v)
}

func indentJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

type projectionsView struct {
	view
	Lags []projections.Lag
	// AtLeast[i]: Lags[i].LagEvents is a lower bound (a tenant's count
	// over a bounded window of the log).
	AtLeast     []bool
	Parked      []projections.Parked
	Unavailable string
}

// State words a projection's state.
func (projectionsView) State(l projections.Lag) string {
	switch {
	case l.Stopped:
		return "stopped: " + l.LastError
	case l.Rebuilding > 0:
		return fmt.Sprintf("rebuilding generation %d (at %s)", l.Rebuilding, l.RebuildPosition)
	case l.Running:
		return "running here"
	case l.Held:
		return "running elsewhere"
	}
	return "idle"
}

func (u *ui) projections(w http.ResponseWriter, r *http.Request, p Principal) {
	v := projectionsView{view: view{Title: "Projections", Page: "projections", Principal: &p}}
	if u.s.cfg.Runtime == nil {
		v.Unavailable = "This server runs no projection runtime."
		u.render(w, http.StatusOK, "projections", v)
		return
	}
	lags, err := u.s.cfg.Runtime.Lag(r.Context())
	var parked []projections.Parked
	if err == nil {
		v.Lags = lags
		parked, err = u.s.cfg.Runtime.ListParked(r.Context(), "")
		for _, x := range parked {
			if p.Sees(x.TenantID) {
				v.Parked = append(v.Parked, x)
			}
		}
	}
	if err != nil {
		v.Unavailable = "Projection state cannot be read: " + friendly(err)
		u.render(w, http.StatusServiceUnavailable, "projections", v)
		return
	}
	if v.AtLeast, err = u.s.forPrincipal(r.Context(), p, v.Lags, parked); err != nil {
		v.Unavailable = "Projection state cannot be read: " + friendly(err)
		u.render(w, http.StatusServiceUnavailable, "projections", v)
		return
	}
	u.render(w, http.StatusOK, "projections", v)
}
