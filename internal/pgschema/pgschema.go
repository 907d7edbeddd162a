// Package pgschema drops a PostgreSQL schema together with its siblings:
// the schemas named <schema>__*, where package projections keeps each
// generation of a read model whose runtime lives in <schema>. Tests
// (internal/pgtest) and the bench both create a schema of their own and
// must leave nothing behind.
package pgschema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Drop drops schema and every schema whose name starts with schema + "__"
// (CASCADE), longest name first. A schema already gone is not an error. It
// tries every one and returns all the failures.
//
// A generation whose name would pass PostgreSQL's 63-byte limit is
// shortened with a hash (see projections) and no longer starts with
// schema + "__": Drop does not find those. Names that short schemas give
// (tests, the bench) fit.
func Drop(ctx context.Context, conn *pgx.Conn, schema string) error {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = $1 OR starts_with(nspname, $1 || '__')
		ORDER BY length(nspname) DESC, nspname`, schema)
	if err != nil {
		return fmt.Errorf("list the schemas of %s: %w", schema, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list the schemas of %s: %w", schema, err)
	}
	var errs []error
	for _, n := range names {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{n}.Sanitize()+` CASCADE`); err != nil {
			errs = append(errs, fmt.Errorf("drop schema %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
