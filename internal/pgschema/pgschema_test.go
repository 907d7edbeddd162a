package pgschema_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/pgschema"
	"github.com/brainhq/eventstream/internal/pgtest"
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
