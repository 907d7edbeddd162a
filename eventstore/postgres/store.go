package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
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

// Component is the name under which the log's migrations are recorded.
const Component = "eventstore"

// Migrations returns the log's embedded migrations.
func Migrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	return migrate.Load(sub)
}

// Migrate creates or upgrades the log's tables in the pool's current
// schema. It is idempotent and safe to run from several processes at once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if _, err = migrate.Apply(ctx, pool, Component, ms); unreachable(err) {
		return &eventstore.UnavailableError{Err: err}
	}
	return err
}

// Options tune a Store. The zero value is sensible.
type Options struct {
	// Committers is how many group transactions may be in flight at once
	// (default 2). They still commit one after another (the ordering lock),
	// but the server reads the next group's parameters while the previous
	// one holds the lock.
	Committers int
	// MinOverlapEvents is the smallest group that is sent while another
	// group is in flight (default 100, at most MaxGroupEvents). A smaller
	// one waits for more appends, for the group in flight to end, or 20 ms
	// at most (a group in flight that long is stuck): overlapping pays for the
	// server's parsing of a large group, while splitting a stream of small
	// appends into many small groups costs more per event than it saves.
	MinOverlapEvents int
	// MaxGroupEvents bounds how many events one group-commit transaction
	// carries (default 4,000).
	MaxGroupEvents int
	// MaxGroupBytes bounds the payloads and metas one group-commit
	// transaction carries (default 64 MiB). A group stops taking appends
	// once it holds that much, so it carries at most MaxGroupBytes plus
	// one append (eventstore.MaxAppendBytes, 64 MiB), well inside the
	// 1 GB a PostgreSQL message may carry even as escaped text (the
	// simple protocol). An append of its own is never split.
	MaxGroupBytes int
	// Linger bounds how long a committer with no group in flight waits for
	// appends it expects before it sends its group (default 1 ms; negative:
	// never wait). It expects those that arrived while the last group was
	// in flight plus those the last group released, and waits at most half
	// the time the last group took: writers that append in a loop come back
	// a few microseconds after their group, and one group carrying all of
	// them pays the group's fixed cost (round trip, lock, WAL flush) once
	// instead of twice. Appends that arrive independently of the groups (a
	// server's requests) do not fill that in half a group's time; a wait
	// that times out backs off (the next 1, 2, 4, ... up to 64 groups do not
	// wait), so they rarely pay for one. A lone writer never waits.
	Linger time.Duration
	// QueueSize bounds appends waiting for the committer (default 4,096);
	// further Append calls wait, which is the back-pressure.
	QueueSize int
	// PollInterval is how often an idle live subscription looks for events
	// when no notification came (a safety net; default 2s).
	PollInterval time.Duration
	// SkipMigrate leaves the schema alone in New; Migrate must have run.
	SkipMigrate bool
	// Logger receives the store's warnings (its LISTEN connection lost and
	// reconnecting); default slog.Default().
	Logger *slog.Logger
}

// Store is the PostgreSQL event store. Create it with New or Open.
type Store struct {
	pool      *pgxpool.Pool
	ownsPool  bool
	validator *eventstore.Validator
	opts      Options
	schema    string
	lockKey   int64
	channel   string

	queue     chan *request
	stop      chan struct{}
	inFlight  atomic.Int32  // groups being written
	groupDone chan struct{} // a group ended (buffered; a wake-up, not a count)
	gathering chan struct{} // a token: held by the committer that gathers a group
	arrivals  atomic.Int64  // appends queued since the Store was made
	expect    atomic.Int64  // appends the next lingering committer waits for
	lastGroup atomic.Int64  // how long the last group took, in ns
	// lingerSkip is how many more groups go without lingering, and
	// lingerBackoff what the last timed-out wait set it to (guarded by
	// the gathering token).
	lingerSkip, lingerBackoff int
	// groupTimeout bounds how long a committer waits for the database
	// to answer a group (groupTimeout; a test may shorten it).
	groupTimeout time.Duration
	done         sync.WaitGroup
	closeMu      sync.RWMutex
	closed       bool

	notifier *notifier
	// closing is cancelled by Close: a read in progress (on a network that
	// hangs, say), a subscription's or a plain one, ends with it instead of
	// holding its caller, and Close, until the database answers.
	closing       context.Context
	cancelClosing context.CancelFunc

	groups, appends, written atomic.Uint64
	groupNanos               atomic.Int64
	lingers, lingersTimedOut atomic.Uint64
	// Of written: the appends, and their events, whose caller had
	// stopped waiting (its context ended) when their group committed.
	unreportedAppends, unreportedEvents atomic.Uint64
}

// Stats counts the committer's work since the Store was created.
type Stats struct {
	// Groups is the number of group-commit transactions committed.
	Groups uint64
	// Appends is the number of Append calls they carried.
	Appends uint64
	// Events is the number of events they wrote.
	Events uint64
	// UnreportedAppends and UnreportedEvents count the appends, and the
	// events they wrote (part of Events), whose group committed after
	// their caller's context had ended: Append returned ctx.Err() and
	// AppendReporting wrote=false, and a retry of them, an idempotent
	// one, reports wrote=false too. Events minus UnreportedEvents is what
	// the calls reported as written (eventstore.WriteReporter).
	UnreportedAppends, UnreportedEvents uint64
	// GroupTime is the total time spent in group transactions.
	GroupTime time.Duration
	// Lingers is how many times a committer waited for expected appends
	// (Options.Linger), and LingersTimedOut how many of those waits ended
	// before all of them came.
	Lingers, LingersTimedOut uint64
	// Queued is how many appends wait for a committer at this moment.
	Queued int
}

// UnreportedEvents is Stats().UnreportedEvents: the events written by
// appends whose caller had stopped waiting when their group committed. A
// server's metrics add it to the events the calls reported as written.
func (s *Store) UnreportedEvents() uint64 { return s.unreportedEvents.Load() }

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	return Stats{Groups: s.groups.Load(), Appends: s.appends.Load(), Events: s.written.Load(),
		UnreportedAppends: s.unreportedAppends.Load(), UnreportedEvents: s.unreportedEvents.Load(), GroupTime: time.Duration(s.groupNanos.Load()),
		Lingers: s.lingers.Load(), LingersTimedOut: s.lingersTimedOut.Load(), Queued: len(s.queue)}
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.WriteReporter = (*Store)(nil)
)

// New returns a Store on pool, whose search_path schema holds the log. It
// applies the migrations unless opts.SkipMigrate. reg is required: every
// append is validated against it. The pool stays the caller's.
func New(ctx context.Context, pool *pgxpool.Pool, reg *schemas.Registry, opts ...Options) (*Store, error) {
	v, err := eventstore.NewValidator(reg)
	if err != nil {
		return nil, err
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MaxGroupEvents <= 0 {
		o.MaxGroupEvents = 4000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxGroupBytes <= 0 {
		o.MaxGroupBytes = 64 << 20
	}
	if o.Committers <= 0 {
		o.Committers = 2
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MinOverlapEvents <= 0 {
		o.MinOverlapEvents = 100
	}
	o.MinOverlapEvents = min(o.MinOverlapEvents, o.MaxGroupEvents)
	if o.Linger == 0 {
		o.Linger = time.Millisecond
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if err := checkSession(ctx, pool); err != nil {
		return nil, err
	}
	if !o.SkipMigrate {
		if err := Migrate(ctx, pool); err != nil {
			return nil, err
		}
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, storeErr("read the schema", err)
	}
	s := &Store{
		pool:      pool,
		validator: v,
		opts:      o,
		schema:    schema,
		lockKey:   migrate.LockKey("append", schema),
		channel:   fmt.Sprintf("eventstream_%x", uint64(migrate.LockKey("notify", schema))),
		queue:     make(chan *request, o.QueueSize),
		stop:      make(chan struct{}),
		groupDone: make(chan struct{}, o.Committers),
		gathering: make(chan struct{}, 1),

		groupTimeout: groupTimeout,
	}
	s.closing, s.cancelClosing = context.WithCancel(context.Background())
	s.notifier = newNotifier(s)
	for range o.Committers {
		s.done.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// Open connects to databaseURL and returns a Store that owns its pool.
func Open(ctx context.Context, databaseURL string, reg *schemas.Registry, opts ...Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse database URL: %w", redactErr(err))
	}
	SetSessionDefaults(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, storeErr("connect", err)
	}
	s, err := New(ctx, pool, reg, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// sessionDefaults are the session settings the store relies on, as a
// connection's startup parameters name them, with the value it needs.
//
//   - DateStyle ISO: under the simple protocol and pgx.QueryExecModeExec,
//     results arrive as text, and pgx reads a timestamp only in the ISO
//     style; a database or role whose DateStyle is SQL, Postgres or German
//     would make every read of the log fail.
//   - default_transaction_isolation read committed: a group's append is one
//     statement in an implicit transaction, which takes the append lock and
//     then reads the head. Under repeatable read or serializable its
//     snapshot is taken before the lock, so it misses the group committed
//     just before it and concurrent appends fail (a duplicate position, a
//     serialization failure).
//   - TCP keepalives of 10 s, then 3 probes 5 s apart: the server notices
//     within about 25 s a client that vanished without closing its
//     connection (a network partition, a host gone) instead of after the
//     system's default of about two hours, so a session holding the append
//     lock (a group cut between its Execute and Sync) or a projection's
//     lock is ended and the lock released. On a Unix socket they do
//     nothing.
var sessionDefaults = []struct{ name, value string }{
	{"DateStyle", "ISO"},
	{"default_transaction_isolation", "read committed"},
	{"tcp_keepalives_idle", "10"},
	{"tcp_keepalives_interval", "5"},
	{"tcp_keepalives_count", "3"},
}

// SetSessionDefaults sets on cc the session settings the store relies on
// where the connection string leaves them unset: DateStyle ISO,
// default_transaction_isolation read committed, and TCP keepalives that
// let the server notice a vanished client in about 25 s. A setting in the startup
// packet overrides the database's and the role's, so this holds whatever
// they say. Open calls it; call it on the configuration of a pool you give
// to New if the database's or role's defaults differ.
func SetSessionDefaults(cc *pgx.ConnConfig) {
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
outer:
	for _, d := range sessionDefaults {
		for k := range cc.RuntimeParams {
			if strings.EqualFold(k, d.name) {
				continue outer
			}
		}
		cc.RuntimeParams[d.name] = d.value
	}
}

// ErrSessionSetting is returned (wrapped, naming the setting) by New when
// the pool's sessions have a setting the store cannot work under, and by
// an append that failed because of one (see SetSessionDefaults): a
// DateStyle other than ISO where results are read as text, or a
// default_transaction_isolation other than read committed.
var ErrSessionSetting = errors.New("postgres store: a session setting of the pool does not suit the store")

// checkSession refuses a pool whose sessions would break the store's reads
// or appends (ErrSessionSetting). The modes that describe their statements
// read timestamps in binary, whatever the DateStyle.
func checkSession(ctx context.Context, pool *pgxpool.Pool) error {
	var style, isolation string
	if err := pool.QueryRow(ctx, `SELECT current_setting('DateStyle'), current_setting('default_transaction_isolation')`).Scan(&style, &isolation); err != nil {
		return storeErr("read the session settings", err)
	}
	switch pool.Config().ConnConfig.DefaultQueryExecMode {
	case pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec:
		if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(style)), "ISO") {
			return sessionError("DateStyle", style, "ISO, to read timestamps sent as text")
		}
	}
	return checkIsolation(isolation)
}

func checkIsolation(isolation string) error {
	if isolation != "read committed" {
		return sessionError("default_transaction_isolation", isolation, "read committed, for the append lock to see what committed before it")
	}
	return nil
}

func sessionError(name, have, want string) error {
	return fmt.Errorf("%w: %s is %q, want %s (set %s in the connection string, or call SetSessionDefaults on the pool's configuration)",
		ErrSessionSetting, name, have, want, name)
}

// redactErr drops the text of a URL parse error, which can hold a password.
func redactErr(err error) error {
	return errors.New("invalid connection string (details withheld: they may contain a password)")
}

// Pool returns the store's pool (for projections that keep read models in
// the same database).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the PostgreSQL schema that holds the log.
func (s *Store) Schema() string { return s.schema }

// Validator returns the validator every append goes through.
func (s *Store) Validator() *eventstore.Validator { return s.validator }

// Features declares what this backend supports.
func (s *Store) Features() eventstore.Features {
	return eventstore.Features{GaplessPositions: true, TenantFilter: true, Persistent: true}
}

// Close stops the committer after the queued appends are written and closes
// live subscriptions. It closes the pool only if Open created it.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.cancelClosing()
	s.closeMu.Unlock()
	s.done.Wait()
	s.notifier.close()
	if s.ownsPool {
		s.pool.Close()
	}
	return nil
}

// readCtx is ctx, also cancelled by Close: a read that the database does
// not answer (the network to it hangs) ends with Close instead of holding
// its caller until its own deadline. done releases it.
func (s *Store) readCtx(ctx context.Context) (rctx context.Context, done func()) {
	rctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closing, cancel)
	return rctx, func() { stop(); cancel() }
}

// closedErr is eventstore.ErrClosed for a read that failed once Close ran
// (cut short by it, or refused by a pool it closed), else err.
func (s *Store) closedErr(err error) error {
	if err != nil && s.closing.Err() != nil {
		return eventstore.ErrClosed
	}
	return err
}

func (s *Store) isClosed() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	return s.closed
}
