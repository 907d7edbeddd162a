package pgschema_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/internal/pgschema"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/schemas"
)

// Drop takes the schema and its <schema>__* siblings, with what is in
// them, and leaves schemas that only look alike.
func TestDropTakesTheSiblingsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, base := pgtest.Schema(t) // its own cleanup finds nothing left
	conn, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) }) // after the drops below
	home := base + "_home"
	siblings := []string{home, home + "__audit_g1", home + "__audit_g2"}
	others := []string{home + "x", home + "_other", base + "__unrelated"}
	for _, s := range append(append([]string(nil), siblings...), others...) {
		id := pgx.Identifier{s}.Sanitize()
		if _, err := conn.Exec(ctx, `CREATE SCHEMA `+id+`; CREATE TABLE `+id+`.t (n int)`); err != nil {
			t.Fatal(err)
		}
	}
	// pgtest drops base and base__* (base__unrelated among them); the
	// look-alikes of home need a cleanup of their own.
	t.Cleanup(func() {
		for _, s := range others {
			_, _ = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`)
		}
	})
	// A view in home on a generation's table, as projections make them:
	// CASCADE takes it whichever of the two goes first.
	if _, err := conn.Exec(ctx, `CREATE VIEW `+pgx.Identifier{home, "v"}.Sanitize()+` AS SELECT * FROM `+pgx.Identifier{home + "__audit_g2", "t"}.Sanitize()); err != nil {
		t.Fatal(err)
	}

	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatalf("dropping again: %v", err)
	}
	exists := func(s string) bool {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, s).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, s := range siblings {
		if exists(s) {
			t.Errorf("schema %s left behind", s)
		}
	}
	for _, s := range others {
		if !exists(s) {
			t.Errorf("schema %s dropped, but it is not a sibling of %s", s, home)
		}
	}
}

// longRuntime creates schema home and migrates a projections runtime at
// home in it with one projection, "drops", whose generations 1 (retired,
// kept) and 2 (active) it returns as recorded by the runtime. The pool is
// closed when the test ends; the schemas are the caller's to drop.
func longRuntime(t *testing.T, conn *pgx.Conn, home string) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{home}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{home}.Sanitize()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	store, err := memory.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	p := projections.Projection{
		Name:       "drops",
		AllTypes:   true,
		Migrations: fstest.MapFS{"001_rows.up.sql": {Data: []byte(`CREATE TABLE rows (n int);`)}},
		Handler: projections.HandlerFunc(func(context.Context, pgx.Tx, []eventstore.Event) error {
			return nil
		}),
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := projections.New(pool, store, reg, projections.Config{Logger: logger}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Rebuild(ctx, p.Name, projections.RebuildOptions{KeepOld: true}); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT schema_name FROM `+pgx.Identifier{home, "projection_generations"}.Sanitize()+` ORDER BY generation`)
	if err != nil {
		t.Fatal(err)
	}
	gens, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 2 {
		t.Fatalf("%s records generations %v, want 2", home, gens)
	}
	for _, g := range gens {
		if strings.HasPrefix(g, home+"__") {
			t.Fatalf("generation schema %s of %s is not shortened: make the name longer", g, home)
		}
	}
	return gens
}

func schemaExists(t *testing.T, conn *pgx.Conn, s string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, s).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// longHomes returns, for a test's own base schema, a home long enough
// that projections shorten its generations' names, and a twin of the same
// length that differs from it in the last byte only, so that their
// shortened generations keep the same prefix.
func longHomes(base string) (home, twin string) {
	home = base + "_" + strings.Repeat("h", 57-len(base)) // 58 bytes
	return home, home[:len(home)-1] + "t"
}

// Drop takes the generations a real projections runtime made under hashed
// names, and leaves a look-alike schema and another long schema's hashed
// generations.
func TestDropTakesHashShortenedGenerations(t *testing.T) {
	t.Parallel()
	for _, recorded := range []bool{true, false} {
		t.Run(map[bool]string{true: "recorded", false: "by name"}[recorded], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			base, conn := connect(t)
			home, twin := longHomes(base)
			lookalike := home + "x"
			t.Cleanup(func() {
				for _, s := range []string{home, twin, lookalike} {
					if err := pgschema.Drop(context.Background(), conn, s); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
			})
			if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{lookalike}.Sanitize()); err != nil {
				t.Fatal(err)
			}
			gens := longRuntime(t, conn, home)
			twinGens := longRuntime(t, conn, twin)
			if !recorded {
				// Without the runtime's record, Drop must derive the
				// names as projections does.
				if _, err := conn.Exec(ctx, `DROP TABLE `+pgx.Identifier{home, "projection_generations"}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			}

			if err := pgschema.Drop(ctx, conn, home); err != nil {
				t.Fatal(err)
			}
			if err := pgschema.Drop(ctx, conn, home); err != nil {
				t.Fatalf("dropping again: %v", err)
			}
			var left []string
			rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) OR starts_with(nspname, $2)`,
				append([]string{home}, gens...), home+"__")
			if err != nil {
				t.Fatal(err)
			}
			if left, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("schemas of %s left behind: %v", home, left)
			}
			for _, s := range append([]string{twin, lookalike}, twinGens...) {
				if !schemaExists(t, conn, s) {
					t.Errorf("schema %s dropped, but it does not belong to %s", s, home)
				}
			}

			if err := pgschema.Drop(ctx, conn, twin); err != nil {
				t.Fatal(err)
			}
			for _, s := range append([]string{twin}, twinGens...) {
				if schemaExists(t, conn, s) {
					t.Errorf("schema %s left behind", s)
				}
			}
			if !schemaExists(t, conn, lookalike) {
				t.Errorf("schema %s dropped with %s", lookalike, twin)
			}
		})
	}
}

// A schema the runtime recorded is dropped whatever its name; a home with
// no runtime table, or one already gone, is no error.
func TestDropTakesRecordedGenerations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base, conn := connect(t)
	home := base + "_rec"
	odd := base + "_odd_generation" // not a name projections derives
	t.Cleanup(func() {
		for _, s := range []string{home, odd} {
			_, _ = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`)
		}
	})
	for _, s := range []string{home, odd} {
		if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{s}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	table := pgx.Identifier{home, "projection_generations"}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE TABLE `+table+` (schema_name text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+table+` VALUES ($1), ($2)`, odd, base+"_never_created"); err != nil {
		t.Fatal(err)
	}
	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{home, odd} {
		if schemaExists(t, conn, s) {
			t.Errorf("schema %s left behind", s)
		}
	}
	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatalf("dropping again: %v", err)
	}
}

// A runtime at home in a sibling loses its shortened generations with it.
func TestDropTakesTheGenerationsOfASiblingsRuntime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base, conn := connect(t)
	// Long enough that the sibling's shortened generations keep less of
	// its name than home + "__".
	home := base + "_sib_" + strings.Repeat("s", 40-len(base))
	sibling, _ := longHomes(home + "__")
	t.Cleanup(func() {
		if err := pgschema.Drop(context.Background(), conn, home); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{home}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	gens := longRuntime(t, conn, sibling)
	for _, g := range gens {
		if strings.HasPrefix(g, home+"__") {
			t.Fatalf("generation schema %s of %s starts with %s__: make the names longer", g, sibling, home)
		}
	}
	if _, err := conn.Exec(ctx, `DROP TABLE `+pgx.Identifier{sibling, "projection_generations"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	for _, s := range append([]string{home, sibling}, gens...) {
		if schemaExists(t, conn, s) {
			t.Errorf("schema %s left behind", s)
		}
	}
}

// connect gives a test a base name for its schemas (pgtest.Schema, which
// drops them afterwards) and a direct connection.
func connect(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	_, base := pgtest.Schema(t)
	conn, err := pgx.Connect(context.Background(), pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return base, conn
}

// A home whose 63-byte cut would fall inside a UTF-8 sequence: projections
// backs the cut off to the sequence's start (a split one is invalid UTF-8,
// which PostgreSQL refuses), and Drop still finds the generations by name.
func TestDropTakesShortenedGenerationsOfANonASCIIHome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base, conn := connect(t)
	// The shortened name keeps 63 - len("_<8 hex>__drops_g<N>") = 44 bytes
	// of home; put the second byte of an "é" at offset 44.
	home := base + "_"
	if (44-len(home))%2 == 0 {
		home += "x"
	}
	home += strings.Repeat("é", (58-len(home))/2)
	if utf8.RuneStart(home[44]) || len(home) < 50 {
		t.Fatalf("home %q: the test wants byte 44 inside a UTF-8 sequence", home)
	}
	t.Cleanup(func() {
		if err := pgschema.Drop(context.Background(), conn, home); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	gens := longRuntime(t, conn, home)
	for _, g := range gens {
		if !utf8.ValidString(g) || len(g) > 63 || strings.HasPrefix(g, home+"__") {
			t.Errorf("generation schema %q: want a valid, shortened name of at most 63 bytes", g)
		}
	}
	if _, err := conn.Exec(ctx, `DROP TABLE `+pgx.Identifier{home, "projection_generations"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := pgschema.Drop(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	for _, s := range append([]string{home}, gens...) {
		if schemaExists(t, conn, s) {
			t.Errorf("schema %s left behind", s)
		}
	}
}
