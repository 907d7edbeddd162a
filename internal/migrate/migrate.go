// Package migrate applies embedded, numbered SQL migrations (files named
// NNN_name.up.sql) to PostgreSQL and records them in the
// eventstream_migrations table, one row per (component, version). Applying
// is idempotent and safe from two processes at once: a transaction-scoped
// advisory lock serialises appliers (one waits for another whatever the
// session's lock_timeout and statement_timeout), and each pending
// migration runs in the same transaction as its record (a migration that
// commits or rolls back, changes the search_path or the schema it
// resolves to, or copies from STDIN, is refused; so is a search_path that
// resolves to no schema, or to the session's temporary one). Every
// refusal is a *RefusedError; database errors are returned wrapped, as
// they are. A schema that is up to date is only
// read, so a role without DDL rights, or a read-only session, can run
// Apply once nothing is left to apply. Each record keeps a checksum of the
// migration's SQL: a migration changed after it ran, two migrations with
// one number, or a missing record stop Apply with an error, since
// skipping them would leave databases at one version that differ.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

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
			// Any case: a .SQL file is as much a migration to its author.
			if strings.HasSuffix(strings.ToLower(e.Name()), ".sql") {
				return nil, refuse("", nil, ReasonMisnamed, "migrate: %s: want NNN_name.up.sql", e.Name())
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
			return nil, refuse("", &m, ReasonNumbering, "migrate: migration %d (%s): versions must run 1, 2, 3… without holes or duplicates", m.Version, m.Name)
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
	var searchPath, user string
	var temporary bool
	// current_schema() is called before the temporary schema is looked
	// up: with pg_temp first in the path it creates the session's
	// pg_temp_N, and returns it.
	if err := tx.QueryRow(ctx, `SELECT s, current_setting('search_path'), current_user,
		coalesce((SELECT oid = pg_my_temp_schema() OR pg_is_other_temp_schema(oid) FROM pg_namespace WHERE nspname = s), false)
		FROM current_schema() s`).Scan(&schema, &searchPath, &user, &temporary); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", component, err)
	}
	if schema == nil {
		// PostgreSQL leaves out of the path a schema the role may not use,
		// as it does one that does not exist.
		return nil, refuse(component, nil, ReasonNoSchema, "migrate %s: the search_path (%s) names no schema that exists and that the role %s has USAGE on: create it, or grant USAGE on it", component, searchPath, user)
	}
	if temporary {
		// pg_temp first in the path: the migrations and their records
		// would go to the session's temporary schema and vanish with the
		// session, to be applied again by the next one.
		return nil, refuse(component, nil, ReasonTemporarySchema, "migrate %s: the search_path (%s) makes the session's temporary schema (%s) the one to migrate, which is dropped when the session ends: put pg_temp after the schema to migrate, or leave it out", component, searchPath, *schema)
	}
	// An applier waits for another to finish, however long its migrations
	// take (WaitUntimed); the migrations themselves run under the settings
	// of the session.
	if err := WaitUntimed(ctx, tx, func() error {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, LockKey("migrate", *schema))
		return err
	}); err != nil {
		return nil, fmt.Errorf("migrate %s: lock: %w", component, err)
	}
	// Up to date, Apply writes nothing: it may run as a role that can only
	// read the migrations table, or in a read-only session. So the table
	// and its checksum column are looked up before any DDL (CREATE TABLE
	// IF NOT EXISTS needs CREATE on the schema even when the table exists),
	// in the current schema, where CREATE TABLE would put it.
	var exists, hasChecksum bool
	if err := tx.QueryRow(ctx, `SELECT c.oid IS NOT NULL, EXISTS (SELECT FROM pg_attribute
		WHERE attrelid = c.oid AND attname = 'checksum' AND NOT attisdropped)
		FROM (SELECT to_regclass(quote_ident(current_schema()) || '.eventstream_migrations') AS oid) c`).Scan(&exists, &hasChecksum); err != nil {
		return nil, fmt.Errorf("migrate %s: read the migrations table: %w", component, err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS eventstream_migrations (
			component  text        NOT NULL,
			version    integer     NOT NULL,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			checksum   text,
			PRIMARY KEY (component, version))`); err != nil {
			return nil, fmt.Errorf("migrate %s: create table: %w", component, err)
		}
		hasChecksum = true
	}
	// A table created by a release that recorded no checksum gets the
	// column. Looked up first: ALTER TABLE would lock out readers of the
	// table (Status) until this transaction ends, every time.
	if !hasChecksum {
		if _, err := tx.Exec(ctx, `ALTER TABLE eventstream_migrations ADD COLUMN IF NOT EXISTS checksum text`); err != nil {
			return nil, fmt.Errorf("migrate %s: add the checksum column: %w", component, err)
		}
	}
	current, err := checkApplied(ctx, tx, component, ms)
	if err != nil {
		return nil, err
	}
	// Refused before any runs: COPY … FROM STDIN would wait, until ctx
	// ends, for data that Apply does not send.
	for _, m := range ms[current:] {
		if copiesFromStdin(m.SQL) {
			return nil, refuse(component, &m, ReasonCopyFromStdin, "migrate %s: %03d_%s runs COPY … FROM STDIN, which waits for data that a migration cannot send: put the rows in INSERT statements", component, m.Version, m.Name)
		}
	}
	var ran []Migration
	if len(ms) > current {
		// A transaction-local setting marks this transaction: it reverts
		// when the transaction ends, so it is gone in one that a
		// migration's SQL opened after ending this one (COMMIT; BEGIN).
		if _, err := tx.Exec(ctx, `SELECT set_config('eventstream.migrate_tx', 'on', true)`); err != nil {
			return nil, fmt.Errorf("migrate %s: %w", component, err)
		}
	}
	for _, m := range ms[current:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrate %s: %03d_%s: %w", component, m.Version, m.Name, err)
		}
		// A COMMIT or ROLLBACK in the SQL ends the transaction (and the
		// caller's, under a savepoint) and releases the lock: what follows
		// would run unlocked, each statement committed on its own, or in a
		// transaction the SQL began again, which the status alone does not
		// tell from this one.
		ended := tx.Conn().PgConn().TxStatus() != 'T'
		var mark, path string
		var cur *string
		if !ended {
			if err := tx.QueryRow(ctx, `SELECT coalesce(current_setting('eventstream.migrate_tx', true), ''), current_setting('search_path'), current_schema()`).Scan(&mark, &path, &cur); err != nil {
				return nil, fmt.Errorf("migrate %s: %03d_%s: %w", component, m.Version, m.Name, err)
			}
			ended = mark != "on"
		}
		if ended {
			return nil, refuse(component, &m, ReasonEndsTransaction, "migrate %s: %03d_%s ends the transaction it runs in (COMMIT or ROLLBACK in its SQL); each migration runs in the transaction that records it: remove them, and check what it left behind", component, m.Version, m.Name)
		}
		// A migration that changes the search_path (SET, or pg_dump's
		// set_config) sends what follows it, its record included, to
		// another schema, and a plain SET outlives the transaction: the
		// connection would migrate that schema next time. Refused; the
		// rollback undoes the change.
		if path != searchPath {
			return nil, refuse(component, &m, ReasonSearchPathChanged, "migrate %s: %03d_%s changes the search_path (from %s to %s): a migration works in the schema it is applied to; remove the SET and qualify the names that must live elsewhere", component, m.Version, m.Name, searchPath, path)
		}
		// The same path can name another schema once the migration made
		// one that the path names ahead of this one (search_path=new,app,
		// or "$user",app and the role's schema), or changed the role that
		// "$user" names (SET ROLE): what follows would go there, and a
		// later run would migrate it. Refused likewise.
		if cur == nil || *cur != *schema {
			now := "none"
			if cur != nil {
				now = *cur
			}
			return nil, refuse(component, &m, ReasonSchemaChanged, "migrate %s: %03d_%s changes the schema it works in (from %s to %s, with the search_path %s): a migration works in the schema it is applied to; create other schemas elsewhere, and do not change the role", component, m.Version, m.Name, *schema, now, searchPath)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO eventstream_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)`,
			component, m.Version, m.Name, Checksum(m.SQL)); err != nil {
			return nil, fmt.Errorf("migrate %s: record %03d_%s: %w", component, m.Version, m.Name, err)
		}
		ran = append(ran, m)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrate %s: commit: %w", component, err)
	}
	return ran, nil
}

// checkApplied compares what the migrations table records for component
// with ms and returns how many of ms have run. It refuses a database a
// newer program migrated, a hole in the recorded versions, and a recorded
// migration whose name or checksum differs from the one in ms: a migration
// edited after it ran would never reach the databases that ran it, so that
// two databases at one version would differ (the change belongs in a new
// migration). A record without a checksum (written by a release that kept
// none) gets the checksum of ms.
func checkApplied(ctx context.Context, tx pgx.Tx, component string, ms []Migration) (int, error) {
	type record struct {
		version  int
		name     string
		checksum *string
	}
	rows, err := tx.Query(ctx, `SELECT version, name, checksum FROM eventstream_migrations WHERE component = $1 ORDER BY version`, component)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: read applied: %w", component, err)
	}
	applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (record, error) {
		var rec record
		err := r.Scan(&rec.version, &rec.name, &rec.checksum)
		return rec, err
	})
	if err != nil {
		return 0, fmt.Errorf("migrate %s: read applied: %w", component, err)
	}
	if n := len(applied); n > 0 && applied[n-1].version > len(ms) {
		return 0, refuse(component, nil, ReasonNewerDatabase, "migrate %s: the database is at version %d but this program knows only %d migrations; upgrade the program", component, applied[n-1].version, len(ms))
	}
	for i, rec := range applied {
		m := ms[i]
		if rec.version != m.Version {
			return 0, refuse(component, &m, ReasonMissingRecord, "migrate %s: the migrations table records version %d but not %03d_%s: it was edited by hand; restore the record if that migration ran", component, rec.version, m.Version, m.Name)
		}
		sum := Checksum(m.SQL)
		if rec.name != m.Name {
			// The same SQL under another name is a file renamed after it
			// ran; other SQL, another branch's migration of that number.
			if rec.checksum != nil && *rec.checksum == sum {
				return 0, refuse(component, &m, ReasonRenamed, "migrate %s: migration %03d ran as %q but this program's %03d, with the same SQL, is named %q: it was renamed after it ran; give it back its name", component, m.Version, rec.name, m.Version, m.Name)
			}
			return 0, refuse(component, &m, ReasonNumberReused, "migrate %s: migration %03d ran as %q but this program's %03d is %q: two migrations were given one number", component, m.Version, rec.name, m.Version, m.Name)
		}
		if rec.checksum == nil {
			if _, err := tx.Exec(ctx, `UPDATE eventstream_migrations SET checksum = $3 WHERE component = $1 AND version = $2`, component, m.Version, sum); err != nil {
				return 0, fmt.Errorf("migrate %s: record the checksum of %03d_%s: %w", component, m.Version, m.Name, err)
			}
		} else if *rec.checksum != sum {
			return 0, refuse(component, &m, ReasonEdited, "migrate %s: migration %03d_%s was changed after it was applied (checksum %.12s recorded, %.12s now): restore it and make the change in a new migration", component, m.Version, m.Name, *rec.checksum, sum)
		}
	}
	return len(applied), nil
}

// Checksum is what the migrations table records of a migration's SQL: the
// SHA-256 of its text with CRLF line endings read as LF, so that a
// checkout that converts line endings builds the same migrations.
func Checksum(sql string) string {
	h := sha256.Sum256([]byte(strings.ReplaceAll(sql, "\r\n", "\n")))
	return hex.EncodeToString(h[:])
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

// WaitUntimed runs wait, the statements by which a migrating transaction
// waits for another process's (a lock), with the session's lock_timeout
// and statement_timeout lifted, and puts them back after. A timeout set for
// the database or the role would otherwise fail every process but one that
// migrates at the same time as another; the wait is bounded by ctx instead.
func WaitUntimed(ctx context.Context, tx pgx.Tx, wait func() error) error {
	var lockTimeout, statementTimeout string
	if err := tx.QueryRow(ctx, `SELECT current_setting('lock_timeout'), current_setting('statement_timeout')`).Scan(&lockTimeout, &statementTimeout); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', '0', true), set_config('statement_timeout', '0', true)`); err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`, lockTimeout, statementTimeout)
	return err
}
