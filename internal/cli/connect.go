package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// defaultDatabaseURL is tried when neither --database-url nor
// $DATABASE_URL is set.
const defaultDatabaseURL = "postgres://root@127.0.0.1:5432/eventstream?sslmode=disable"

// connectOptions say what a command may do to find a database.
type connectOptions struct {
	// devCluster lets the command start a private cluster under
	// ./.eventstream/pg when nothing answers at the default URL.
	devCluster bool
	// forceDev starts (or reuses) the private cluster even if a server
	// answers at the default URL (serve --dev).
	forceDev bool
	// appName is the application_name of the connections.
	appName string
	// freshSchema, when set, is created and made the search_path.
	freshSchema string
}

// database is an open pool and what must be undone when the command ends.
type database struct {
	Pool    *pgxpool.Pool
	URL     string
	cluster *devCluster
}

// Close closes the pool and stops a private cluster this command started.
func (d *database) Close() {
	if d == nil {
		return
	}
	if d.Pool != nil {
		d.Pool.Close()
	}
	if d.cluster != nil {
		_ = d.cluster.Stop()
	}
}

// resolveURL returns the URL to use and whether the user chose it.
func (a *app) resolveURL() (string, bool) {
	if a.databaseURL != "" {
		return a.databaseURL, true
	}
	if u := a.getenv("DATABASE_URL"); u != "" {
		return u, true
	}
	return a.defaultURL, false
}

const pointHint = "start PostgreSQL, or pass --database-url (or set DATABASE_URL) to point eventstream at a server"

// refusedHint is pointHint for a server that answered and refused the
// connection (a role or database that does not exist, authentication).
const refusedHint = "the server is running and refused it: pass --database-url (or set DATABASE_URL) with a role, password and database it accepts"

// openDB connects to the database following the connection conventions,
// and checks that the schema the URL selects exists.
func (a *app) openDB(ctx context.Context, opts connectOptions) (*database, error) {
	db, err := a.findDB(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.freshSchema != "" {
		// Beside a schema the URL chose (not public), name the fresh one
		// after it, so that whoever drops <schema> and <schema>__* (the
		// projections' generations; the tests do) drops it too.
		var base *string
		if err := db.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&base); err == nil && base != nil && *base != "public" {
			opts.freshSchema = *base + "__" + opts.freshSchema
		}
		if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{opts.freshSchema}.Sanitize()); err != nil {
			db.Close()
			return nil, fmt.Errorf("create schema %s: %w", opts.freshSchema, err)
		}
		db.Pool.Close()
		db.URL = withSearchPath(db.URL, opts.freshSchema)
		if db.Pool, err = connectPool(ctx, db.URL, opts.appName); err != nil {
			db.Close()
			return nil, connectFailure(db.URL, err)
		}
	}
	var schema *string
	if err := db.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("read the current schema: %w", err)
	}
	if schema == nil {
		// PostgreSQL leaves out of current_schema() a schema the role may
		// not use, as it does one that does not exist: tell them apart.
		var path, user string
		var unusable []string
		_ = db.Pool.QueryRow(ctx, `SELECT current_setting('search_path'), current_user,
			(SELECT coalesce(array_agg(nspname ORDER BY nspname), '{}') FROM pg_namespace
			 WHERE nspname IN (SELECT btrim(btrim(x), '"') FROM unnest(string_to_array(current_setting('search_path'), ',')) AS x)
			 AND NOT has_schema_privilege(oid, 'USAGE'))`).Scan(&path, &user, &unusable)
		db.Close()
		if len(unusable) > 0 {
			return nil, fmt.Errorf("the role %s may not use the schema %s of the search_path (%s): grant it USAGE on it, or fix search_path in the database URL", user, strings.Join(unusable, ", "), path)
		}
		return nil, fmt.Errorf("no schema of the search_path (%s) exists in the database: create it, or fix search_path in the database URL", path)
	}
	return db, nil
}

func withSearchPath(u, schema string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	return pu.String()
}

func (a *app) findDB(ctx context.Context, opts connectOptions) (*database, error) {
	u, explicit := a.resolveURL()
	if opts.forceDev && !explicit {
		return a.openDevCluster(ctx, opts, "")
	}
	pool, err := connectPool(ctx, u, opts.appName)
	if err == nil {
		return &database{Pool: pool, URL: u}, nil
	}
	if explicit {
		return nil, connectFailure(u, err)
	}
	switch {
	case isMissingDatabase(err):
		if cerr := createDatabase(ctx, u); cerr != nil {
			return nil, cerr
		}
		a.stderrf("created the database %s at %s\n", dbName(u), hostOf(u))
		pool, err = connectPool(ctx, u, opts.appName)
		if err != nil {
			return nil, connectFailure(u, err)
		}
		return &database{Pool: pool, URL: u}, nil
	case isUnreachable(err) && opts.devCluster:
		return a.openDevCluster(ctx, opts, fmt.Sprintf("no PostgreSQL server answered at %s", hostOf(u)))
	case isUnreachable(err) && devClusterRunning(ctx, a.workDir):
		// A demo or serve --dev of this folder is running: use its cluster.
		return a.openDevCluster(ctx, opts, fmt.Sprintf("no PostgreSQL server answered at %s", hostOf(u)))
	}
	return nil, connectFailure(u, err)
}

func (a *app) openDevCluster(ctx context.Context, opts connectOptions, why string) (*database, error) {
	c, err := startDevCluster(ctx, a.workDir, a.log)
	if err != nil {
		if errors.Is(err, errNoServerBinaries) {
			u, _ := a.resolveURL()
			// No server answered at the default address: an outage as
			// for an explicit URL (exit 75).
			return nil, withCode(ExitUnavailable, fmt.Errorf("cannot connect to PostgreSQL at %s and no PostgreSQL server programs (initdb, pg_ctl) were found to start a private one: %s", redactURL(u), pointHint))
		}
		return nil, err
	}
	verb := "reusing the private PostgreSQL cluster"
	if c.started {
		verb = "started a private PostgreSQL cluster"
	}
	if why != "" {
		why += "; "
	}
	tail := ""
	if c.started {
		tail = " (stopped when this command ends; the data stays)"
	}
	a.stderrf("%s%s in %s on 127.0.0.1:%d%s\n", why, verb, c.displayDir(a.workDir), c.port, tail)
	u := c.URL("eventstream")
	if err := createDatabaseIfMissing(ctx, c.URL("postgres"), "eventstream"); err != nil {
		_ = c.Stop()
		return nil, err
	}
	pool, err := connectPool(ctx, u, opts.appName)
	if err != nil {
		_ = c.Stop()
		return nil, connectFailure(u, err)
	}
	db := &database{Pool: pool, URL: u}
	if c.started {
		db.cluster = c
	}
	return db, nil
}

func connectPool(ctx context.Context, u, appName string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, usagef("--database-url: not a valid PostgreSQL connection string (details withheld: they may contain a password)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 10*time.Second {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if appName == "" {
		appName = "eventstream"
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
	}
	postgres.SetSessionDefaults(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func isMissingDatabase(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "3D000"
}

func isUnreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded)
}

// connectFailure words a connection error in one line without the
// password.
func connectFailure(u string, err error) error {
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		// Ctrl-C while connecting: the server is not to blame, and the
		// command ends as interrupted (130), not as a connection failure.
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	cerr := err
	cause := err.Error()
	var pe *pgconn.PgError
	var op *net.OpError
	switch {
	case errors.As(err, &pe):
		cause = pe.Message
	case errors.As(err, &op):
		cause = op.Err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		cause = "timed out"
	}
	if p := passwordOf(u); p != "" {
		cause = strings.ReplaceAll(cause, p, "xxxxx")
	}
	if noServerAnswered(cerr) {
		return withCode(ExitUnavailable, fmt.Errorf("cannot connect to PostgreSQL at %s: %s; %s", redactURL(u), cause, pointHint))
	}
	// The server answered and refused: it is running, so "start
	// PostgreSQL" would send the user the wrong way.
	return fmt.Errorf("cannot connect to PostgreSQL at %s: %s; %s", redactURL(u), cause, refusedHint)
}

// noServerAnswered reports whether err, from connecting, says that no
// server answered (refused, timed out, a network error) or that it cannot
// take connections now (starting up or shutting down, out of connection
// slots, a connection exception): an outage to retry after (exit 75). A
// server that answered with anything else (a failed authentication, a
// missing role or database) is not one: retrying will not help.
func noServerAnswered(err error) bool {
	if errors.Is(err, eventstore.ErrUnavailable) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case strings.HasPrefix(code, "08"): // connection exception
			return true
		case code == "57P01", code == "57P02", code == "57P03": // shutting down, crashed, starting up
			return true
		case code == "53300": // too many connections
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || isUnreachable(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgconn.ErrConnClosed)
}

// createDatabase creates the database named in u through the server's
// "postgres" database.
func createDatabase(ctx context.Context, u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return usagef("database URL: not a valid URL")
	}
	name := strings.TrimPrefix(pu.Path, "/")
	if name == "" {
		return fmt.Errorf("cannot connect to PostgreSQL at %s: no database named in the URL", redactURL(u))
	}
	admin := *pu
	admin.Path = "/postgres"
	return createDatabaseIfMissing(ctx, admin.String(), name)
}

func createDatabaseIfMissing(ctx context.Context, adminURL, name string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return connectFailure(adminURL, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(cctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Code == "42P04": // created meanwhile
		return nil
	case errors.As(err, &pe) && pe.Code == "42501":
		return fmt.Errorf("database %q does not exist and this user may not create it: create it, or %s", name, pointHint)
	}
	return fmt.Errorf("create database %q: %w", name, err)
}

func redactURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme == "" {
		return "the configured database"
	}
	return pu.Redacted()
}

func passwordOf(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.User == nil {
		return ""
	}
	p, _ := pu.User.Password()
	return p
}

func dbName(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(pu.Path, "/")
}

func hostOf(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "the default address"
	}
	return pu.Host
}
