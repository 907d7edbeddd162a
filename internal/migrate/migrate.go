// Package migrate applies embedded, numbered SQL migrations (files named
// NNN_name.up.sql) to PostgreSQL and records them in the
// eventstream_migrations table, one row per (component, version). Applying
// is idempotent and safe from two processes at once: a transaction-scoped
// advisory lock serialises appliers, and each pending migration runs in the
// same transaction as its record.
package migrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var upFile = regexp.MustCompile(`^([0-9]+)_([a-z0-9_]+)\.up\.sql$`)

// Load reads every NNN_name.up.sql at the root of fsys, in version order.
// Versions must start at 1 and have no holes or duplicates; any other file
// ending in .sql is an error so that a misnamed migration is not skipped.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate: list: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := upFile.FindStringSubmatch(e.Name())
		if m == nil {
			if regexp.MustCompile(`\.sql$`).MatchString(e.Name()) {
				return nil, fmt.Errorf("migrate: %s: want NNN_name.up.sql", e.Name())
			}
			continue
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrate: migration %d (%s): versions must run 1, 2, 3… without holes or duplicates", m.Version, m.Name)
		}
	}
	return out, nil
}

// Beginner is what Apply needs: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Apply runs the migrations of component that have not run yet in the
// current schema and returns those it ran. A database that has migrations
// this code does not know (a newer binary ran) is left alone and reported.
//
// On a pool or a connection (anything with pgx's BeginTx), Apply runs in a
// READ COMMITTED transaction whatever the session's
// default_transaction_isolation: after waiting for another applier's lock
// it must see what that applier committed. On a pgx.Tx it runs in a
// savepoint of the caller's transaction, whose isolation level is the
// caller's: concurrent appliers are safe only if it is READ COMMITTED.
func Apply(ctx context.Context, db Beginner, component string, ms []Migration) ([]Migration, error) {
	var tx pgx.Tx
	var err error
	if b, ok := db.(interface {
		BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	}); ok {
		// Under REPEATABLE READ or SERIALIZABLE the snapshot is taken by
		// the first statement, before the lock is granted: an applier that
		// waited would not see the rows of the one it waited for and would
		// run every migration again.
		tx, err = b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	} else {
		tx, err = db.Begin(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate %s: begin: %w", component, err)
	}
	defer tx.Rollback(ctx)
	var schema *string
	var searchPath string
	if err := tx.QueryRow(ctx, `SELECT current_schema(), current_setting('search_path')`).Scan(&schema, &searchPath); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", component, err)
	}
	if schema == nil {
		return nil, fmt.Errorf("migrate %s: the search_path (%s) names no schema that exists: create it first", component, searchPath)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, LockKey("migrate", *schema)); err != nil {
		return nil, fmt.Errorf("migrate %s: lock: %w", component, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS eventstream_migrations (
		component  text        NOT NULL,
		version    integer     NOT NULL,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version))`); err != nil {
		return nil, fmt.Errorf("migrate %s: create table: %w", component, err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM eventstream_migrations WHERE component = $1`, component).Scan(&current); err != nil {
		return nil, fmt.Errorf("migrate %s: read applied: %w", component, err)
	}
	if current > len(ms) {
		return nil, fmt.Errorf("migrate %s: the database is at version %d but this program knows only %d migrations; upgrade the program", component, current, len(ms))
	}
	var ran []Migration
	for _, m := range ms[current:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrate %s: %03d_%s: %w", component, m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO eventstream_migrations (component, version, name) VALUES ($1, $2, $3)`, component, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("migrate %s: record %03d_%s: %w", component, m.Version, m.Name, err)
		}
		ran = append(ran, m)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrate %s: commit: %w", component, err)
	}
	return ran, nil
}

// Status returns the highest applied version of component (0: none).
func Status(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, component string) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM eventstream_migrations WHERE component = $1`, component).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: status: %w", component, err)
	}
	return v, nil
}

// LockKey derives a 64-bit advisory-lock key from a purpose and a schema,
// so that stores in different schemas of one database do not contend.
func LockKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("eventstream/" + purpose + "/" + schema))
	return int64(h.Sum64())
}
