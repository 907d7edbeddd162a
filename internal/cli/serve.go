package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/projections"
)

type serveFlags struct {
	addr, tokensFile   string
	dev, noProjections bool
	limits             server.Limits
	shutdownTimeout    time.Duration
	// maxSessions is the audit browser's live sessions per token.
	maxSessions int
	// auth holds the token cache's TTL, MaxStale and ReadTimeout.
	auth server.AuthConfig
	// metricsTokenFile holds the secret GET /metrics asks for.
	metricsTokenFile string
	// The audit browser's session lifetime, and the purge of the expired
	// sessions: how often, how many per statement.
	sessionTTL, sessionPurgeInterval time.Duration
	sessionPurgeBatch                int
}

// The bounds of the session flags: past them a value is a mistake, not a
// setting (a session shorter than a second ends before its sign-in's
// redirect lands; a purge more often than every second is a busy loop on
// the database; a purge less often than daily, or a session longer than a
// year, or a statement deleting more than a million rows in one
// transaction, defeats what they are for).
const (
	minSessionTTL           = time.Second
	maxSessionTTL           = 365 * 24 * time.Hour
	minSessionPurgeInterval = time.Second
	maxSessionPurgeInterval = 24 * time.Hour
	maxSessionPurgeBatch    = 1_000_000
)

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--addr :8080]",
		Short: "Run the projections and the HTTP API, metrics and audit browser",
		Long: `Migrate, run every projection, and serve:

  POST /streams/{stream}/events      append (201; 400 validation; 409 conflict)
  GET  /streams/{stream}             read a stream (?from=VERSION&limit=N)
  GET  /events                       read the whole log (?from=POSITION&limit=N&type=T)
  GET  /projections                  projection status: position, lag, parked
  GET  /schemas, /schemas/{type}/{version}
  GET  /metrics                      Prometheus metrics (open, or --metrics-token-file)
  GET  /healthz, /readyz             liveness; readiness (migrated, database answers)
  GET  /ui/                          the audit browser

Every endpoint but /metrics, /healthz and /readyz needs a bearer token
mapped to a tenant (eventstream tokens create TENANT; or a --tokens-file,
default $EVENTSTREAM_TOKENS_FILE, of "TENANT SHA256-HEX [NAME]" lines). A
token sees only its tenant's events; tenant "*" is an operator's and sees
all. A missing, unreadable or malformed tokens file is refused (exit 2)
before anything connects.

/metrics carries every tenant's figures and, by default, is open. With
--metrics-token-file FILE (default $EVENTSTREAM_METRICS_TOKEN_FILE; the
flag wins) it needs "Authorization: Bearer SECRET", SECRET being what FILE
holds (a trailing newline is dropped; printable ASCII, no spaces): 401
otherwise. No API token opens it, and the secret opens nothing else. A
missing, unreadable or empty file is refused (exit 2) before anything
connects. Prometheus: authorization: {type: Bearer, credentials_file:
FILE}. To change the secret, rewrite FILE: no restart. A request to
/metrics stats FILE and reads it again when it changed, so the new secret
opens /metrics, and the old one no longer does, from the next scrape on.
While FILE is missing, unreadable, empty or invalid, the last secret read
stays in use (/metrics never opens) and the error is logged.

--dev starts a private PostgreSQL cluster when none answers (and the
EventStoreDB stand-in with --store esdb), and, when no token exists yet,
makes an operator token for this run and prints it.

SIGTERM or Ctrl-C: stop accepting, finish requests in flight (appends
included) within --shutdown-timeout, then stop the projections at their
checkpoints. Limits (body, batch, header, timeouts) are in
docs/operations/serve.md; a timeout or size of 0 or less, or an --addr
without a valid port, is refused (exit 2) before anything connects.

The token list is read again every --tokens-ttl, so a revocation applies
within it. While it cannot be read (database down or hanging, tokens file
unreadable), the last list read answers until it is --tokens-max-stale old,
then every request with a token gets 503 until the list is read again.
One read gives up after --tokens-read-timeout. Each must be above 0, and
--tokens-max-stale at least --tokens-ttl and --tokens-read-timeout.

A token keeps at most --max-sessions live sessions of the audit browser (at
least 1): a sign-in past it ends the token's oldest. A session lasts
--session-ttl from its sign-in (1s to 8760h). Expired sessions are deleted
at sign-ins, and at start and every --session-purge-interval (1s to 24h)
by a purge deleting --session-purge-batch of them per statement (1 to
1000000), each statement its own transaction. A value out of bounds is
refused (exit 2).

serve runs until stopped and has no result to print: stdout stays empty,
--json or not (the log, and the --dev token, go to stderr).`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.serve(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", ":8080", "address to listen on")
	fl.BoolVar(&f.dev, "dev", false, "development mode: private PostgreSQL if none answers, a printed operator token")
	fl.StringVar(&f.tokensFile, "tokens-file", "", "file of tokens: TENANT SHA256-HEX [NAME] per line (default $EVENTSTREAM_TOKENS_FILE); the tokens table is always read too")
	fl.BoolVar(&f.noProjections, "no-projections", false, "serve only; run the projections elsewhere (eventstream projections run)")
	fl.Int64Var(&f.limits.MaxBodyBytes, "max-body-bytes", 4<<20, "largest request body; larger is 413")
	fl.Int64Var(&f.limits.MaxInFlightBodyBytes, "max-inflight-body-bytes", 64<<20, "append bodies handled at once, in bytes (decoding takes many times a body's size); an append past it waits for room until --request-timeout, then is 503 busy")
	fl.IntVar(&f.limits.MaxBatchEvents, "max-batch", 1000, "most events in one append request; more is 400")
	fl.IntVar(&f.limits.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and headers; larger is 431")
	fl.DurationVar(&f.limits.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time to read a request's headers")
	fl.DurationVar(&f.limits.ReadTimeout, "read-timeout", 30*time.Second, "time to read a whole request")
	fl.DurationVar(&f.limits.WriteTimeout, "write-timeout", 60*time.Second, "time to write a response")
	fl.DurationVar(&f.limits.IdleTimeout, "idle-timeout", 120*time.Second, "how long an idle keep-alive connection stays open")
	fl.DurationVar(&f.limits.RequestTimeout, "request-timeout", 30*time.Second, "deadline of one request's work (503 past it)")
	fl.IntVar(&f.limits.MaxPageEvents, "max-page", 1000, "most events one GET returns")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	fl.StringVar(&f.metricsTokenFile, "metrics-token-file", "", "file holding the secret GET /metrics then asks for as a bearer token (default $EVENTSTREAM_METRICS_TOKEN_FILE; neither: /metrics needs no token)")
	fl.IntVar(&f.maxSessions, "max-sessions", server.DefaultMaxSessions, "live sessions of the audit browser one token keeps: a sign-in past it ends the token's oldest; at least 1")
	fl.DurationVar(&f.sessionTTL, "session-ttl", server.DefaultSessionTTL, "how long a sign-in to the audit browser lasts; 1s to 8760h")
	fl.DurationVar(&f.sessionPurgeInterval, "session-purge-interval", server.DefaultSessionPurgeInterval, "how often the audit browser's expired sessions are deleted (also at start); 1s to 24h")
	fl.IntVar(&f.sessionPurgeBatch, "session-purge-batch", server.DefaultSessionPurgeBatch, "expired sessions one statement (one transaction) of a purge deletes; 1 to 1000000")
	// The server's own defaults: the flags' defaults are what a server
	// built without them would use.
	auth := server.AuthConfig{}.WithDefaults()
	fl.DurationVar(&f.auth.TTL, "tokens-ttl", auth.TTL, "how long the token list is used before it is read again: a revocation applies within it")
	fl.DurationVar(&f.auth.MaxStale, "tokens-max-stale", auth.MaxStale, "while the token list cannot be read, how old the last one may get before every request with a token is refused (503); at least --tokens-ttl")
	fl.DurationVar(&f.auth.ReadTimeout, "tokens-read-timeout", auth.ReadTimeout, "how long one read of the token list may take before it has failed; at most --tokens-max-stale")
	return cmd
}

func (a *app) serve(ctx context.Context, f serveFlags) error {
	if f.limits.MaxBatchEvents > 10_000 || f.limits.MaxBatchEvents < 1 {
		return usagef("--max-batch %d: want 1 to 10000", f.limits.MaxBatchEvents)
	}
	if f.limits.MaxBodyBytes < 1024 {
		return usagef("--max-body-bytes %d: want at least 1024", f.limits.MaxBodyBytes)
	}
	if f.limits.MaxInFlightBodyBytes < f.limits.MaxBodyBytes {
		return usagef("--max-inflight-body-bytes %d: want at least --max-body-bytes (%d), or no body of the largest size could be taken", f.limits.MaxInFlightBodyBytes, f.limits.MaxBodyBytes)
	}
	if f.shutdownTimeout <= 0 {
		// 0 would cut every request in flight at once, appends included.
		return usagef("--shutdown-timeout %s: want more than 0, the time requests in flight get to finish", f.shutdownTimeout)
	}
	if f.maxSessions < 1 {
		// The server would take 0 or less as its default, not as "none".
		return usagef("--max-sessions %d: want at least 1 (left unset: %d)", f.maxSessions, server.DefaultMaxSessions)
	}
	if err := checkSessionFlags(f); err != nil {
		return err
	}
	if err := checkLimitFlags(f.limits); err != nil {
		return err
	}
	if err := checkListenAddr(f.addr); err != nil {
		return err
	}
	if err := checkAuthFlags(f.auth); err != nil {
		return err
	}
	// The files are read before anything connects, so that a wrong path
	// or content is a usage error (exit 2) even with no database, not a
	// start that fails, or waits, on something else first.
	tokensFrom, metricsFrom := "--tokens-file", "--metrics-token-file"
	if f.tokensFile == "" {
		f.tokensFile, tokensFrom = a.getenv("EVENTSTREAM_TOKENS_FILE"), "$EVENTSTREAM_TOKENS_FILE"
	}
	if f.metricsTokenFile == "" {
		f.metricsTokenFile, metricsFrom = a.getenv("EVENTSTREAM_METRICS_TOKEN_FILE"), "$EVENTSTREAM_METRICS_TOKEN_FILE"
	}
	var tokensFile server.TokenSource
	if f.tokensFile != "" {
		tf := server.TokenFile{Path: f.tokensFile}
		// Read again with the tokens table every --tokens-ttl; this
		// first read only refuses a file that cannot serve.
		if _, err := tf.Tokens(ctx); err != nil {
			return usagef("%s: %v", tokensFrom, err)
		}
		tokensFile = tf
	}
	if f.metricsTokenFile != "" {
		// The server reads it again, and again whenever it changes; this
		// first read only refuses a file that cannot serve.
		if _, err := server.ReadMetricsSecret(f.metricsTokenFile); err != nil {
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				return usagef("%s: %v", metricsFrom, err) // "open FILE: ..."
			}
			return usagef("%s %v", metricsFrom, err) // "FILE is empty ..."
		}
	}
	var migrations []migrationResult
	b, err := a.openStore(ctx, storeOptions{
		connectOptions: connectOptions{devCluster: f.dev, appName: "eventstream-serve"},
		devStandIn:     f.dev,
		migrations:     &migrations,
	})
	if err != nil {
		return err
	}
	defer b.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := server.NewMetrics(reg, b.Registry)
	if err != nil {
		return err
	}
	logStore := metrics.InstrumentStore(b.Store)
	dom, err := a.newDomain(logStore, b.Registry)
	if err != nil {
		return err
	}
	ib := *b
	ib.Store = logStore
	rt, err := a.newRuntime(&ib, dom, runtimeOptions{registerer: reg})
	if err != nil {
		return err
	}

	if b.Kind == storeMemory || b.standIn != nil {
		if err := refuseReadModelsAhead(ctx, rt, b.Kind); err != nil {
			return err
		}
	}

	sources := server.Sources{server.TokenTable{Pool: b.DB.Pool}}
	if tokensFile != nil {
		sources = append(sources, tokensFile)
	}
	if f.dev {
		have, err := sources.Tokens(ctx)
		if err != nil {
			return err
		}
		if len(have) == 0 {
			secret, err := server.NewToken()
			if err != nil {
				return err
			}
			sources = append(sources, server.Tokens{server.TokenFor(secret, server.AllTenants, "dev")})
			a.stderrf("dev mode: an operator token for this run (all tenants): %s\n", secret)
		}
	}

	versions, err := readyVersions(b.PG != nil)
	if err != nil {
		return err
	}
	ready := readiness(b.DB.Pool, versions)
	srv, err := server.New(server.Config{
		Store: logStore, Registry: b.Registry, Pool: b.DB.Pool, Runtime: rt,
		Auth: server.NewAuthenticatorWithConfig(sources, f.auth), Gatherer: reg, Metrics: metrics,
		Ready: ready, Limits: f.limits, Logger: a.log, MaxSessions: f.maxSessions, MetricsTokenFile: f.metricsTokenFile,
		SessionTTL: f.sessionTTL, SessionPurgeInterval: f.sessionPurgeInterval, SessionPurgeBatch: f.sessionPurgeBatch,
	})
	if err != nil {
		return err
	}
	// The upkeep (deleting expired sessions) stops with ctx, and at the
	// latest here, before the pool closes.
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	hs := srv.HTTPServer(f.addr)

	projCtx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	projDone := make(chan error, 1)
	var projWatch <-chan error // nil (never ready) without projections
	monitorDone := make(chan struct{})
	if !f.noProjections {
		close(monitorDone) // Run keeps the lag gauges itself
		go func() { projDone <- rt.Run(projCtx) }()
		projWatch = projDone
	} else {
		// Others run the projections; their lag, read from the database,
		// is exported all the same.
		go func() { defer close(monitorDone); a.monitorLag(projCtx, rt) }()
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	a.log.Info("serving", "url", "http://"+displayAddr(ln.Addr()), "ui", "http://"+displayAddr(ln.Addr())+"/ui/", "store", b.Kind, "projections", !f.noProjections)

	var serveErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down: finishing requests in flight", "timeout", f.shutdownTimeout)
	case serveErr = <-served:
	case err := <-projWatch:
		serveErr = fmt.Errorf("projections stopped: %v", err)
		projDone <- nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		a.log.Warn("requests still in flight at the shutdown timeout were cut", "err", err)
		_ = hs.Close()
	}
	stopProjections()
	<-monitorDone
	if !f.noProjections {
		if err := <-projDone; err != nil && serveErr == nil && !errors.Is(err, context.Canceled) {
			serveErr = err
		}
	}
	a.log.Info("stopped; projections are at their checkpoints")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// refuseReadModelsAhead refuses to serve an ephemeral log (memory, the
// EventStoreDB stand-in), which starts empty on every run, beside read
// models whose checkpoints an earlier run left past its head: the new
// log's events would get the positions those checkpoints have passed, and
// the projections would skip them without a word.
func refuseReadModelsAhead(ctx context.Context, rt *projections.Runtime, kind string) error {
	lags, err := rt.Lag(ctx)
	if err != nil {
		return projectionError(err, "")
	}
	var ahead *projections.Lag
	for i, l := range lags {
		if l.Position.Compare(l.Head) > 0 && (ahead == nil || l.Position.Compare(ahead.Position) > 0) {
			ahead = &lags[i]
		}
	}
	if ahead == nil {
		return nil
	}
	return fmt.Errorf("the read models in this database are at position %s of an earlier log (%s, for one), and the %s log starts empty on every run: the projections would skip its first events; "+
		"point --database-url at an empty database or schema (search_path=NAME in the URL), or keep the log with --store postgres", ahead.Position, ahead.Projection, kind)
}

// checkAuthFlags refuses token-cache durations the server would not
// honour as given: the Authenticator takes a value of 0 or less as its
// default and a max stale below the TTL as the TTL. A read timeout above
// the max stale it would take, but to no use (see the message).
func checkAuthFlags(c server.AuthConfig) error {
	def := server.AuthConfig{}.WithDefaults()
	for _, d := range []struct {
		flag   string
		v, def time.Duration
	}{
		{"--tokens-ttl", c.TTL, def.TTL},
		{"--tokens-max-stale", c.MaxStale, def.MaxStale},
		{"--tokens-read-timeout", c.ReadTimeout, def.ReadTimeout},
	} {
		if d.v <= 0 {
			return usagef("%s %s: want a duration above 0 (left unset: %s)", d.flag, d.v, d.def)
		}
	}
	if c.MaxStale < c.TTL {
		return usagef("--tokens-max-stale %s is less than --tokens-ttl %s: the list is trusted for the whole TTL without being read again, so it can always be that old, and the server would take the TTL as the max stale; want a max stale of at least the TTL", c.MaxStale, c.TTL)
	}
	if c.ReadTimeout > c.MaxStale {
		return usagef("--tokens-read-timeout %s is longer than --tokens-max-stale %s: a list is as old as the moment its read began, so a read that takes longer than the max stale brings a list already too old to answer from, and while one read hangs no other starts, so requests are refused past the max stale until it gives up; want a read timeout of at most the max stale", c.ReadTimeout, c.MaxStale)
	}
	return nil
}

// checkLimitFlags refuses the timeouts and sizes of the HTTP server that
// are 0 or less: the server would take them as its default, not as given
// (--read-timeout 0 would be 30s, not "no timeout").
func checkLimitFlags(l server.Limits) error {
	def := server.Limits{}.WithDefaults()
	for _, d := range []struct {
		flag   string
		v, def time.Duration
	}{
		{"--read-header-timeout", l.ReadHeaderTimeout, def.ReadHeaderTimeout},
		{"--read-timeout", l.ReadTimeout, def.ReadTimeout},
		{"--write-timeout", l.WriteTimeout, def.WriteTimeout},
		{"--idle-timeout", l.IdleTimeout, def.IdleTimeout},
		{"--request-timeout", l.RequestTimeout, def.RequestTimeout},
	} {
		if d.v <= 0 {
			return usagef("%s %s: want a duration above 0 (left unset: %s)", d.flag, d.v, d.def)
		}
	}
	for _, n := range []struct {
		flag   string
		v, def int
	}{
		{"--max-page", l.MaxPageEvents, def.MaxPageEvents},
		{"--max-header-bytes", l.MaxHeaderBytes, def.MaxHeaderBytes},
	} {
		if n.v < 1 {
			return usagef("%s %d: want at least 1 (left unset: %d)", n.flag, n.v, n.def)
		}
	}
	return nil
}

// checkListenAddr refuses an address no host could make listenable (no
// port, a port out of range), so that the mistake is a usage error found
// before serve connects and migrates, not a failure after. A host that
// does not resolve or a port in use is found when listening.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		return usagef("--addr %q: %v; want HOST:PORT or :PORT, e.g. :8080", addr, err)
	}
	return nil
}

// checkSessionFlags refuses session settings out of their bounds: the
// server would take 0 or less as its default, not as given, and the
// bounds' reasons are at minSessionTTL.
func checkSessionFlags(f serveFlags) error {
	for _, d := range []struct {
		flag          string
		v, lo, hi, df time.Duration
	}{
		{"--session-ttl", f.sessionTTL, minSessionTTL, maxSessionTTL, server.DefaultSessionTTL},
		{"--session-purge-interval", f.sessionPurgeInterval, minSessionPurgeInterval, maxSessionPurgeInterval, server.DefaultSessionPurgeInterval},
	} {
		if d.v < d.lo || d.v > d.hi {
			return usagef("%s %s: want %s to %s (left unset: %s)", d.flag, d.v, d.lo, d.hi, d.df)
		}
	}
	if f.sessionPurgeBatch < 1 || f.sessionPurgeBatch > maxSessionPurgeBatch {
		return usagef("--session-purge-batch %d: want 1 to %d (left unset: %d)", f.sessionPurgeBatch, maxSessionPurgeBatch, server.DefaultSessionPurgeBatch)
	}
	return nil
}

// displayAddr turns ":8080" listeners into a clickable address.
func displayAddr(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return fmt.Sprintf("127.0.0.1:%d", ta.Port)
	}
	return addr.String()
}

func (a *app) tokensCommand() *cobra.Command {
	cmd := asGroup(&cobra.Command{
		Use:   "tokens",
		Short: "Create, list and revoke the HTTP API's bearer tokens",
		Long: `Bearer tokens of the HTTP API, each mapped to a tenant ("*": an operator
who sees every tenant). Only a token's SHA-256 is stored, in the
eventstream_api_tokens table or in a tokens file; the secret is printed
once, when it is created.`,
	})
	var name, file string
	create := &cobra.Command{
		Use:   "create TENANT [--name NAME] [--file FILE]",
		Short: "Make a token for TENANT and print its secret (once)",
		Args:  argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := args[0]
			if err := server.CheckTenant(tenant); err != nil {
				return usagef("%v", err)
			}
			var secret string
			if file != "" {
				s, err := server.NewToken()
				if err != nil {
					return err
				}
				fh, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					return usagef("--file %s: %v", file, errors.Unwrap(err))
				}
				_, err = fmt.Fprintf(fh, "%s %s %s\n", tenant, server.HashToken(s), name)
				if cerr := fh.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				secret = s
			} else {
				db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tokens"})
				if err != nil {
					return err
				}
				defer db.Close()
				if _, err := migrateAPI(cmd.Context(), db); err != nil {
					return err
				}
				if secret, err = (server.TokenTable{Pool: db.Pool}).Add(cmd.Context(), tenant, name); err != nil {
					return lostDB(cmd.Context(), err)
				}
			}
			if a.asJSON {
				return a.printJSON(map[string]string{"tenant": tenant, "name": name, "token": secret})
			}
			a.stdoutf("%s\n", secret)
			a.stderrf("token for tenant %s created; it is shown only now: keep it secret\n", tenant)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "a name to list and revoke the token by")
	create.Flags().StringVar(&file, "file", "", "append the token's hash to this tokens file instead of the database")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (tenant, name, hash prefix, created, revoked; never secrets)",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tokens"})
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := migrateAPI(cmd.Context(), db); err != nil {
				return err
			}
			ts, err := server.TokenTable{Pool: db.Pool}.List(cmd.Context())
			if err != nil {
				return lostDB(cmd.Context(), err)
			}
			if a.asJSON {
				if ts == nil {
					ts = []server.TokenInfo{} // [], not null
				}
				return a.printJSON(ts)
			}
			t := a.newTable("TENANT", "NAME", "HASH", "CREATED", "REVOKED")
			for _, x := range ts {
				rev := ""
				if x.RevokedAt != nil {
					rev = x.RevokedAt.UTC().Format(time.RFC3339)
				}
				t.row(x.Tenant, x.Name, x.HashPrefix, x.CreatedAt.UTC().Format(time.RFC3339), rev)
			}
			return t.flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME|HASH-PREFIX",
		Short: "Revoke tokens by name or by the hash prefix tokens list shows",
		Long: `Revoke the live tokens named NAME, or whose hash starts with HASH-PREFIX
(at least 8 hex digits, as tokens list shows them); servers stop accepting
them within seconds. --json prints {"revoked": N}, the number revoked. A
name or prefix of no live token is refused as a usage error (exit code 2).`,
		Args: argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tokens"})
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := migrateAPI(cmd.Context(), db); err != nil {
				return err
			}
			n, err := server.TokenTable{Pool: db.Pool}.Revoke(cmd.Context(), args[0])
			if errors.Is(err, server.ErrNoToken) {
				// A name that names nothing, as tenants revoke-analyst
				// and dlq say of a role or an id: exit 2.
				return usagef("no live token is named or hashed %q (tokens list shows them)", args[0])
			}
			if err != nil {
				return lostDB(cmd.Context(), err)
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"revoked": n})
			}
			a.stdoutf("revoked %d token(s); servers stop accepting them within seconds\n", n)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// migrateAPI applies the API's migrations (the tokens table) and reports
// what it did.
func migrateAPI(ctx context.Context, db *database) (migrationResult, error) {
	ms, err := server.Migrations()
	if err != nil {
		return migrationResult{}, err
	}
	ran, err := migrate.Apply(ctx, db.Pool, server.Component, ms)
	if err != nil {
		return migrationResult{}, lostDuringMigrate(ctx, err)
	}
	return result(server.Component, len(ms), ran), nil
}

// readyVersions is, for each component serve needs, the version its
// migrations reach in this binary (withLog: the PostgreSQL log's too). A
// database behind any of them is not ready: the projections runtime, for
// one, refuses to run on a runtime schema older than its own.
func readyVersions(withLog bool) (map[string]int, error) {
	sets := map[string]func() ([]migrate.Migration, error){
		projections.Component: projections.Migrations,
		server.Component:      server.Migrations,
	}
	if withLog {
		sets[postgres.Component] = postgres.Migrations
	}
	out := make(map[string]int, len(sets))
	for c, load := range sets {
		ms, err := load()
		if err != nil {
			return nil, fmt.Errorf("the migrations of %s: %w", c, err)
		}
		if len(ms) > 0 {
			out[c] = ms[len(ms)-1].Version
		}
	}
	return out, nil
}

// monitorLag keeps the projections' lag gauges of serve --no-projections
// up to date until ctx ends. Monitor refuses a runtime that is not
// migrated (ErrNotMigrated, and /readyz says so; serve migrates when it
// starts, so only a database changed under it is): serve says it once and
// asks again every 10 s, quietly, so that the gauges come once eventstream
// migrate has run.
func (a *app) monitorLag(ctx context.Context, rt *projections.Runtime) {
	warned := false
	for {
		err := rt.Monitor(ctx)
		if err == nil {
			return
		}
		if !warned {
			a.log.Warn("the projections' lag gauges are not exported until the projections are migrated: run eventstream migrate", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// readiness is GET /readyz's check: the database answers and holds every
// component at the version this binary needs (readyVersions).
func readiness(pool *pgxpool.Pool, versions map[string]int) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return errors.New("the database does not answer")
		}
		for _, c := range slices.Sorted(maps.Keys(versions)) {
			v, err := migrate.Status(ctx, pool, c)
			if err != nil || v < versions[c] {
				return fmt.Errorf("migrations of %s are not applied (version %d of %d): run eventstream migrate", c, v, versions[c])
			}
		}
		return nil
	}
}
