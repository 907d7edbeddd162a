package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/migrate"
)

// deferrableIndexes lists the indexes of a generation's tables that a
// rebuild may drop while it loads and make again after: those a write
// only has to keep up to date. Kept: unique indexes (ON CONFLICT and
// uniqueness need them while rows arrive), those behind a constraint
// (primary keys, exclusion constraints), the indexes of a partitioned
// table and their partitions (pg_get_indexdef writes a partitioned index
// ON ONLY the parent: made again from it, it would be invalid and without
// its partitions' indexes, which it made under names of its own, not the
// migrations'), indexes not yet valid, and those with settings
// pg_get_indexdef does not write out (a tablespace of their own, a
// per-column statistics target, 0 included: -1 is the default; the
// table's CLUSTER ON), which would come back without them.
const deferrableIndexes = `SELECT ci.relname, ct.relname, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class')
	FROM pg_index i
	JOIN pg_class ci ON ci.oid = i.indexrelid
	JOIN pg_class ct ON ct.oid = i.indrelid
	JOIN pg_namespace n ON n.oid = ct.relnamespace
	WHERE n.nspname = $1 AND ct.relname <> 'eventstream_migrations'
	  AND NOT i.indisunique AND NOT i.indisexclusion AND i.indisvalid AND i.indisready
	  AND ci.relkind = 'i'
	  AND ci.reltablespace = 0
	  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
	  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
	  AND NOT i.indisclustered
	  AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
	ORDER BY ci.relname`

// qualifiedNames sets search_path to pg_catalog alone, inside the
// transaction, until restore: pg_get_indexdef then names every object
// outside pg_catalog with its schema, and the CREATE INDEX statements it
// wrote, run under the same path (makeDeferred), make the same index
// whatever the session's own path (one that puts a schema with, say, its
// own lower() before pg_catalog).
func qualifiedNames(ctx context.Context, tx pgx.Tx) (restore func() error, err error) {
	var orig string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&orig); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', 'pg_catalog', true)`); err != nil {
		return nil, err
	}
	return func() error {
		_, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, orig)
		return err
	}, nil
}

// deferIndexes drops the deferrable indexes of generation gen (in
// schema) and records their definitions, inside tx, so that a bulk load
// into its empty tables writes each row's heap tuple and its unique
// indexes only; buildDeferred makes them again, each by one sort of the
// loaded rows, which costs a fraction of keeping them up to date row by
// row. It returns how many it dropped; an index already recorded (a
// migration made it again since) gets its new definition.
func deferIndexes(ctx context.Context, tx pgx.Tx, name string, gen int, schema string) (int, error) {
	restore, err := qualifiedNames(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("projections: defer the indexes of %q generation %d: %w", name, gen, err)
	}
	rows, err := tx.Query(ctx, deferrableIndexes, schema)
	if err != nil {
		return 0, fmt.Errorf("projections: defer the indexes of %q generation %d: %w", name, gen, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[deferredIndex])
	if err != nil {
		return 0, fmt.Errorf("projections: defer the indexes of %q generation %d: %w", name, gen, err)
	}
	if err := restore(); err != nil {
		return 0, fmt.Errorf("projections: defer the indexes of %q generation %d: %w", name, gen, err)
	}
	for _, ix := range list {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_deferred_indexes (projection, generation, index_name, table_name, definition, comment)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (projection, generation, index_name) DO UPDATE
			SET table_name = excluded.table_name, definition = excluded.definition, comment = excluded.comment, deferred_at = now()`,
			name, gen, ix.Name, ix.Table, ix.Definition, ix.Comment); err != nil {
			return 0, fmt.Errorf("projections: defer the index %s of %q generation %d: %w", ix.Name, name, gen, err)
		}
		if _, err := tx.Exec(ctx, `DROP INDEX `+pgx.Identifier{schema, ix.Name}.Sanitize()); err != nil {
			return 0, fmt.Errorf("projections: defer the index %s of %q generation %d: %w", ix.Name, name, gen, err)
		}
	}
	return len(list), nil
}

// deferredIndex is one index recorded by deferIndexes.
type deferredIndex struct {
	Name, Table, Definition string
	Comment                 *string
}

func listDeferred(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, name string, gen int) ([]deferredIndex, error) {
	rows, err := q.Query(ctx, `SELECT index_name, table_name, definition, comment FROM projection_deferred_indexes
		WHERE projection = $1 AND generation = $2 ORDER BY index_name`, name, gen)
	if err != nil {
		return nil, fmt.Errorf("projections: list the deferred indexes of %q generation %d: %w", name, gen, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[deferredIndex])
	if err != nil {
		return nil, fmt.Errorf("projections: list the deferred indexes of %q generation %d: %w", name, gen, err)
	}
	return list, nil
}

// makeDeferred makes one deferred index again, as its definition says
// under search_path pg_catalog, and forgets its record, inside tx. An
// index of that name already there (a migration that ran meanwhile made
// it) is left as it is; so is a record whose table a migration dropped
// since.
func makeDeferred(ctx context.Context, tx pgx.Tx, name string, gen int, schema string, ix deferredIndex) error {
	var missing bool
	err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NULL AND to_regclass($2) IS NOT NULL`,
		pgx.Identifier{schema, ix.Name}.Sanitize(), pgx.Identifier{schema, ix.Table}.Sanitize()).Scan(&missing)
	if err != nil {
		return err
	}
	if missing {
		// Under the search_path the definition was written for: a name
		// it leaves unqualified is pg_catalog's, which a session whose
		// path puts another schema before pg_catalog would look up there
		// first.
		restore, err := qualifiedNames(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, ix.Definition); err != nil {
			return err
		}
		if err := restore(); err != nil {
			return err
		}
		if ix.Comment != nil {
			var stmt string
			err := tx.QueryRow(ctx, `SELECT format('COMMENT ON INDEX %s IS %L', $1::text, $2::text)`,
				pgx.Identifier{schema, ix.Name}.Sanitize(), *ix.Comment).Scan(&stmt)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
	}
	_, err = tx.Exec(ctx, `DELETE FROM projection_deferred_indexes WHERE projection = $1 AND generation = $2 AND index_name = $3`, name, gen, ix.Name)
	return err
}

// deferredLockKey names the transaction-level advisory lock by which a
// Migrate (migrateBuilding, in this process or another) and the rebuild
// making the deferred indexes again (buildDeferred) take turns on the
// generation's indexes and their records: otherwise a Migrate that makes
// the deferred indexes, migrates and defers them again meanwhile raced
// the rebuild's CREATE INDEX (a deadlock, or an index of the same name
// made twice), and the rebuild, going by the list it read before, made an
// index as the old migrations defined it, or missed one that Migrate
// deferred again, and swapped in the generation without it.
func (r *Runtime) deferredLockKey(home, name string) int64 {
	return migrate.LockKey("projection-deferred-indexes/"+name, home)
}

// buildDeferred makes the deferred indexes of generation gen again, each
// in a transaction of its own that also forgets its record, so that an
// interruption keeps those already made. Each transaction waits for a
// Migrate that works on the generation's indexes and takes the record as
// that left it; once through the list, it reads the list again, since a
// Migrate may have deferred indexes again meanwhile. It returns how many
// it made.
func (r *Runtime) buildDeferred(ctx context.Context, conn *pgx.Conn, home, name string, gen int, schema string) (int, error) {
	key := r.deferredLockKey(home, name)
	began := time.Now()
	made := 0
	for {
		list, err := listDeferred(ctx, conn, name, gen)
		if err != nil {
			return made, err
		}
		if len(list) == 0 {
			break
		}
		for _, ix := range list {
			err := pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
					return err
				}
				var cur deferredIndex
				err := tx.QueryRow(ctx, `SELECT index_name, table_name, definition, comment FROM projection_deferred_indexes
					WHERE projection = $1 AND generation = $2 AND index_name = $3`, name, gen, ix.Name).Scan(&cur.Name, &cur.Table, &cur.Definition, &cur.Comment)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil // made by a Migrate meanwhile
				}
				if err != nil {
					return err
				}
				return makeDeferred(ctx, tx, name, gen, schema, cur)
			})
			if err != nil {
				return made, fmt.Errorf("projections: make the deferred index %s of %q generation %d: %w", ix.Name, name, gen, err)
			}
			made++
		}
	}
	if made > 0 {
		r.log.Info("projection rebuild: deferred indexes made", "projection", name, "generation", gen, "indexes", made, "took", time.Since(began).Round(time.Millisecond).String())
	}
	return made, nil
}

// migrateBuilding applies the projection's migrations to the generation
// being built, inside tx. When some are pending and the generation's
// indexes are deferred, they are made first, so that the migrations find
// the tables as they made them (a migration may alter or drop one of
// those indexes), and deferred again after. deferNow defers the
// generation's indexes even when none were (Rebuild of a projection with
// DeferIndexes resuming a rebuild begun without). It returns the
// migrations it ran.
func (r *Runtime) migrateBuilding(ctx context.Context, tx pgx.Tx, home string, p *registered, gen int, schema string, deferNow bool) ([]migrate.Migration, error) {
	// No record appears while the state row is locked (a rebuild defers
	// only under it): with none, or no migration pending, the indexes are
	// left alone, and a rebuild making them again is not waited for.
	deferred, err := listDeferred(ctx, tx, p.Name, gen)
	if err != nil {
		return nil, err
	}
	if len(deferred) > 0 {
		var applied int
		err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+pgx.Identifier{schema, "eventstream_migrations"}.Sanitize()+` WHERE component = $1`,
			p.component).Scan(&applied)
		if err != nil {
			return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, err)
		}
		if applied >= len(p.migrations) {
			return nil, nil
		}
		// Waits for the rebuild to finish the index it is making (the
		// session's lock_timeout lifted, as for the state row), then
		// takes the records as it left them.
		err = migrate.WaitUntimed(ctx, tx, func() error {
			_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, r.deferredLockKey(home, p.Name))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, err)
		}
		if deferred, err = listDeferred(ctx, tx, p.Name, gen); err != nil {
			return nil, err
		}
		for _, ix := range deferred {
			if err := makeDeferred(ctx, tx, p.Name, gen, schema, ix); err != nil {
				return nil, fmt.Errorf("projections: migrate %q: make the deferred index %s first: %w", p.Name, ix.Name, err)
			}
		}
	}
	ran, err := r.migrateGeneration(ctx, tx, p, schema)
	if err != nil {
		return nil, err
	}
	if len(deferred) > 0 || deferNow {
		if _, err := deferIndexes(ctx, tx, p.Name, gen, schema); err != nil {
			return nil, err
		}
	}
	return ran, nil
}
