package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// refusal returns the *migrate.RefusedError in err, which the test wraps
// once more as a caller would, failing the test if there is none or if it
// does not carry reason and migration.
func refusal(t *testing.T, err error, reason migrate.Reason, migration string) *migrate.RefusedError {
	t.Helper()
	var re *migrate.RefusedError
	if !errors.As(fmt.Errorf("caller: %w", err), &re) {
		t.Fatalf("error %v (%T): want a *migrate.RefusedError", err, err)
	}
	if re.Reason != reason || re.Migration != migration || re.Error() != err.Error() {
		t.Errorf("RefusedError{Reason: %q, Migration: %q, Message: %q}: want reason %q, migration %q, and the message %q", re.Reason, re.Migration, re.Message, reason, migration, err.Error())
	}
	return re
}

// TestRefusalsAreTyped: every refusal of a migration or of the schema
// it would be applied to is a *migrate.RefusedError, found by errors.As
// through a caller's wrapping, naming the component, the migration
// (NNN_name, or none for the target) and the reason; its message is the
// one it had as a plain error. A database error is not one.
func TestRefusalsAreTyped(t *testing.T) {
	ctx := context.Background()
	t.Run("no_schema", func(t *testing.T) {
		t.Parallel()
		c := connect(t, withParam(t, pgtest.BaseURL(), "search_path", "es_test_does_not_exist"))
		_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`))
		re := refusal(t, err, migrate.ReasonNoSchema, "")
		if re.Component != component || !strings.Contains(re.Message, "search_path") {
			t.Errorf("refusal %+v: want component %q and a message naming the search_path", re, component)
		}
	})
	t.Run("search_path_changed", func(t *testing.T) {
		t.Parallel()
		u, _ := pgtest.Schema(t)
		_, other := pgtest.Schema(t)
		c := connect(t, u)
		_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `SET LOCAL search_path TO `+other))
		refusal(t, err, migrate.ReasonSearchPathChanged, "002_m2")
	})
	t.Run("schema_changed", func(t *testing.T) {
		t.Parallel()
		u, schema := pgtest.Schema(t)
		ahead := schema + "_ahead"
		c := connect(t, withParam(t, u, "search_path", ahead+","+schema))
		_, err := migrate.Apply(ctx, c, component, migrations(`CREATE SCHEMA `+pgx.Identifier{ahead}.Sanitize()))
		refusal(t, err, migrate.ReasonSchemaChanged, "001_m1")
	})
	t.Run("ends_transaction", func(t *testing.T) {
		t.Parallel()
		u, _ := pgtest.Schema(t)
		c := connect(t, u)
		_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int); COMMIT`))
		refusal(t, err, migrate.ReasonEndsTransaction, "001_m1")
	})
	t.Run("recorded", func(t *testing.T) {
		t.Parallel()
		u, _ := pgtest.Schema(t)
		c := connect(t, u)
		if _, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)); err != nil {
			t.Fatal(err)
		}
		_, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`))
		refusal(t, err, migrate.ReasonNewerDatabase, "")
		_, err = migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (y int)`))
		refusal(t, err, migrate.ReasonEdited, "002_m2")
		ms := migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`)
		ms[1].Name = "renamed"
		_, err = migrate.Apply(ctx, c, component, ms)
		refusal(t, err, migrate.ReasonRenamed, "002_renamed")
		ms[1].SQL = `CREATE TABLE other (x int)`
		_, err = migrate.Apply(ctx, c, component, ms)
		refusal(t, err, migrate.ReasonNumberReused, "002_renamed")
		if _, err := c.Exec(ctx, `DELETE FROM eventstream_migrations WHERE version = 1`); err != nil {
			t.Fatal(err)
		}
		_, err = migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, `CREATE TABLE b (x int)`))
		refusal(t, err, migrate.ReasonMissingRecord, "001_m1")
	})
	t.Run("load", func(t *testing.T) {
		t.Parallel()
		_, err := migrate.Load(fstest.MapFS{"1_a.sql": file(`SELECT 1`)})
		refusal(t, err, migrate.ReasonMisnamed, "")
		_, err = migrate.Load(fstest.MapFS{"2_b.up.sql": file(`SELECT 1`)})
		refusal(t, err, migrate.ReasonNumbering, "002_b")
	})
	t.Run("database_error", func(t *testing.T) {
		t.Parallel()
		u, _ := pgtest.Schema(t)
		c := connect(t, u)
		_, err := migrate.Apply(ctx, c, component, migrations(`SELECT 1/0`))
		var re *migrate.RefusedError
		if err == nil || errors.As(err, &re) {
			t.Errorf("a migration that fails in the database: %v; want its error, not a refusal", err)
		}
	})
}

// TestTemporarySchemaIsRefused: with pg_temp first in the search_path,
// current_schema() creates the session's temporary schema and returns it,
// so the migrations and their records would land there and vanish when
// the session ends, to be applied again by the next. Apply refuses it, and
// nothing is left in the schema named after pg_temp either.
func TestTemporarySchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	u, schema := pgtest.Schema(t)
	c := connect(t, withParam(t, u, "search_path", "pg_temp,"+schema))
	ran, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`))
	re := refusal(t, err, migrate.ReasonTemporarySchema, "")
	if len(ran) != 0 || !strings.Contains(re.Message, "pg_temp") {
		t.Errorf("ran %d; message %q: want nothing run and a message naming pg_temp", len(ran), re.Message)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname IN ('a', 'eventstream_migrations') AND relnamespace IN (pg_my_temp_schema(), $1::regnamespace)`, schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d tables left by the refused run (%v), want 0", n, err)
	}
}

// TestCopyFromStdinIsRefused: a migration with COPY … FROM STDIN (as
// pg_dump writes data) would wait for rows that Apply does not send, until
// its context ended. Apply refuses it before running anything, however it
// is spelled; the short context keeps a regression from hanging the suite.
func TestCopyFromStdinIsRefused(t *testing.T) {
	for name, sql := range map[string]string{
		"plain":    "CREATE TABLE b (x int); COPY b FROM STDIN;",
		"columns":  "CREATE TABLE b (x int, y text);\ncopy b (x, y) from stdin with (format csv)",
		"comments": "CREATE TABLE b (x int); /* data */ COPY -- next\n b FROM\n\tStdIn",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			u, schema := pgtest.Schema(t)
			c := connect(t, u)
			ran, err := migrate.Apply(ctx, c, component, migrations(`CREATE TABLE a (x int)`, sql))
			refusal(t, err, migrate.ReasonCopyFromStdin, "002_m2")
			if ctx.Err() != nil {
				t.Fatalf("Apply waited for the context to end: %v", err)
			}
			if len(ran) != 0 || tableExists(t, c, schema+".a") || tableExists(t, c, schema+".eventstream_migrations") {
				t.Errorf("ran %d; the refused run left 001's table or record", len(ran))
			}
		})
	}
}

// TestCopyNotFromStdinIsApplied: the refusal of COPY … FROM STDIN refuses
// no other statement that mentions it: in a comment, a string, a quoted
// name, a function body, or a COPY of a query to a file name.
func TestCopyNotFromStdinIsApplied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, _ := pgtest.Schema(t)
	c := connect(t, u)
	ms := migrations(`CREATE TABLE "copy" ("from" text, stdin text); -- COPY x FROM STDIN
		/* COPY x FROM STDIN; /* nested */ COPY y FROM STDIN */
		INSERT INTO "copy" VALUES ('COPY x FROM STDIN', E'it\'s; COPY y FROM STDIN');
		CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT 'COPY x FROM STDIN; ' $body$;
		COMMENT ON TABLE "copy" IS $$COPY x FROM stdin$$`)
	ran, err := migrate.Apply(ctx, c, component, ms)
	if err != nil || len(ran) != 1 {
		t.Fatalf("Apply: ran %d, %v; want it applied", len(ran), err)
	}
}
