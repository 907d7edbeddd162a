package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/migrate"
)

// A generation is one copy of a projection's tables, in a schema of its
// own. Readers query views in the runtime's schema that point at the
// active generation; a rebuild fills a new generation while they do, and
// the swap repoints the views in one transaction.

// generationSchemaName names the schema of a generation:
// <home>__<projection>_g<N>, shortened with a hash when PostgreSQL's
// 63-byte limit requires.
func generationSchemaName(home, name string, gen int) string {
	s := fmt.Sprintf("%s__%s_g%d", home, name, gen)
	if len(s) <= 63 {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(home))
	tail := fmt.Sprintf("_%08x__%s_g%d", h.Sum32(), name, gen)
	return home[:runeCut(home, 63-len(tail))] + tail
}

// runeCut is the largest n <= max at which s can be cut without splitting
// a UTF-8 sequence: a name cut inside one is invalid UTF-8, which
// PostgreSQL refuses.
func runeCut(s string, max int) int {
	for max > 0 && max < len(s) && !utf8.RuneStart(s[max]) {
		max--
	}
	return max
}

func generationSchema(ctx context.Context, q pgx.Tx, name string, gen int) (string, error) {
	var s string
	err := q.QueryRow(ctx, `SELECT schema_name FROM projection_generations WHERE projection = $1 AND generation = $2`, name, gen).Scan(&s)
	if err != nil {
		return "", fmt.Errorf("projections: find generation %d of %q: %w", gen, name, err)
	}
	return s, nil
}

// createGeneration creates the schema, records and checkpoint of a new
// generation and migrates its tables, inside tx.
func (r *Runtime) createGeneration(ctx context.Context, tx pgx.Tx, home string, p *registered, st string, from eventstore.Position) (int, string, error) {
	c, pp, err := posArgs(from)
	if err != nil {
		return 0, "", err
	}
	var gen int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(generation), 0) + 1 FROM projection_generations WHERE projection = $1`, p.Name).Scan(&gen); err != nil {
		return 0, "", fmt.Errorf("projections: new generation of %q: %w", p.Name, err)
	}
	schema := generationSchemaName(home, p.Name, gen)
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return 0, "", fmt.Errorf("projections: create schema %s for %q: %w", schema, p.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO projection_generations (projection, generation, schema_name, state, activated_at)
		VALUES ($1, $2, $3, $4, CASE WHEN $4 = 'active' THEN now() END)`, p.Name, gen, schema, st); err != nil {
		return 0, "", fmt.Errorf("projections: record generation %d of %q: %w", gen, p.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (projection, generation, commit_position, prepare_position)
		VALUES ($1, $2, $3, $4)`, p.Name, gen, c, pp); err != nil {
		return 0, "", fmt.Errorf("projections: checkpoint of generation %d of %q: %w", gen, p.Name, err)
	}
	if _, err := r.migrateGeneration(ctx, tx, p, schema); err != nil {
		return 0, "", err
	}
	return gen, schema, nil
}

// migrateGeneration applies the projection's migrations inside the
// generation's schema; they are recorded there, as "projection:<name>".
// It returns those it ran.
func (r *Runtime) migrateGeneration(ctx context.Context, tx pgx.Tx, p *registered, schema string) ([]migrate.Migration, error) {
	if len(p.migrations) == 0 {
		return nil, nil
	}
	var orig string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&orig); err != nil {
		return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, err)
	}
	ran, err := migrate.Apply(ctx, tx, p.component, p.migrations)
	// Put back on failure too: Apply rolled back to its savepoint, and the
	// caller may go on in the transaction (migratePublished does).
	if _, rerr := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, orig); rerr != nil && err == nil {
		return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, rerr)
	}
	if err != nil {
		return nil, fmt.Errorf("projections: migrate %q in %s: %w", p.Name, schema, err)
	}
	return ran, nil
}

// migratePublished applies the projection's migrations to its published
// generation (in schema). Each of its views in the home schema reads
// every column of a table (SELECT *), and PostgreSQL refuses to change
// the type of a column a view reads (feature_not_supported) or to drop it
// (dependent_objects_still_exist): a migration refused so (catalog's 007
// widens a column) runs again with the
// projection's views dropped, and the views are made again after it, in
// the same transaction, with what was set on them by hand (owner,
// privileges, comments: viewSettings), so that a role an operator
// granted SELECT on a view keeps it; if anything fails, the transaction
// rolls back and the old views stand as they were. Only then: dropping a
// view takes an ACCESS EXCLUSIVE lock, a reader waiting on it fails
// rather than follows the new one, and a view someone made on top of one
// stops the drop (naming it), where a migration that adds a column
// leaves it be.
func (r *Runtime) migratePublished(ctx context.Context, tx pgx.Tx, home string, p *registered, schema string) ([]migrate.Migration, error) {
	ran, err := r.migrateGeneration(ctx, tx, p, schema)
	var pgErr *pgconn.PgError
	// feature_not_supported: a column's type changes under a view;
	// dependent_objects_still_exist: a column (or table) a view reads is
	// dropped.
	if !errors.As(err, &pgErr) || (pgErr.Code != "0A000" && pgErr.Code != "2BP01") {
		return ran, err
	}
	rows, qerr := tx.Query(ctx, `SELECT view_name FROM projection_views WHERE projection = $1 ORDER BY view_name`, p.Name)
	if qerr != nil {
		return nil, fmt.Errorf("projections: list views of %q: %w", p.Name, qerr)
	}
	views, qerr := pgx.CollectRows(rows, pgx.RowTo[string])
	if qerr != nil {
		return nil, fmt.Errorf("projections: list views of %q: %w", p.Name, qerr)
	}
	kept := make([]*viewSettings, len(views))
	for i, v := range views {
		if kept[i], qerr = captureView(ctx, tx, pgx.Identifier{home, v}.Sanitize()); qerr != nil {
			return nil, fmt.Errorf("projections: migrate %q: read the grants, owner and comments of the view %s: %w", p.Name, v, qerr)
		}
	}
	for _, v := range views {
		if _, derr := tx.Exec(ctx, `DROP VIEW IF EXISTS `+pgx.Identifier{home, v}.Sanitize()); derr != nil {
			// The detail names what depends on the view: what to drop.
			var detail string
			if errors.As(derr, &pgErr) && pgErr.Detail != "" {
				detail = " (" + pgErr.Detail + ")"
			}
			return nil, fmt.Errorf("projections: migrate %q: a migration cannot run under the view %s (%v), and dropping it, to make it again after, failed%s: %w", p.Name, v, err, detail, derr)
		}
	}
	// Apply rolled the first attempt back to its savepoint: what this
	// one runs is all that ran.
	ran, err = r.migrateGeneration(ctx, tx, p, schema)
	if err != nil {
		if errors.As(err, &pgErr) && pgErr.Code == "2BP01" && pgErr.Detail != "" {
			// Something else depends on what the migration drops: name it.
			return nil, fmt.Errorf("%w (%s)", err, pgErr.Detail)
		}
		return nil, err
	}
	// The views of the tables still there are made again here, where
	// their settings are known; publishViews then finds them current (and
	// drops those whose table the migration removed, and makes new ones).
	tables, err := generationTables(ctx, tx, schema)
	if err != nil {
		return nil, fmt.Errorf("projections: list tables of %q: %w", p.Name, err)
	}
	for i, v := range views {
		if kept[i] == nil || !slices.Contains(tables, v) {
			continue
		}
		view := pgx.Identifier{home, v}.Sanitize()
		if _, err := tx.Exec(ctx, `CREATE VIEW `+view+viewDefinition(pgx.Identifier{schema, v}.Sanitize())); err != nil {
			return nil, fmt.Errorf("projections: migrate %q: make the view %s again: %w", p.Name, v, err)
		}
		if err := r.restoreView(ctx, tx, kept[i]); err != nil {
			return nil, fmt.Errorf("projections: migrate %q: %w", p.Name, err)
		}
	}
	return ran, nil
}

// viewDefinition is what follows CREATE VIEW <name> for a view of the
// table (quoted, schema-qualified).
func viewDefinition(table string) string {
	return ` WITH (security_invoker = true) AS SELECT * FROM ` + table
}

// generationTables lists the relations of a generation's schema that
// become views, by name.
func generationTables(ctx context.Context, tx pgx.Tx, schema string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relname <> 'eventstream_migrations'
		ORDER BY c.relname`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// viewSettings is what an operator may have set by hand on a view that
// is lost when the view is dropped: its owner, its privileges and its
// columns' (GRANT SELECT ON <view> TO analyst_role), and the comments on
// it and its columns. captureView reads them before a view is dropped,
// restoreView puts them on the view made again, in the same transaction.
type viewSettings struct {
	view    string // quoted and schema-qualified
	owner   string
	acl     []aclItem // with the owner's implicit privileges when relacl is NULL
	comment *string
	columns []columnSettings
}

type columnSettings struct {
	name    string
	comment *string
	acl     []aclItem
}

// aclItem is one privilege of an ACL, as aclexplode gives it, with role
// names rather than oids. Grantee is "" for PUBLIC (no role has that name).
type aclItem struct {
	Grantor   string
	Grantee   string
	Privilege string // SELECT, INSERT, ...
	Grantable bool   // WITH GRANT OPTION
}

// aclPrivileges are the privilege names aclexplode may return for a
// relation or a column; a name is only ever written into SQL from here.
var aclPrivileges = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "TRUNCATE": true,
	"REFERENCES": true, "TRIGGER": true, "MAINTAIN": true,
}

// The privileges of a relation (with the owner's implicit ones when its
// ACL is NULL, so that an ACL and none compare) and of one of its columns
// (which have none implicitly).
const (
	relationACL = `SELECT pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END,
		a.privilege_type, a.is_grantable
		FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
		WHERE c.oid = $1::regclass ORDER BY 1, 2, 3`
	columnACL = `SELECT pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END,
		a.privilege_type, a.is_grantable
		FROM pg_attribute t, aclexplode(t.attacl) a
		WHERE t.attrelid = $1::regclass AND t.attname = $2 AND t.attnum > 0 AND NOT t.attisdropped ORDER BY 1, 2, 3`
)

func aclItems(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]aclItem, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[aclItem])
}

// captureView reads the settings of view (quoted, schema-qualified); nil
// when there is no such relation.
func captureView(ctx context.Context, tx pgx.Tx, view string) (*viewSettings, error) {
	s := &viewSettings{view: view}
	err := tx.QueryRow(ctx, `SELECT pg_get_userbyid(relowner), obj_description(oid, 'pg_class') FROM pg_class WHERE oid = to_regclass($1)`, view).
		Scan(&s.owner, &s.comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.acl, err = aclItems(ctx, tx, relationACL, view); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT attname::text, col_description(attrelid, attnum) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND (attacl IS NOT NULL OR col_description(attrelid, attnum) IS NOT NULL)
		ORDER BY attnum`, view)
	if err != nil {
		return nil, err
	}
	cols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (columnSettings, error) {
		var c columnSettings
		err := row.Scan(&c.name, &c.comment)
		return c, err
	})
	if err != nil {
		return nil, err
	}
	for i := range cols {
		if cols[i].acl, err = aclItems(ctx, tx, columnACL, view, cols[i].name); err != nil {
			return nil, err
		}
	}
	s.columns = cols
	return s, nil
}

// restoreView puts the settings s read of a view on the view of that
// name just made again: first the owner (ALTER ... OWNER rewrites the
// owner's entries of an ACL), then the privileges, then the comments. A
// column that the view no longer has (a migration renamed it) loses its
// settings, which is logged.
func (r *Runtime) restoreView(ctx context.Context, tx pgx.Tx, s *viewSettings) error {
	var owner string
	if err := tx.QueryRow(ctx, `SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = $1::regclass`, s.view).Scan(&owner); err != nil {
		return fmt.Errorf("restore the owner of the view %s: %w", s.view, err)
	}
	if owner != s.owner {
		if _, err := tx.Exec(ctx, `ALTER VIEW `+s.view+` OWNER TO `+pgx.Identifier{s.owner}.Sanitize()); err != nil {
			return fmt.Errorf("restore the owner of the view %s (%s): %w", s.view, s.owner, err)
		}
	}
	if err := restoreACL(ctx, tx, s.view, "", s.owner, s.acl); err != nil {
		return fmt.Errorf("restore the privileges on the view %s: %w", s.view, err)
	}
	if err := comment(ctx, tx, "VIEW "+s.view, s.comment); err != nil {
		return fmt.Errorf("restore the comment on the view %s: %w", s.view, err)
	}
	for _, c := range s.columns {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2 AND attnum > 0 AND NOT attisdropped)`, s.view, c.name).Scan(&exists); err != nil {
			return fmt.Errorf("restore the column %s of the view %s: %w", c.name, s.view, err)
		}
		if !exists {
			r.log.Warn("projections: a column of a view made again is gone; its privileges and comment are not kept", "view", s.view, "column", c.name)
			continue
		}
		if err := restoreACL(ctx, tx, s.view, c.name, s.owner, c.acl); err != nil {
			return fmt.Errorf("restore the privileges on the column %s of the view %s: %w", c.name, s.view, err)
		}
		if err := comment(ctx, tx, "COLUMN "+s.view+"."+pgx.Identifier{c.name}.Sanitize(), c.comment); err != nil {
			return fmt.Errorf("restore the comment on the column %s of the view %s: %w", c.name, s.view, err)
		}
	}
	return nil
}

// comment sets the comment on object (COMMENT ON <object>), if text is
// not nil. The literal is quoted by the server (format's %L).
func comment(ctx context.Context, tx pgx.Tx, object string, text *string) error {
	if text == nil {
		return nil
	}
	var q string
	if err := tx.QueryRow(ctx, `SELECT format('COMMENT ON %s IS %L', $1::text, $2::text)`, object, *text).Scan(&q); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, q)
	return err
}

// restoreACL makes the privileges on view (or on its column, when column
// is not "") those of want, owned by owner: it grants what is missing,
// each by its grantor once that grantor holds the grant option (the
// owner's first, then those granted by a role that was given the option),
// then revokes what a new view has that want has not (default privileges,
// ALTER DEFAULT PRIVILEGES, that an operator had revoked from the view).
func restoreACL(ctx context.Context, tx pgx.Tx, view, column, owner string, want []aclItem) error {
	var have []aclItem
	var err error
	if column == "" {
		have, err = aclItems(ctx, tx, relationACL, view)
	} else {
		have, err = aclItems(ctx, tx, columnACL, view, column)
	}
	if err != nil {
		return err
	}
	type key struct{ grantor, grantee, privilege string }
	type option struct{ grantee, privilege string }
	had := map[key]bool{}
	holds := map[option]bool{} // grantee holds the grant option of privilege
	for _, a := range have {
		had[key{a.Grantor, a.Grantee, a.Privilege}] = a.Grantable
		if a.Grantable {
			holds[option{a.Grantee, a.Privilege}] = true
		}
	}
	if column != "" {
		// The grant option of a privilege on the whole view lets its
		// holder grant it on a column too (restoreView has restored the
		// view's privileges by now).
		table, err := aclItems(ctx, tx, relationACL, view)
		if err != nil {
			return err
		}
		for _, a := range table {
			if a.Grantable {
				holds[option{a.Grantee, a.Privilege}] = true
			}
		}
	}
	wanted := map[key]bool{}
	var missing []aclItem
	for _, a := range want {
		if !aclPrivileges[a.Privilege] {
			return fmt.Errorf("unknown privilege %q", a.Privilege)
		}
		k := key{a.Grantor, a.Grantee, a.Privilege}
		wanted[k] = a.Grantable
		if g, ok := had[k]; !ok || (a.Grantable && !g) {
			missing = append(missing, a)
		}
	}
	on := ` ON ` + view
	cols := ""
	if column != "" {
		cols = ` (` + pgx.Identifier{column}.Sanitize() + `)`
	}
	for len(missing) > 0 {
		var later []aclItem
		for _, a := range missing {
			if a.Grantor != owner && !holds[option{a.Grantor, a.Privilege}] {
				later = append(later, a)
				continue
			}
			q := `GRANT ` + a.Privilege + cols + on + ` TO ` + grantee(a.Grantee)
			if a.Grantable {
				q += ` WITH GRANT OPTION`
			}
			if err := asGrantor(ctx, tx, a.Grantor, owner, q); err != nil {
				return err
			}
			if a.Grantable {
				holds[option{a.Grantee, a.Privilege}] = true
			}
		}
		if len(later) == len(missing) {
			a := later[0]
			return fmt.Errorf("cannot grant %s to %s as %s: %s never holds the grant option", a.Privilege, grantee(a.Grantee), a.Grantor, a.Grantor)
		}
		missing = later
	}
	// Revoke what others granted before what the owner did: a grant
	// option revoked first would need CASCADE for the grants made with it.
	var extra []aclItem
	for _, a := range have {
		if g, ok := wanted[key{a.Grantor, a.Grantee, a.Privilege}]; !ok || (a.Grantable && !g) {
			extra = append(extra, a)
		}
	}
	slices.SortStableFunc(extra, func(a, b aclItem) int {
		switch {
		case a.Grantor == owner && b.Grantor != owner:
			return 1
		case a.Grantor != owner && b.Grantor == owner:
			return -1
		}
		return 0
	})
	for _, a := range extra {
		if !aclPrivileges[a.Privilege] {
			return fmt.Errorf("unknown privilege %q", a.Privilege)
		}
		q := `REVOKE ` + a.Privilege + cols + on + ` FROM ` + grantee(a.Grantee)
		if _, ok := wanted[key{a.Grantor, a.Grantee, a.Privilege}]; ok {
			q = `REVOKE GRANT OPTION FOR ` + a.Privilege + cols + on + ` FROM ` + grantee(a.Grantee)
		}
		if err := asGrantor(ctx, tx, a.Grantor, owner, q); err != nil {
			return err
		}
	}
	return nil
}

// grantee is a role of an ACL as GRANT and REVOKE name it.
func grantee(role string) string {
	if role == "" {
		return "PUBLIC"
	}
	return pgx.Identifier{role}.Sanitize()
}

// asGrantor runs a GRANT or REVOKE so that PostgreSQL records grantor as
// the role that made it. The owner's are run as they are (a superuser or
// a member of the owning role acts as the owner). Another grantor's are
// run under SET LOCAL ROLE grantor, the role then set back; when the
// current role cannot become that role, the statement runs as it is,
// and the grant is then recorded as the owner's (the same privilege,
// another grantor).
func asGrantor(ctx context.Context, tx pgx.Tx, grantor, owner, q string) error {
	if grantor == owner {
		_, err := tx.Exec(ctx, q)
		return err
	}
	var member bool
	var role string
	// From PostgreSQL 16 a membership may be granted WITH SET FALSE,
	// which does not allow SET ROLE: ask for what SET ROLE needs.
	if err := tx.QueryRow(ctx, `SELECT pg_has_role(current_user, r.oid,
			CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END),
		current_setting('role')
		FROM pg_roles r WHERE r.rolname = $1`, grantor).Scan(&member, &role); err != nil {
		return fmt.Errorf("the grantor %s: %w", grantor, err)
	}
	if !member {
		_, err := tx.Exec(ctx, q)
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true)`, grantor); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("as %s: %w", grantor, err)
	}
	_, err := tx.Exec(ctx, `SELECT set_config('role', $1, true)`, role)
	return err
}

// ViewConflictError: a read-model table would be exposed under a name
// that another relation of the runtime's schema already has.
type ViewConflictError struct {
	Projection string
	Name       string
	Owner      string // the projection owning the view, or "" for a relation the runtime did not create
}

func (e *ViewConflictError) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("projections: projection %q has a table %q, but projection %q already exposes a view of that name", e.Projection, e.Name, e.Owner)
	}
	return fmt.Sprintf("projections: projection %q has a table %q, but the schema already has a relation of that name that is not a projection view", e.Projection, e.Name)
}

// publishViews points the projection's views in the home schema at the
// tables of the given generation schema, inside tx: readers see the old
// views until tx commits, then the new ones.
func (r *Runtime) publishViews(ctx context.Context, tx pgx.Tx, home string, p *registered, gen int, schema string) error {
	tables, err := generationTables(ctx, tx, schema)
	if err != nil {
		return fmt.Errorf("projections: list tables of %q: %w", p.Name, err)
	}
	rows, err := tx.Query(ctx, `SELECT view_name FROM projection_views WHERE projection = $1`, p.Name)
	if err != nil {
		return fmt.Errorf("projections: list views of %q: %w", p.Name, err)
	}
	owned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("projections: list views of %q: %w", p.Name, err)
	}
	for _, v := range owned {
		if slices.Contains(tables, v) {
			continue
		}
		if _, err := tx.Exec(ctx, `DROP VIEW IF EXISTS `+pgx.Identifier{home, v}.Sanitize()); err != nil {
			return fmt.Errorf("projections: drop view %s of %q: %w", v, p.Name, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_views WHERE view_name = $1`, v); err != nil {
			return fmt.Errorf("projections: drop view %s of %q: %w", v, p.Name, err)
		}
	}
	for _, t := range tables {
		var owner *string
		var exists bool
		err := tx.QueryRow(ctx, `SELECT (SELECT projection FROM projection_views WHERE view_name = $1),
			to_regclass($2) IS NOT NULL`, t, pgx.Identifier{home, t}.Sanitize()).Scan(&owner, &exists)
		if err != nil {
			return fmt.Errorf("projections: check view %s of %q: %w", t, p.Name, err)
		}
		switch {
		case owner != nil && *owner != p.Name:
			return &ViewConflictError{Projection: p.Name, Name: t, Owner: *owner}
		case owner == nil && exists:
			return &ViewConflictError{Projection: p.Name, Name: t}
		}
		view := pgx.Identifier{home, t}.Sanitize()
		table := pgx.Identifier{schema, t}.Sanitize()
		if owner != nil && exists {
			// A view that already reads this table, with its columns,
			// is left alone: replacing it takes an ACCESS EXCLUSIVE lock,
			// which waits for every query on the view to end (an
			// analyst's report) and makes new ones queue behind it, on
			// every Migrate, that is every start of a process.
			var current bool
			if err := tx.QueryRow(ctx, viewIsCurrent, view, table).Scan(&current); err != nil {
				return fmt.Errorf("projections: check view %s of %q: %w", t, p.Name, err)
			}
			if current {
				continue
			}
		}
		def := viewDefinition(table)
		// CREATE OR REPLACE keeps the view's identity, so a reader that
		// waits on it follows it; when the columns changed it cannot be
		// replaced and is dropped and created again, in the same tx,
		// with the settings made on it by hand (grants, owner, comments).
		err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, `CREATE OR REPLACE VIEW `+view+def)
			return err
		})
		if err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				return fmt.Errorf("projections: create view %s of %q: %w", t, p.Name, err)
			}
			kept, err := captureView(ctx, tx, view)
			if err != nil {
				return fmt.Errorf("projections: replace view %s of %q: %w", t, p.Name, err)
			}
			if _, err := tx.Exec(ctx, `DROP VIEW IF EXISTS `+view); err != nil {
				return fmt.Errorf("projections: replace view %s of %q: %w", t, p.Name, err)
			}
			if _, err := tx.Exec(ctx, `CREATE VIEW `+view+def); err != nil {
				return fmt.Errorf("projections: replace view %s of %q: %w", t, p.Name, err)
			}
			if kept != nil {
				if err := r.restoreView(ctx, tx, kept); err != nil {
					return fmt.Errorf("projections: replace view %s of %q: %w", t, p.Name, err)
				}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projection_views (view_name, projection) VALUES ($1, $2) ON CONFLICT DO NOTHING`, t, p.Name); err != nil {
			return fmt.Errorf("projections: record view %s of %q: %w", t, p.Name, err)
		}
	}
	if r.cfg.OnPublish != nil {
		pub := Publication{Projection: p.Name, Generation: gen, Schema: schema, Home: home, Tables: tables}
		if err := catch(func() error { return r.cfg.OnPublish(r.withLogger(ctx), tx, pub) }); err != nil {
			return fmt.Errorf("projections: OnPublish for %q generation %d: %w", p.Name, gen, err)
		}
	}
	return nil
}

// viewIsCurrent is true when the view $1 is what publishViews would make
// of the table $2: a security_invoker view whose rule reads that table and
// whose columns are the table's (names, types, order). SELECT * is
// expanded when a view is made, so a column a migration added since
// shows as a difference.
const viewIsCurrent = `SELECT
	coalesce((SELECT 'security_invoker=true' = ANY(reloptions) FROM pg_class WHERE oid = $1::regclass), false)
	AND EXISTS (SELECT 1 FROM pg_rewrite rw JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
		WHERE rw.ev_class = $1::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $2::regclass)
	AND NOT EXISTS (SELECT 1 FROM pg_rewrite rw JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
		WHERE rw.ev_class = $1::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid NOT IN ($1::regclass, $2::regclass))
	AND (SELECT array_agg(ARRAY[attname::text, format_type(atttypid, atttypmod)] ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped)
	  = (SELECT array_agg(ARRAY[attname::text, format_type(atttypid, atttypmod)] ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = $2::regclass AND attnum > 0 AND NOT attisdropped)`

// dropRetired drops the schemas of retired generations, best effort: a
// schema still in use by a long query is left for the next call.
func (r *Runtime) dropRetired(ctx context.Context, home, name string) {
	rows, err := r.pool.Query(ctx, `SELECT generation, schema_name FROM projection_generations WHERE projection = $1 AND state = 'retired'`, name)
	if err != nil {
		r.log.Warn("projections: list retired generations", "projection", name, "err", err)
		return
	}
	type gs struct {
		Gen    int
		Schema string
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[gs])
	if err != nil {
		r.log.Warn("projections: list retired generations", "projection", name, "err", err)
		return
	}
	for _, g := range list {
		err := pgx.BeginTxFunc(ctx, r.pool, readCommitted, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{g.Schema}.Sanitize()+` CASCADE`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM projection_deferred_indexes WHERE projection = $1 AND generation = $2`, name, g.Gen); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM projection_generations WHERE projection = $1 AND generation = $2 AND state = 'retired'`, name, g.Gen)
			return err
		})
		if err != nil {
			r.log.Warn("projections: drop a retired generation; will try again later", "projection", name, "generation", g.Gen, "schema", g.Schema, "err", err)
		}
	}
}

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// From is where the new generation starts: events at or before it are
	// not applied. Start (the default) rebuilds from the whole log. A From
	// past the head of the log is refused, since the events appended up
	// to it would never be applied. A resumed rebuild goes on from its
	// own checkpoint.
	From eventstore.Position
	// Restart drops a rebuild left unfinished by an earlier call instead
	// of resuming it.
	Restart bool
	// KeepOld keeps the old generation's schema after the swap (it is
	// retired, and dropped by the next Migrate).
	KeepOld bool
	// MaxEventsPerSecond limits the rebuild's pace (0: unlimited), to
	// spare the database the live projections use: at most that many
	// events per second, within a page too (applied in slices of 0.1 s
	// worth of events, at least one, each its own transaction).
	MaxEventsPerSecond float64
	// Progress, if set, is called after every batch.
	Progress func(RebuildProgress)
}

// RebuildProgress reports how far a rebuild has come.
type RebuildProgress struct {
	Projection string
	Generation int
	Position   eventstore.Position
	Head       eventstore.Position // the log's head when the rebuild started
	Events     int64               // events read by this call
}

// RebuildResult is what a finished rebuild swapped in.
type RebuildResult struct {
	Projection string
	Generation int                 // the generation readers now see
	Previous   int                 // the generation it replaced
	Position   eventstore.Position // where the new generation stood at the swap
	Events     int64               // events read by this call
	Parked     int64               // events the new generation parked
	Resumed    bool                // an unfinished rebuild was continued
}

// Rebuild replays the log into a new generation of the projection's
// tables while readers keep querying the current one, then, once it has
// reached the head of the log, swaps the readers' views to it in one
// transaction (blue/green). The live runner, in this process or another,
// notices the swap through its checkpoint and continues from the new
// generation's position. An interrupted rebuild resumes where it stopped
// when called again (unless opts.Restart). Only one rebuild of a
// projection runs at a time: ErrBusy otherwise.
func (r *Runtime) Rebuild(ctx context.Context, name string, opts RebuildOptions) (RebuildResult, error) {
	res := RebuildResult{Projection: name}
	p, err := r.lookup(name)
	if err != nil {
		return res, err
	}
	// Like Run: a database not migrated since the upgrade lacks what the
	// rebuild relies on (projection_deferred_indexes, for one).
	if err := r.checkMigrated(ctx, []*registered{p}); err != nil {
		return res, err
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return res, err
	}
	conn, err := r.lockBuild(ctx, home, name)
	if err != nil {
		return res, err
	}
	defer func() { r.closeConn(conn) }() // the last session's

	var schema string
	err = pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
		s, err := loadState(ctx, tx, name, "FOR UPDATE")
		if err != nil {
			return err
		}
		if s.building != nil && opts.Restart {
			if err := r.dropGeneration(ctx, tx, name, *s.building); err != nil {
				return err
			}
			s.building = nil
		}
		if s.building != nil {
			res.Generation, res.Resumed = *s.building, true
			if schema, err = generationSchema(ctx, tx, name, res.Generation); err != nil {
				return err
			}
			_, err := r.migrateBuilding(ctx, tx, home, p, res.Generation, schema, p.DeferIndexes)
			return err
		}
		// A new generation starting past the head would, once swapped in,
		// have its runner go on from there and never apply the events
		// appended up to From: refused, as Reprocess refuses to skip.
		head, err := r.store.Head(ctx)
		if err != nil {
			return fmt.Errorf("projections: read the head of the log: %w", err)
		}
		if opts.From.Compare(head) > 0 {
			return fmt.Errorf("projections: rebuild %q from %s: the log ends at %s; a rebuild cannot skip events not yet appended", name, opts.From, head)
		}
		res.Generation, schema, err = r.createGeneration(ctx, tx, home, p, "building", opts.From)
		if err != nil {
			return err
		}
		if p.DeferIndexes {
			if _, err := deferIndexes(ctx, tx, name, res.Generation, schema); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE projection_state SET building_generation = $2, updated_at = now() WHERE projection = $1`, name, res.Generation)
		return err
	})
	if err != nil {
		return res, err
	}
	r.log.Info("projection rebuild started", "projection", name, "generation", res.Generation, "schema", schema, "resumed", res.Resumed)
	if err := setSearchPath(ctx, conn, schema, home); err != nil {
		return res, err
	}
	from, err := loadCheckpoint(ctx, conn, name, res.Generation)
	if err != nil {
		return res, err
	}
	head, err := r.store.Head(ctx)
	if err != nil {
		return res, fmt.Errorf("projections: read the head of the log: %w", err)
	}
	st := &stats{}
	st.start(res.Generation, from)
	breaks := &sessionBreaks{}
	a := newApplier(r, p, conn, res.Generation, from, st)
	a.building, a.breaks = true, breaks
	progress := func(n int) {
		res.Events += int64(n)
		if opts.Progress != nil {
			opts.Progress(RebuildProgress{Projection: name, Generation: res.Generation, Position: a.pos, Head: head, Events: res.Events})
		}
	}
	// Drain to the head, then swap; if the live generation has meanwhile
	// gone further than the new one, drain the difference and try again,
	// so that readers never see the model go back.
	// A session that breaks while applying events is followed by another
	// with the memory of where, as in Run and CatchUp: an event that
	// breaks it MaxSessionBreaks times in a row is given up instead of
	// ending every call to Rebuild at the same place.
	var prev int
	for again := 0; ; {
		if err := r.drain(ctx, a, a.pos, opts.MaxEventsPerSecond, progress); err != nil {
			if !a.broke || ctx.Err() != nil {
				return res, fmt.Errorf("projections: rebuild %q (resume by calling Rebuild again): %w", name, err)
			}
			r.closeConn(conn)
			if !r.pauseAfterBreak(ctx, name, again, err) {
				return res, ctx.Err()
			}
			again++
			c, from, err := r.reopenBuild(ctx, home, name, res.Generation, schema, again)
			if err != nil {
				return res, fmt.Errorf("projections: rebuild %q (resume by calling Rebuild again): %w", name, err)
			}
			conn = c
			a = newApplier(r, p, conn, res.Generation, from, st)
			a.building, a.breaks = true, breaks
			continue
		}
		// The indexes dropped for the load are made before the swap, each
		// over the rows loaded; events appended meanwhile are left to the
		// live runner, after the swap.
		if _, err := r.buildDeferred(ctx, conn, home, name, res.Generation, schema); err != nil {
			return res, fmt.Errorf("projections: rebuild %q (resume by calling Rebuild again): %w", name, err)
		}
		prev, err = r.swap(ctx, conn, home, p, res.Generation, schema, a.pos)
		if !errors.Is(err, errBehind) && !errors.Is(err, errDeferredLeft) {
			break
		}
	}
	if err != nil {
		return res, err
	}
	res.Position = a.pos
	res.Parked = st.parked.Load()
	res.Previous = prev
	r.log.Info("projection rebuilt and swapped", "projection", name, "generation", res.Generation, "previous", prev, "position", res.Position.String(), "events", res.Events)
	if !opts.KeepOld {
		r.dropRetired(ctx, home, name)
	}
	return res, nil
}

// lockBuild connects and takes the projection's build lock; ErrBusy when
// another rebuild of it runs.
func (r *Runtime) lockBuild(ctx context.Context, home, name string) (*pgx.Conn, error) {
	conn, err := r.connect(ctx, "rebuild:"+name)
	if err != nil {
		return nil, err
	}
	got, err := tryLock(ctx, conn, r.buildLockKey(home, name))
	if err == nil && !got {
		err = fmt.Errorf("%w: a rebuild of %q is already running", ErrBusy, name)
	}
	if err != nil {
		r.closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// reopenBuild starts another session of the rebuild of generation gen
// after one broke: it takes the build lock again, checks that the
// generation is still the one being built (CancelRebuild may have dropped
// it meanwhile) and returns its checkpoint.
func (r *Runtime) reopenBuild(ctx context.Context, home, name string, gen int, schema string, again int) (*pgx.Conn, eventstore.Position, error) {
	conn, err := relock(ctx, r, again, func() (*pgx.Conn, error) { return r.lockBuild(ctx, home, name) })
	if err != nil {
		return nil, eventstore.Position{}, err
	}
	err = pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
		s, err := loadState(ctx, tx, name, "")
		if err != nil {
			return err
		}
		if s.building == nil || *s.building != gen {
			return fmt.Errorf("generation %d of %q is no longer being built", gen, name)
		}
		return nil
	})
	if err == nil {
		err = setSearchPath(ctx, conn, schema, home)
	}
	var from eventstore.Position
	if err == nil {
		from, err = loadCheckpoint(ctx, conn, name, gen)
	}
	if err != nil {
		r.closeConn(conn)
		return nil, eventstore.Position{}, err
	}
	return conn, from, nil
}

// swap makes the built generation the active one in one transaction: the
// views, the state, and the removal of the old generation's checkpoint
// (which fences its runner) and dead letters.
func (r *Runtime) swap(ctx context.Context, conn *pgx.Conn, home string, p *registered, gen int, schema string, pos eventstore.Position) (int, error) {
	prev := 0
	// The runner's search_path puts the generation first; the swap works
	// on the runtime's schema.
	err := pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true), set_config('synchronous_commit', 'on', true)`, pgx.Identifier{home}.Sanitize()); err != nil {
			return err
		}
		s, err := loadState(ctx, tx, p.Name, "FOR UPDATE")
		if err != nil {
			return err
		}
		if s.building == nil || *s.building != gen {
			return fmt.Errorf("projections: swap %q: generation %d is no longer the one being built", p.Name, gen)
		}
		// Never swapped in without an index its migrations make: one
		// still deferred (a Migrate deferred it again after buildDeferred
		// read the list) is made first. The state row, locked, holds off
		// a Migrate until the swap commits.
		var left bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projection_deferred_indexes WHERE projection = $1 AND generation = $2)`, p.Name, gen).Scan(&left); err != nil {
			return err
		}
		if left {
			return errDeferredLeft
		}
		if s.active != nil {
			// Locking the live checkpoint holds its runner still until
			// the swap commits; its next transaction then finds the row
			// gone and restarts on the new generation.
			live, err := lockCheckpoint(ctx, tx, p.Name, *s.active)
			if err != nil {
				return err
			}
			if live.Compare(pos) > 0 {
				return errBehind
			}
		}
		if err := r.publishViews(ctx, tx, home, p, gen, schema); err != nil {
			return err
		}
		if s.active != nil {
			prev = *s.active
			if _, err := tx.Exec(ctx, `UPDATE projection_generations SET state = 'retired', retired_at = now() WHERE projection = $1 AND generation = $2`, p.Name, prev); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE projection = $1 AND generation = $2`, p.Name, prev); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE projection = $1 AND generation = $2`, p.Name, prev); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_generations SET state = 'active', activated_at = now() WHERE projection = $1 AND generation = $2`, p.Name, gen); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE projection_state SET active_generation = $2, building_generation = NULL, stopped = false, last_error = NULL, updated_at = now() WHERE projection = $1`, p.Name, gen)
		return err
	})
	if errors.Is(err, errBehind) || errors.Is(err, errDeferredLeft) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("projections: swap %q to generation %d: %w", p.Name, gen, err)
	}
	return prev, nil
}

// errBehind: the live generation is ahead of the one to swap in.
var errBehind = errors.New("projections: the new generation is behind the live one")

// errDeferredLeft: the generation to swap in has deferred indexes yet to
// make.
var errDeferredLeft = errors.New("projections: the new generation has deferred indexes yet to make")

func lockCheckpoint(ctx context.Context, tx pgx.Tx, name string, gen int) (eventstore.Position, error) {
	var c, p int64
	err := tx.QueryRow(ctx, `SELECT commit_position, prepare_position FROM projection_checkpoints WHERE projection = $1 AND generation = $2 FOR UPDATE`, name, gen).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("projections: lock the checkpoint of %q: %w", name, err)
	}
	return fromArgs(c, p), nil
}

// dropGeneration removes a generation that is being built, inside tx.
func (r *Runtime) dropGeneration(ctx context.Context, tx pgx.Tx, name string, gen int) error {
	schema, err := generationSchema(ctx, tx, name, gen)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("projections: drop generation %d of %q: %w", gen, name, err)
	}
	for _, q := range []string{
		`DELETE FROM projection_checkpoints WHERE projection = $1 AND generation = $2`,
		`DELETE FROM projection_dead_letters WHERE projection = $1 AND generation = $2`,
		`DELETE FROM projection_deferred_indexes WHERE projection = $1 AND generation = $2`,
		`DELETE FROM projection_generations WHERE projection = $1 AND generation = $2`,
		`UPDATE projection_state SET building_generation = NULL, updated_at = now() WHERE projection = $1 AND building_generation = $2`,
	} {
		if _, err := tx.Exec(ctx, q, name, gen); err != nil {
			return fmt.Errorf("projections: drop generation %d of %q: %w", gen, name, err)
		}
	}
	return nil
}

// CancelRebuild drops an unfinished rebuild of the projection and returns
// the generation it dropped, or 0 when there was none to drop. ErrBusy if
// the rebuild is running.
func (r *Runtime) CancelRebuild(ctx context.Context, name string) (dropped int, err error) {
	if _, err := r.lookup(name); err != nil {
		return 0, err
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return 0, err
	}
	conn, err := r.connect(ctx, "rebuild:"+name)
	if err != nil {
		return 0, err
	}
	defer r.closeConn(conn)
	got, err := tryLock(ctx, conn, r.buildLockKey(home, name))
	if err != nil {
		return 0, err
	}
	if !got {
		return 0, fmt.Errorf("%w: a rebuild of %q is running", ErrBusy, name)
	}
	err = pgx.BeginTxFunc(ctx, conn, readCommitted, func(tx pgx.Tx) error {
		s, err := loadState(ctx, tx, name, "FOR UPDATE")
		if err != nil || s.building == nil {
			return err
		}
		if err := r.dropGeneration(ctx, tx, name, *s.building); err != nil {
			return err
		}
		dropped = *s.building
		return nil
	})
	if err != nil {
		return 0, err
	}
	return dropped, nil
}

// Reprocess applies the log again from after the given position to the
// projection's live tables: the projection's Rewind removes the effects
// of later events and the checkpoint moves back, in one transaction; the
// runner (here or in another process) then notices and re-applies them.
// Parked events after the position are dropped from the dead-letter table
// since they will be tried again. A projection without Rewind returns
// ErrNotRewindable: rebuild it instead. Moving forward is refused.
func (r *Runtime) Reprocess(ctx context.Context, name string, after eventstore.Position) error {
	p, err := r.lookup(name)
	if err != nil {
		return err
	}
	if p.Rewind == nil {
		return fmt.Errorf("%w: %q", ErrNotRewindable, name)
	}
	c, pp, err := posArgs(after)
	if err != nil {
		return err
	}
	home, err := r.homeSchema(ctx)
	if err != nil {
		return err
	}
	return pgx.BeginTxFunc(ctx, r.pool, readCommitted, func(tx pgx.Tx) error {
		s, err := loadState(ctx, tx, name, "FOR UPDATE")
		if err != nil {
			return err
		}
		if s.active == nil {
			return fmt.Errorf("%w: %q", ErrNotMigrated, name)
		}
		gen := *s.active
		var cc, cp int64
		if err := tx.QueryRow(ctx, `SELECT commit_position, prepare_position FROM projection_checkpoints WHERE projection = $1 AND generation = $2 FOR UPDATE`, name, gen).Scan(&cc, &cp); err != nil {
			return fmt.Errorf("projections: reprocess %q: %w", name, err)
		}
		if cur := fromArgs(cc, cp); after.Compare(cur) > 0 {
			return fmt.Errorf("projections: reprocess %q from %s: the projection is only at %s; reprocessing cannot skip events", name, after, cur)
		}
		schema, err := generationSchema(ctx, tx, name, gen)
		if err != nil {
			return err
		}
		path := pgx.Identifier{schema}.Sanitize() + ", " + pgx.Identifier{home}.Sanitize()
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, path); err != nil {
			return err
		}
		if err := catch(func() error { return p.Rewind(r.withLogger(ctx), tx, after) }); err != nil {
			return fmt.Errorf("projections: rewind %q to %s: %w", name, after, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET commit_position = $3, prepare_position = $4, updated_at = now() WHERE projection = $1 AND generation = $2`, name, gen, c, pp); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE projection = $1 AND generation = $2
			AND (commit_position, prepare_position) > ($3, $4)`, name, gen, c, pp)
		return err
	})
}
