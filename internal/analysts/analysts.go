// Package analysts gives PostgreSQL roles read access to the read models
// of one tenant, for analysts who query the database directly
// ("eventstream tenants grant-analyst TENANT ROLE").
//
// What it promises:
//   - An analyst role reads the read-model views (and their tables) whose
//     rows carry a tenant_id, and sees only its tenant's rows: every such
//     table has row-level security with a policy that compares tenant_id
//     with the role's mapping in eventstream_analysts. The read models'
//     views are security_invoker, so the policy applies through them.
//   - It has no access to the log (events), the aggregate snapshots, the
//     projections' own tables (checkpoints, dead letters, which hold
//     payloads of every tenant), the API tokens or the migrations: Grant
//     revokes any such privilege and refuses a role that would still reach
//     them.
//   - A role that can create objects in the home schema, a generation's
//     schema or another schema of the owner's search_path, or create
//     schemas, is refused: the owner's unqualified SQL could resolve to
//     what it plants.
//   - Superusers, roles with BYPASSRLS, the tables' owner and the role
//     running the command are refused: row-level security cannot hold them.
//     So are REPLICATION roles and members of pg_execute_server_program,
//     pg_read_server_files, pg_write_server_files and pg_read_all_stats
//     (pg_monitor), which read the data around it (the last through
//     other sessions' query texts, where the log's writers send payloads).
//   - A role that is a member of another tenant's analyst role, or has
//     one among its members, is refused: one of them would read both
//     tenants.
//   - A new generation of a read model (a rebuild) is protected and
//     granted in the transaction that publishes it, through OnPublish
//     (projections.Config.OnPublish); without it the analysts lose access
//     to the new generation (they never gain more).
//   - A password, when given, is sent as a SCRAM-SHA-256 verifier computed
//     here, so the clear text never reaches the server or its logs.
//
// Row-level security on a table binds every role but its owner (and
// superusers): once analysts exist, other non-owner roles see no rows of
// the read-model tables unless they are granted through this package.
package analysts

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/projections"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Component names the package's migrations in eventstream_migrations.
const Component = "analysts"

// PolicyName is the row-level security policy on each read-model table.
const PolicyName = "eventstream_analyst_tenant"

// Migrations returns the embedded migrations (the eventstream_analysts
// table).
func Migrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	return migrate.Load(sub)
}

// Migrate creates the analysts table in the pool's current schema (the
// projections' home schema). It is idempotent.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	_, err = migrate.Apply(ctx, pool, Component, ms)
	return err
}

// ErrRefused is wrapped by every refusal of a role or tenant.
var ErrRefused = errors.New("analysts: refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CheckRole refuses a role name that is not a plain lower-case identifier
// (so it reads the same quoted or not) or is reserved.
func CheckRole(role string) error {
	if !roleName.MatchString(role) || strings.HasPrefix(role, "pg_") {
		return refuse("role %q: want 1 to 63 characters of [a-z0-9_], starting with a letter or _, not pg_", role)
	}
	// PostgreSQL reserves these even quoted; "public" in a GRANT is every
	// role.
	if role == "public" || role == "none" {
		return refuse("role %q: a name PostgreSQL reserves", role)
	}
	return nil
}

// CheckTenant refuses a tenant id no event can carry, and "*".
func CheckTenant(tenant string) error {
	switch {
	case tenant == "" || len(tenant) > 255:
		return refuse("tenant: want 1 to 255 bytes")
	case !utf8.ValidString(tenant) || strings.IndexByte(tenant, 0) >= 0:
		return refuse("tenant: not valid UTF-8, or contains NUL")
	case tenant == "*":
		return refuse(`tenant "*" is the operators' (every tenant): an analyst reads one tenant`)
	}
	return nil
}

// Options adjust Grant.
type Options struct {
	// Password, if set, becomes the role's password (as a SCRAM-SHA-256
	// verifier). Printable ASCII, 8 to 1,024 characters.
	Password string
	// NoLogin makes the role NOLOGIN (a group role that login roles are
	// made members of); the default is LOGIN.
	NoLogin bool
}

// Result says what Grant did.
type Result struct {
	Role    string   `json:"role"`
	Tenant  string   `json:"tenant"`
	Created bool     `json:"created"`
	Tables  []string `json:"tables"` // read models the role can now read (home-schema views)
}

// Grant creates or updates role so that it reads tenant's rows of every
// published read model and nothing else, in one transaction. A database
// lost on the way (installing the component, or granting) is an
// *eventstore.UnavailableError: what had not committed was rolled back,
// and running it again once the database is back does the rest.
func Grant(ctx context.Context, pool *pgxpool.Pool, tenant, role string, opts Options) (Result, error) {
	res, err := grant(ctx, pool, tenant, role, opts)
	return res, lost(ctx, err)
}

func grant(ctx context.Context, pool *pgxpool.Pool, tenant, role string, opts Options) (Result, error) {
	res := Result{Role: role, Tenant: tenant}
	if err := CheckRole(role); err != nil {
		return res, err
	}
	if err := CheckTenant(tenant); err != nil {
		return res, err
	}
	var verifier string
	if opts.Password != "" {
		v, err := scramVerifier(opts.Password)
		if err != nil {
			return res, err
		}
		verifier = v
	}
	if err := Migrate(ctx, pool); err != nil {
		return res, fmt.Errorf("analysts: migrate: %w", err)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		home, err := currentSchema(ctx, tx)
		if err != nil {
			return err
		}
		// Serialise with other grants and with publications.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrate.LockKey("analysts", home)); err != nil {
			return err
		}
		var exists, isMe bool
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
			$1 = current_user OR $1 = session_user`, role).Scan(&exists, &isMe)
		if err != nil {
			return fmt.Errorf("analysts: look up role %s: %w", role, err)
		}
		if isMe {
			return refuse("role %s is the role running this command, which owns the read models", role)
		}
		if exists {
			if err := checkUnprivileged(ctx, tx, role); err != nil {
				return err
			}
		}
		login := "LOGIN"
		if opts.NoLogin {
			login = "NOLOGIN"
		}
		ident := pgx.Identifier{role}.Sanitize()
		if exists {
			// CREATEROLE could grant itself membership of the owner.
			if _, err := tx.Exec(ctx, `ALTER ROLE `+ident+` `+login+` NOCREATEROLE NOCREATEDB`); err != nil {
				return fmt.Errorf("analysts: update role %s: %w", role, err)
			}
		} else {
			if _, err := tx.Exec(ctx, `CREATE ROLE `+ident+` `+login+` NOSUPERUSER NOBYPASSRLS NOREPLICATION NOCREATEROLE NOCREATEDB`); err != nil {
				return fmt.Errorf("analysts: create role %s: %w", role, err)
			}
			res.Created = true
		}
		if verifier != "" {
			// The verifier is base64, digits, '$' and ':' only.
			if _, err := tx.Exec(ctx, `ALTER ROLE `+ident+` PASSWORD '`+verifier+`'`); err != nil {
				return fmt.Errorf("analysts: set the password of %s: %w", role, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO eventstream_analysts (role_name, tenant_id) VALUES ($1, $2)
			ON CONFLICT (role_name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, granted_at = now()`, role, tenant); err != nil {
			return fmt.Errorf("analysts: record %s: %w", role, err)
		}
		if err := checkOneTenant(ctx, tx, role, tenant); err != nil {
			return err
		}
		if err := revokeLog(ctx, tx, home, ident); err != nil {
			return err
		}
		for _, q := range []string{
			`GRANT USAGE ON SCHEMA ` + pgx.Identifier{home}.Sanitize() + ` TO ` + ident,
			`GRANT SELECT ON ` + pgx.Identifier{home, "eventstream_analysts"}.Sanitize() + ` TO ` + ident,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("analysts: grant %s: %w", role, err)
			}
		}
		pubs, err := published(ctx, tx, home)
		if err != nil {
			return err
		}
		if err := checkNotOwner(ctx, tx, role, pubs); err != nil {
			return err
		}
		for _, p := range pubs {
			tables, err := protect(ctx, tx, p, []string{role})
			if err != nil {
				return err
			}
			res.Tables = append(res.Tables, tables...)
		}
		if err := checkNoCreate(ctx, tx, home, role, pubs); err != nil {
			return err
		}
		return checkNoLogAccess(ctx, tx, home, role)
	})
	return res, err
}

// checkNoCreate refuses (rolling back) if role can create objects in the
// home schema, a generation's schema or any other schema of the owner's
// search_path (search_path=events,public reaches public too), or create
// schemas: the owner's unqualified SQL (Grant's own queries, the
// runtime's, OnPublish's) would resolve to a function, aggregate or
// operator it planted, or to a schema named like the owner ("$user" comes
// first in the default search_path), and run it with the owner's rights.
func checkNoCreate(ctx context.Context, tx pgx.Tx, home, role string, pubs []projections.Publication) error {
	schemas := []string{home}
	for _, p := range pubs {
		schemas = append(schemas, p.Schema)
	}
	var where *string
	err := tx.QueryRow(ctx, `SELECT CASE
			WHEN has_database_privilege($1, current_database(), 'CREATE') THEN 'database ' || current_database()
			ELSE (SELECT 'schema ' || n.nspname FROM pg_namespace n
				WHERE (n.nspname = ANY($2) OR n.nspname = ANY(current_schemas(false))) AND has_schema_privilege($1, n.oid, 'CREATE')
				ORDER BY n.nspname LIMIT 1)
		END`, role, schemas).Scan(&where)
	if err != nil {
		return fmt.Errorf("analysts: check role %s: %w", role, err)
	}
	if where != nil {
		return refuse("role %s has CREATE on %s (directly, through PUBLIC or a role it is a member of): objects it creates there would run with the owner's rights; revoke that first", role, *where)
	}
	return nil
}

// checkOneTenant refuses (rolling back) if role, granted tenant, is a
// member of an analyst role of another tenant, or has one among its
// members: the policy lets a role read the tenants of every analyst role
// it uses, so one of them would read both tenants.
func checkOneTenant(ctx context.Context, tx pgx.Tx, role, tenant string) error {
	var other, otherTenant *string
	var member bool
	err := tx.QueryRow(ctx, `SELECT a.role_name, a.tenant_id, pg_has_role($1, r.oid, 'USAGE')
		FROM eventstream_analysts a JOIN pg_roles r ON r.rolname = a.role_name
		WHERE a.role_name <> $1 AND a.tenant_id <> $2
			AND (pg_has_role($1, r.oid, 'USAGE') OR pg_has_role(r.oid, $1, 'USAGE'))
		ORDER BY a.role_name LIMIT 1`, role, tenant).Scan(&other, &otherTenant, &member)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("analysts: check role %s: %w", role, err)
	}
	if member {
		return refuse("role %s is a member of %s, the analyst role of tenant %s: it would read both tenants; revoke that membership first", role, *other, *otherTenant)
	}
	return refuse("role %s has %s, the analyst role of tenant %s, among its members: that role would read both tenants; revoke that membership first", role, *other, *otherTenant)
}

// Revoke removes role's mapping and its grants on the read models. The
// role itself is left (drop it with DROP ROLE when nothing else uses it).
// A database lost on the way is an *eventstore.UnavailableError: what had
// not committed was rolled back (one transaction), and running it again
// once the database is back revokes (or, if the connection was lost as
// the commit landed, refuses a role that is no longer an analyst).
func Revoke(ctx context.Context, pool *pgxpool.Pool, role string) error {
	return lost(ctx, revoke(ctx, pool, role))
}

func revoke(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if err := CheckRole(role); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		home, err := currentSchema(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrate.LockKey("analysts", home)); err != nil {
			return err
		}
		var known bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('eventstream_analysts') IS NOT NULL`).Scan(&known); err != nil {
			return err
		}
		if known {
			tag, err := tx.Exec(ctx, `DELETE FROM eventstream_analysts WHERE role_name = $1`, role)
			if err != nil {
				return err
			}
			known = tag.RowsAffected() > 0
		}
		if !known {
			return refuse("role %s is not an analyst", role)
		}
		ident := pgx.Identifier{role}.Sanitize()
		pubs, err := published(ctx, tx, home)
		if err != nil {
			return err
		}
		for _, p := range pubs {
			for _, t := range p.Tables {
				for _, obj := range []pgx.Identifier{{p.Schema, t}, {p.Home, t}} {
					if _, err := tx.Exec(ctx, `REVOKE ALL ON `+obj.Sanitize()+` FROM `+ident); err != nil && !isUndefined(err) {
						return err
					}
				}
			}
		}
		// Every generation's schema, not only the active ones: a retired
		// generation kept after a rebuild (KeepOld) still carries the grants
		// OnPublish gave it.
		schemas, err := generationSchemas(ctx, tx)
		if err != nil {
			return err
		}
		for _, sch := range schemas {
			id := pgx.Identifier{sch}.Sanitize()
			for _, q := range []string{`REVOKE ALL ON ALL TABLES IN SCHEMA ` + id + ` FROM ` + ident, `REVOKE ALL ON SCHEMA ` + id + ` FROM ` + ident} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
		}
		// Grant gave USAGE on the home schema too.
		for _, q := range []string{
			`REVOKE ALL ON ` + pgx.Identifier{home, "eventstream_analysts"}.Sanitize() + ` FROM ` + ident,
			`REVOKE USAGE ON SCHEMA ` + pgx.Identifier{home}.Sanitize() + ` FROM ` + ident,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// Analyst is one analyst role.
type Analyst struct {
	Role   string `json:"role"`
	Tenant string `json:"tenant"`
}

// List returns the analyst roles (none when the table does not exist).
// A database lost on the way is an *eventstore.UnavailableError.
func List(ctx context.Context, pool *pgxpool.Pool) ([]Analyst, error) {
	as, err := list(ctx, pool)
	if err != nil {
		return nil, lost(ctx, err)
	}
	return as, nil
}

func list(ctx context.Context, pool *pgxpool.Pool) ([]Analyst, error) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('eventstream_analysts') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT role_name, tenant_id FROM eventstream_analysts ORDER BY role_name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Analyst, error) {
		var a Analyst
		err := r.Scan(&a.Role, &a.Tenant)
		return a, err
	})
}

// OnPublish protects a newly published generation of a read model and
// grants it to every analyst. Set it as projections.Config.OnPublish (or
// call it from yours). Without the analysts table it does nothing.
func OnPublish(ctx context.Context, tx pgx.Tx, p projections.Publication) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{p.Home, "eventstream_analysts"}.Sanitize()).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrate.LockKey("analysts", p.Home)); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT role_name FROM `+pgx.Identifier{p.Home, "eventstream_analysts"}.Sanitize()+` ORDER BY role_name`)
	if err != nil {
		return err
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	_, err = protect(ctx, tx, p, roles)
	return err
}

// protect enables row-level security on each of p's tables that has a
// tenant_id column, (re)creates the tenant policy, and grants SELECT on
// the table and its view to roles. It returns the protected tables.
func protect(ctx context.Context, tx pgx.Tx, p projections.Publication, roles []string) ([]string, error) {
	var out []string
	mapping := pgx.Identifier{p.Home, "eventstream_analysts"}.Sanitize()
	for _, t := range p.Tables {
		var hasTenant bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 AND column_name = 'tenant_id')`, p.Schema, t).Scan(&hasTenant); err != nil {
			return nil, err
		}
		if !hasTenant {
			continue // not per tenant: analysts get no access
		}
		table := pgx.Identifier{p.Schema, t}.Sanitize()
		// = ANY (ARRAY(...)), not IN (subquery): the array is computed
		// once and the policy becomes an index condition on an index that
		// starts with tenant_id. As a filter, PostgreSQL would run the
		// analyst's LEAKPROOF conditions (=, <, >= ...) first, as the index
		// condition, and EXPLAIN ANALYZE would count the rows of other
		// tenants the policy then removed.
		policy := `CREATE POLICY ` + PolicyName + ` ON ` + table + ` FOR SELECT USING (tenant_id = ANY (ARRAY(SELECT a.tenant_id FROM ` + mapping + ` a WHERE EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = a.role_name AND pg_has_role(current_user, r.oid, 'USAGE')))))`
		sum := sha256.Sum256([]byte(policy))
		tag := "eventstream analysts policy " + hex.EncodeToString(sum[:8])
		// A table already protected by this very policy is left alone:
		// ALTER TABLE and CREATE or DROP POLICY take an ACCESS EXCLUSIVE
		// lock, which waits for every query on the table or its view (an
		// analyst's report) and makes new ones queue behind it, on every
		// publication, that is every start of a process.
		var current bool
		if err := tx.QueryRow(ctx, `SELECT c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy pol
				WHERE pol.polrelid = c.oid AND pol.polname = $2 AND obj_description(pol.oid, 'pg_policy') = $3)
			FROM pg_class c WHERE c.oid = $1::regclass`, table, PolicyName, tag).Scan(&current); err != nil {
			return nil, fmt.Errorf("analysts: protect %s.%s: %w", p.Schema, t, err)
		}
		if !current {
			for _, q := range []string{
				`ALTER TABLE ` + table + ` ENABLE ROW LEVEL SECURITY`,
				`DROP POLICY IF EXISTS ` + PolicyName + ` ON ` + table,
				policy,
				`COMMENT ON POLICY ` + PolicyName + ` ON ` + table + ` IS '` + tag + `'`, // tag: letters, digits and spaces only
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return nil, fmt.Errorf("analysts: protect %s.%s: %w", p.Schema, t, err)
				}
			}
		}
		for _, r := range roles {
			ident := pgx.Identifier{r}.Sanitize()
			for _, q := range []string{
				`GRANT USAGE ON SCHEMA ` + pgx.Identifier{p.Schema}.Sanitize() + ` TO ` + ident,
				`GRANT SELECT ON ` + table + ` TO ` + ident,
				`GRANT SELECT ON ` + pgx.Identifier{p.Home, t}.Sanitize() + ` TO ` + ident,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return nil, fmt.Errorf("analysts: grant %s on %s: %w", r, t, err)
				}
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// published lists the active generation of every projection, as the
// projections runtime records them.
func published(ctx context.Context, tx pgx.Tx, home string) ([]projections.Publication, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('projection_generations') IS NOT NULL AND to_regclass('projection_views') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT g.projection, g.generation, g.schema_name,
			coalesce(array_agg(v.view_name ORDER BY v.view_name) FILTER (WHERE v.view_name IS NOT NULL), '{}')
		FROM projection_generations g LEFT JOIN projection_views v ON v.projection = g.projection
		WHERE g.state = 'active'
		GROUP BY g.projection, g.generation, g.schema_name ORDER BY g.projection`)
	if err != nil {
		return nil, fmt.Errorf("analysts: list read models: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (projections.Publication, error) {
		p := projections.Publication{Home: home}
		err := r.Scan(&p.Projection, &p.Generation, &p.Schema, &p.Tables)
		return p, err
	})
}

// generationSchemas lists the schemas of every recorded generation of
// every projection (building, active or retired) that still exists.
func generationSchemas(ctx context.Context, tx pgx.Tx) ([]string, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('projection_generations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT g.schema_name FROM projection_generations g
		WHERE EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = g.schema_name) ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("analysts: list generations: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// logTables are what an analyst must never read: the log, the aggregate
// snapshots (the log folded: every tenant's state, with no tenant column
// for a policy), the runtime's tables (dead letters hold payloads of every
// tenant), tokens, the audit browser's sessions, migrations.
var logTables = []string{
	"events", "aggregate_snapshots", "eventstream_migrations", "eventstream_api_tokens", "eventstream_ui_sessions",
	"projection_state", "projection_generations", "projection_checkpoints",
	"projection_dead_letters", "projection_views", "processed_events", "projection_deferred_indexes",
}

func revokeLog(ctx context.Context, tx pgx.Tx, home, ident string) error {
	for _, t := range logTables {
		obj := pgx.Identifier{home, t}.Sanitize()
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, obj).Scan(&exists); err != nil {
			return err
		}
		if exists {
			if _, err := tx.Exec(ctx, `REVOKE ALL ON `+obj+` FROM `+ident); err != nil {
				return fmt.Errorf("analysts: revoke %s: %w", t, err)
			}
		}
	}
	return nil
}

// serverRoles are the predefined roles whose members run programs, or
// read and write files, as the server's operating-system user: they read
// the data files (every tenant's rows) or become a superuser, whatever
// row-level security says.
var serverRoles = []string{"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}

// checkUnprivileged refuses a role that row-level security cannot bind:
// a superuser, a BYPASSRLS role, or a member (directly or not) of one, or
// of the role running the command; and a role that reads the data around
// it: REPLICATION (a base backup or logical decoding streams every row),
// a member of pg_read_all_stats (pg_monitor is one), which reads every
// session's query text in pg_stat_activity, where the log's writers send
// payloads as literals, or a member of a serverRoles role.
func checkUnprivileged(ctx context.Context, tx pgx.Tx, role string) error {
	var why *string
	err := tx.QueryRow(ctx, `SELECT CASE
			WHEN r.rolsuper THEN 'is a superuser'
			WHEN r.rolbypassrls THEN 'has BYPASSRLS'
			WHEN r.rolreplication THEN 'has REPLICATION (it can stream every row of the database)'
			WHEN EXISTS (SELECT 1 FROM pg_roles o WHERE (o.rolsuper OR o.rolbypassrls OR o.rolreplication) AND o.oid <> r.oid AND pg_has_role(r.oid, o.oid, 'MEMBER'))
				THEN 'is a member of a superuser, BYPASSRLS or REPLICATION role'
			WHEN pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = current_user), 'MEMBER')
				THEN 'is a member of the role running this command'
			WHEN pg_has_role(r.oid, 'pg_read_all_stats', 'MEMBER')
				THEN 'is a member of pg_read_all_stats (directly or through pg_monitor: it reads the text of every session''s query in pg_stat_activity, which holds the event payloads the log''s writers send)'
			ELSE (SELECT 'is a member of ' || o.rolname || ' (it runs programs or reads and writes files as the server)'
				FROM pg_roles o WHERE o.rolname = ANY($2) AND pg_has_role(r.oid, o.oid, 'MEMBER') ORDER BY o.rolname LIMIT 1)
		END
		FROM pg_roles r WHERE r.rolname = $1`, role, serverRoles).Scan(&why)
	if err != nil {
		return fmt.Errorf("analysts: check role %s: %w", role, err)
	}
	if why != nil {
		return refuse("role %s %s: row-level security cannot restrict it", role, *why)
	}
	return nil
}

// checkNotOwner refuses a role that owns, or is a member of the owner of,
// a read-model table: owners are not bound by row-level security.
func checkNotOwner(ctx context.Context, tx pgx.Tx, role string, pubs []projections.Publication) error {
	schemas := make([]string, len(pubs))
	for i, p := range pubs {
		schemas[i] = p.Schema
	}
	var table *string
	err := tx.QueryRow(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($2) AND c.relkind IN ('r', 'p') AND pg_has_role($1, c.relowner, 'MEMBER') LIMIT 1`, role, schemas).Scan(&table)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("analysts: check role %s: %w", role, err)
	}
	return refuse("role %s owns (or is a member of the owner of) %s: row-level security cannot restrict it", role, *table)
}

// checkNoLogAccess refuses (rolling back) if role can still read a log
// table, through PUBLIC or a role it belongs to.
func checkNoLogAccess(ctx context.Context, tx pgx.Tx, home, role string) error {
	for _, t := range logTables {
		obj := pgx.Identifier{home, t}.Sanitize()
		var reach *bool
		if err := tx.QueryRow(ctx, `SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL
			ELSE has_table_privilege($2, $1, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE') END`, obj, role).Scan(&reach); err != nil {
			return err
		}
		if reach != nil && *reach {
			return refuse("role %s can still reach %s (through PUBLIC or a role it is a member of); remove that grant first", role, t)
		}
	}
	return nil
}

func currentSchema(ctx context.Context, tx pgx.Tx) (string, error) {
	var s string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&s); err != nil {
		return "", fmt.Errorf("analysts: current schema: %w", err)
	}
	return s, nil
}

func isUndefined(err error) bool {
	return err != nil && strings.Contains(err.Error(), "SQLSTATE 42P01")
}

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password (RFC 5802/7677; 4,096 iterations, PostgreSQL's default).
func scramVerifier(password string) (string, error) {
	if len(password) < 8 || len(password) > 1024 {
		return "", refuse("password: want 8 to 1,024 characters")
	}
	for i := 0; i < len(password); i++ {
		if password[i] < 0x21 || password[i] > 0x7e {
			// PostgreSQL normalises non-ASCII passwords (SASLprep), which
			// this package does not reproduce.
			return "", refuse("password: want printable ASCII without spaces")
		}
	}
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}
