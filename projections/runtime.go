package projections

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/schemas"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Component is the name under which the runtime's own migrations are
// recorded in eventstream_migrations. Each projection's migrations are
// recorded as "projection:<name>" inside its generation's schema.
const Component = "projections"

// Migrations returns the runtime's own embedded migrations.
func Migrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	return migrate.Load(sub)
}

// Runtime runs projections from an event store into PostgreSQL read
// models. Build it with New, prepare the database with Migrate, then call
// Run (or CatchUp, Rebuild, Reprocess and the dead-letter methods).
//
// Several runtimes, in one process or many, may share a database: each
// projection is run by exactly one of them at a time (a session advisory
// lock on the connection that also carries its transactions), and another
// takes it over when the holder stops or dies.
type Runtime struct {
	pool   *pgxpool.Pool
	store  eventstore.Store
	reg    *schemas.Registry
	cfg    Config
	log    *slog.Logger
	list   []*registered
	byName map[string]*registered
	stats  map[string]*stats
	m      *metrics

	running atomic.Bool

	homeMu sync.Mutex
	home   string

	// paceNow and paceSleep are the clock of --max-rate's pacing (nil:
	// the real one); tests set them.
	paceNow   func() time.Time
	paceSleep func(context.Context, time.Duration) bool
}

// readCommitted is how the runtime begins its transactions: whatever the
// database's default_transaction_isolation, so that a fence or a handler's
// update of a row another transaction changed meanwhile waits for it and
// goes on, instead of failing with a serialization error that would count
// as the event's failure (and could park it).
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// New checks every projection's declaration (its name, handler,
// migrations, and each declared event type and schema version against
// reg) and returns a runtime for them. A projection that names a type or
// version reg does not know is refused with a *DeclarationError. New does
// not touch the database.
func New(pool *pgxpool.Pool, store eventstore.Store, reg *schemas.Registry, cfg Config, ps ...Projection) (*Runtime, error) {
	switch {
	case pool == nil:
		return nil, errors.New("projections: a pool is required")
	case store == nil:
		return nil, errors.New("projections: an event store is required")
	case reg == nil:
		return nil, errors.New("projections: a schema registry is required")
	}
	cfg = cfg.withDefaults()
	switch cfg.SynchronousCommit {
	case "on", "off", "local", "remote_write", "remote_apply":
	default:
		return nil, fmt.Errorf("projections: SynchronousCommit %q: want on, off, local, remote_write or remote_apply", cfg.SynchronousCommit)
	}
	r := &Runtime{
		pool:   pool,
		store:  store,
		reg:    reg,
		cfg:    cfg,
		log:    cfg.Logger,
		byName: map[string]*registered{},
		stats:  map[string]*stats{},
	}
	for _, p := range ps {
		rp, err := check(p, reg)
		if err != nil {
			return nil, err
		}
		if _, dup := r.byName[p.Name]; dup {
			return nil, &DeclarationError{Projection: p.Name, Reason: "two projections have this name"}
		}
		r.list = append(r.list, rp)
		r.byName[p.Name] = rp
		r.stats[p.Name] = &stats{}
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(r, cfg.Registerer)
		if err != nil {
			return nil, err
		}
		r.m = m
	}
	return r, nil
}

// Names returns the projections of the runtime, in the order given to New.
func (r *Runtime) Names() []string {
	out := make([]string, len(r.list))
	for i, p := range r.list {
		out[i] = p.Name
	}
	return out
}

func (r *Runtime) lookup(name string) (*registered, error) {
	p, ok := r.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (known: %v)", ErrUnknownProjection, name, r.Names())
	}
	return p, nil
}

// homeSchema is the pool's current schema: where the runtime's tables and
// the readers' views live.
func (r *Runtime) homeSchema(ctx context.Context) (string, error) {
	r.homeMu.Lock()
	defer r.homeMu.Unlock()
	if r.home != "" {
		return r.home, nil
	}
	var s *string
	if err := r.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&s); err != nil {
		return "", fmt.Errorf("projections: find the current schema: %w", err)
	}
	if s == nil {
		return "", errors.New("projections: the connection has no current schema (check search_path)")
	}
	r.home = *s
	return r.home, nil
}

// connect opens a dedicated connection (not from the pool): it carries a
// session advisory lock, which must die with it.
func (r *Runtime) connect(ctx context.Context, purpose string) (*pgx.Conn, error) {
	cc := r.pool.Config().ConnConfig.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = r.cfg.ApplicationName + ":" + purpose
	cc.RuntimeParams["synchronous_commit"] = r.cfg.SynchronousCommit
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("projections: connect for %s: %w", purpose, err)
	}
	return conn, nil
}

// closeConn releases conn's session advisory locks, then closes it. The
// server ends a closed session, and releases its locks, only some time
// after the client has gone: without the release, a caller that retries
// at once (a Rebuild after a failed one) could find its own lock still
// held and be told ErrBusy.
//
// A connection that cannot release them itself (closed by pgx when the
// caller's context ended during a statement, or left in a transaction)
// leaves a backend that may still be running that statement, holding the
// locks, for as long as the statement lasts: a Rebuild or CatchUp
// cancelled while its handler ran, and called again at once, would be
// told that it is "already running". So the statement is cancelled (by
// the connection's own cancel key, which cannot reach another session),
// and closeConn waits, a few seconds at most, until the server holds no
// advisory lock for that backend any more.
func (r *Runtime) closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !conn.IsClosed() && conn.PgConn().TxStatus() == 'I' {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`); err == nil {
			_ = conn.Close(ctx)
			return
		}
	}
	pid := conn.PgConn().PID()
	_ = conn.Close(ctx)
	if pid == 0 {
		return
	}
	_ = conn.PgConn().CancelRequest(ctx)
	for {
		var held bool
		err := r.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory')`, int64(pid)).Scan(&held)
		if err != nil || !held || !sleep(ctx, 10*time.Millisecond) {
			return
		}
	}
}

// tryLock takes a session advisory lock on conn without waiting.
func tryLock(ctx context.Context, conn *pgx.Conn, key int64) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		return false, fmt.Errorf("projections: advisory lock: %w", err)
	}
	return ok, nil
}

func (r *Runtime) runLockKey(home, name string) int64 {
	return migrate.LockKey("projection-run/"+name, home)
}

func (r *Runtime) buildLockKey(home, name string) int64 {
	return migrate.LockKey("projection-rebuild/"+name, home)
}

// Migrate creates or upgrades the runtime's tables, and for every
// projection its read-model tables (in the active generation's schema,
// and in the one being rebuilt, if any) and the views readers query. It
// is idempotent and safe to run from several processes at once.
func (r *Runtime) Migrate(ctx context.Context) error {
	_, err := r.MigrateReport(ctx)
	return err
}

// AppliedMigration is a migration that MigrateReport ran.
type AppliedMigration struct {
	// Component is Component for the runtime's own migrations, and
	// "projection:<name>" for a read model's.
	Component string
	// Projection names the read model ("" for the runtime's).
	Projection string
	// Generation is the read model's generation whose schema the
	// migration ran in (0 for the runtime's); Building says it is the
	// generation being rebuilt, not the one readers query.
	Generation int
	Building   bool
	Version    int
	Name       string
}

// MigrateReport is Migrate, and returns the migrations it ran, in the
// order it ran them: those another process ran first, while this one
// waited for its locks, are not among them.
func (r *Runtime) MigrateReport(ctx context.Context) ([]AppliedMigration, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	ran, err := migrate.Apply(ctx, r.pool, Component, ms)
	if err != nil {
		return nil, err
	}
	var out []AppliedMigration
	for _, m := range ran {
		out = append(out, AppliedMigration{Component: Component, Version: m.Version, Name: m.Name})
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range r.list {
		applied, err := r.install(ctx, home, p)
		if err != nil {
			return nil, err
		}
		out = append(out, applied...)
		r.dropRetired(ctx, home, p.Name)
	}
	return out, nil
}

// install installs or migrates p and returns the migrations it ran.
func (r *Runtime) install(ctx context.Context, home string, p *registered) ([]AppliedMigration, error) {
	var out []AppliedMigration
	report := func(gen int, building bool, ran []migrate.Migration) {
		for _, m := range ran {
			out = append(out, AppliedMigration{Component: p.component, Projection: p.Name, Generation: gen, Building: building, Version: m.Version, Name: m.Name})
		}
	}
	err := pgx.BeginTxFunc(ctx, r.pool, readCommitted, func(tx pgx.Tx) error {
		out = nil
		// Another process installing the same projection holds its state
		// row (or is inserting it) until it commits: wait for it like
		// migrate.Apply waits for another applier, whatever the session's
		// lock_timeout.
		var active, building *int
		var readOnly bool
		if err := tx.QueryRow(ctx, `SELECT current_setting('transaction_read_only') = 'on'`).Scan(&readOnly); err != nil {
			return fmt.Errorf("projections: migrate %q: %w", p.Name, err)
		}
		if readOnly {
			// A read-only session (a standby, a read-only role's
			// default) cannot take the state row's lock; an installed,
			// current projection needs no change and no lock, and
			// anything else fails at its first write, naming it.
			err := tx.QueryRow(ctx, `SELECT active_generation, building_generation FROM projection_state WHERE projection = $1`, p.Name).Scan(&active, &building)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && active == nil) {
				return fmt.Errorf("projections: migrate %q: it is not installed, and the session is read-only: run the migration from a session that can write", p.Name)
			}
			if err != nil {
				return fmt.Errorf("projections: migrate %q: %w", p.Name, err)
			}
		}
		err := migrate.WaitUntimed(ctx, tx, func() error {
			if readOnly {
				return nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO projection_state (projection) VALUES ($1) ON CONFLICT DO NOTHING`, p.Name); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT active_generation, building_generation FROM projection_state WHERE projection = $1 FOR UPDATE`, p.Name).Scan(&active, &building)
		})
		if err != nil {
			return fmt.Errorf("projections: migrate %q: %w", p.Name, err)
		}
		if active == nil {
			gen, schema, err := r.createGeneration(ctx, tx, home, p, "active", eventstore.Start)
			if err != nil {
				return err
			}
			if err := r.publishViews(ctx, tx, home, p, gen, schema); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE projection_state SET active_generation = $2, updated_at = now() WHERE projection = $1`, p.Name, gen)
			if err != nil {
				return fmt.Errorf("projections: migrate %q: %w", p.Name, err)
			}
			// The generation's schema is new: every migration ran in it.
			report(gen, false, p.migrations)
			r.log.Info("projection installed", "projection", p.Name, "generation", gen, "schema", schema)
			return nil
		}
		schema, err := generationSchema(ctx, tx, p.Name, *active)
		if err != nil {
			return err
		}
		ran, err := r.migratePublished(ctx, tx, home, p, schema)
		if err != nil {
			return err
		}
		report(*active, false, ran)
		if err := r.publishViews(ctx, tx, home, p, *active, schema); err != nil {
			return err
		}
		if building != nil {
			bschema, err := generationSchema(ctx, tx, p.Name, *building)
			if err != nil {
				return err
			}
			ran, err := r.migrateBuilding(ctx, tx, home, p, *building, bschema, false)
			if err != nil {
				return err
			}
			report(*building, true, ran)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Run runs the named projections (all of them when none is named) until
// ctx ends, then returns nil, also when ctx ends while it is starting; it
// returns an error early only when the store is closed, or at once when a
// projection is not migrated (ErrNotMigrated) or its state cannot be
// read. For each projection it waits for the lock,
// catches up from the checkpoint, then follows the log live; when it
// loses the lock or its connection it starts over from the checkpoint.
// Migrate must have run. Run also keeps the lag metrics up to date.
func (r *Runtime) Run(ctx context.Context, names ...string) error {
	ps, err := r.selectProjections(names)
	if err != nil {
		return err
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("projections: Run is already running on this runtime")
	}
	defer r.running.Store(false)
	home, err := r.homeSchema(ctx)
	if err == nil {
		err = r.checkMigrated(ctx, ps)
	}
	if err != nil {
		if ctx.Err() != nil {
			// Ended while starting: stopped as asked, like later.
			return nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var fatal error
	var once sync.Once
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.work(ctx, home, p); err != nil {
				once.Do(func() { fatal = err })
				cancel()
			}
		}()
	}
	if r.m != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.monitor(ctx)
		}()
	}
	wg.Wait()
	return fatal
}

func (r *Runtime) selectProjections(names []string) ([]*registered, error) {
	if len(names) == 0 {
		return r.list, nil
	}
	var out []*registered
	for _, n := range names {
		p, err := r.lookup(n)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (r *Runtime) checkMigrated(ctx context.Context, ps []*registered) error {
	// The runtime's statements rely on its latest migration (parking, for
	// one, on the dead letters' key by id and position): an upgraded
	// binary on a database not migrated since is refused here rather than
	// failing at its first parked event.
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if v, err := migrate.Status(ctx, r.pool, Component); err == nil && v < len(ms) {
		return fmt.Errorf("%w: the runtime's migrations are at version %d of %d", ErrNotMigrated, v, len(ms))
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	rows, err := r.pool.Query(ctx, `SELECT projection FROM projection_state WHERE projection = ANY($1) AND active_generation IS NOT NULL`, names)
	if err != nil {
		if isUndefinedTable(err) {
			return fmt.Errorf("%w: the runtime's tables do not exist", ErrNotMigrated)
		}
		return fmt.Errorf("projections: read state: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("projections: read state: %w", err)
	}
	for _, n := range names {
		if !slices.Contains(got, n) {
			return fmt.Errorf("%w: %q", ErrNotMigrated, n)
		}
	}
	return nil
}

// work keeps one projection running while ctx lasts: it takes the lock
// when it can and restarts the session after a failure. It gives up only
// when the store is closed.
func (r *Runtime) work(ctx context.Context, home string, p *registered) error {
	failures := 0
	breaks := &sessionBreaks{}
	for ctx.Err() == nil {
		err := r.session(ctx, home, p, breaks)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, eventstore.ErrClosed) {
			return fmt.Errorf("projections: run %q: %w", p.Name, err)
		}
		wait := r.cfg.LockPollInterval
		switch {
		case errors.Is(err, ErrBusy), errors.Is(err, ErrStopped):
			failures = 0
		case errors.Is(err, errFenced):
			failures = 0
			wait = 0
			r.log.Info("projection checkpoint moved; restarting from the database", "projection", p.Name)
		case errors.Is(err, errCommitUnknown):
			failures = 0
			wait = 0
			r.log.Warn("projection commit outcome unknown; restarting from the database", "projection", p.Name, "err", err)
		default:
			failures++
			wait = r.cfg.Retry.Backoff(failures)
			r.log.Warn("projection session ended; restarting from its checkpoint", "projection", p.Name, "err", err, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Uninstall removes what projection runtimes created in the pool's
// current schema: every generation's schema (and so the read models), the
// views, the runtime's tables and its migration record. Tests call it in
// their cleanup, since generation schemas live beside the current one.
func Uninstall(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginTxFunc(ctx, pool, readCommitted, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('projection_generations') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("projections: uninstall: %w", err)
		}
		if !exists {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT schema_name FROM projection_generations`)
		if err != nil {
			return fmt.Errorf("projections: uninstall: %w", err)
		}
		list, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("projections: uninstall: %w", err)
		}
		for _, s := range list {
			if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
				return fmt.Errorf("projections: uninstall: drop %s: %w", s, err)
			}
		}
		for _, q := range []string{
			`DROP TABLE projection_state, projection_generations, projection_checkpoints, projection_dead_letters, processed_events, projection_views`,
			// Made by runtime migration 004: a runtime last migrated by an
			// earlier release has none.
			`DROP TABLE IF EXISTS projection_deferred_indexes`,
			`DELETE FROM eventstream_migrations WHERE component = '` + Component + `'`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("projections: uninstall: %w", err)
			}
		}
		return nil
	})
}
