// Package pgschema drops a PostgreSQL schema together with the schemas
// that belong to it: its siblings named <schema>__*, and the schemas in
// which a projections runtime at home in <schema> keeps the generations
// of its read models. A generation's schema is <schema>__<projection>_g<N>,
// or, when that would pass PostgreSQL's 63-byte limit, a shortened name
// with a hash of <schema> that no longer starts with <schema>__; Drop
// finds both forms, and every generation the runtime recorded in
// <schema>.projection_generations. Tests (internal/pgtest) and the bench
// both create a schema of their own and must leave nothing behind.
package pgschema

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Drop drops (CASCADE), longest name first, schema and the schemas that
// belong to it:
//
//   - every schema whose name starts with schema + "__";
//   - every schema that package projections names for a generation of a
//     runtime at home in schema, including the hash-shortened form it
//     gives a name that would pass 63 bytes (<prefix of schema>_<fnv32a
//     of schema>__<projection>_g<N>): a schema that merely shares a
//     prefix with schema, or another schema's shortened generation, does
//     not match;
//   - every schema recorded in the runtime's table
//     schema.projection_generations, if there is one (a schema with no
//     runtime is fine).
//
// The rules apply again to each schema found, so that a runtime at home in
// a sibling loses its generations with it. A schema already gone is not an
// error. Drop tries every one and returns all the failures, those of
// reading a runtime's table among them.
func Drop(ctx context.Context, conn *pgx.Conn, schema string) error {
	names, errs := find(ctx, conn, schema)
	for _, n := range names {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{n}.Sanitize()+` CASCADE`); err != nil {
			errs = append(errs, fmt.Errorf("drop schema %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// find lists the existing schemas Drop takes, longest name first, and the
// failures met on the way; when pg_namespace cannot be read it lists none.
func find(ctx context.Context, conn *pgx.Conn, schema string) ([]string, []error) {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace`)
	if err != nil {
		return nil, []error{fmt.Errorf("list the schemas of %s: %w", schema, err)}
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, []error{fmt.Errorf("list the schemas of %s: %w", schema, err)}
	}
	exists := make(map[string]bool, len(all))
	for _, n := range all {
		exists[n] = true
	}
	// The schemas that hold a runtime's table of generations.
	rows, err = conn.Query(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'projection_generations' AND c.relkind IN ('r', 'p')`)
	if err != nil {
		return nil, []error{fmt.Errorf("list the schemas of %s: %w", schema, err)}
	}
	runtimes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, []error{fmt.Errorf("list the schemas of %s: %w", schema, err)}
	}

	// Each schema found is a home too: its siblings, shortened
	// generations and recorded generations are found in turn.
	var errs []error
	homes := []string{schema}
	seen := map[string]bool{schema: true}
	add := func(n string) {
		if exists[n] && !seen[n] {
			seen[n] = true
			homes = append(homes, n)
		}
	}
	for i := 0; i < len(homes); i++ {
		home := homes[i]
		for _, n := range all {
			if strings.HasPrefix(n, home+"__") || isShortGeneration(home, n) {
				add(n)
			}
		}
		if !slices.Contains(runtimes, home) {
			continue
		}
		recorded, err := recordedGenerations(ctx, conn, home)
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range recorded {
			add(n)
		}
	}
	// schema may be gone already (an earlier Drop took it but failed on a
	// generation): what belongs to it was looked for all the same.
	names := slices.DeleteFunc(homes, func(n string) bool { return !exists[n] })
	slices.SortFunc(names, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return names, errs
}

// recordedGenerations reads the schema names a projections runtime at home
// in home recorded for its generations.
func recordedGenerations(ctx context.Context, conn *pgx.Conn, home string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT schema_name FROM `+pgx.Identifier{home, "projection_generations"}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("read the generations recorded in %s: %w", home, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the generations recorded in %s: %w", home, err)
	}
	return list, nil
}

// maxIdentifier is PostgreSQL's limit on a name, in bytes (NAMEDATALEN-1).
const maxIdentifier = 63

// generationName is projections' name for the schema of a generation of a
// runtime at home in home, a copy of generationSchemaName in
// projections/generation.go: that one is unexported, and importing
// projections here would make pgtest, which the tests of eventstore and
// the other packages projections builds on use, depend on projections (an
// import cycle for any in-package test of those). The tests check with a
// real runtime that the two agree.
func generationName(home, projection string, gen int) string {
	s := fmt.Sprintf("%s__%s_g%d", home, projection, gen)
	if len(s) <= maxIdentifier {
		return s
	}
	tail := shortMark(home) + fmt.Sprintf("%s_g%d", projection, gen)
	if len(tail) > maxIdentifier {
		return "" // projections cannot name it either (its slice would panic)
	}
	cut := maxIdentifier - len(tail)
	for cut > 0 && !utf8.RuneStart(home[cut]) {
		cut-- // never inside a UTF-8 sequence, as projections cuts
	}
	return home[:cut] + tail
}

// shortMark is what a shortened generation name of home carries between
// the prefix of home it keeps and the projection's name.
func shortMark(home string) string {
	h := fnv.New32a()
	h.Write([]byte(home))
	return fmt.Sprintf("_%08x__", h.Sum32())
}

// isShortGeneration reports whether n is the hash-shortened name
// projections gives a generation of a runtime at home in home: some prefix
// of home, shortMark(home), a projection's name, "_g" and the generation.
func isShortGeneration(home, n string) bool {
	// A cut that would split a UTF-8 sequence backs off by up to 3 bytes.
	if len(n) > maxIdentifier || len(n) < maxIdentifier-(utf8.UTFMax-1) {
		return false
	}
	g := strings.LastIndex(n, "_g")
	if g < 0 {
		return false
	}
	gen, err := strconv.Atoi(n[g+2:])
	if err != nil {
		return false
	}
	mark := shortMark(home)
	// k is the length of the prefix of home that n keeps.
	for k := 0; k < len(home) && k+len(mark) < g; k++ {
		if k > 0 && n[k-1] != home[k-1] {
			break
		}
		if strings.HasPrefix(n[k:], mark) && generationName(home, n[k+len(mark):g], gen) == n {
			return true
		}
	}
	return false
}
