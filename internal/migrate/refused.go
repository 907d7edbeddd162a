package migrate

import (
	"fmt"
	"strings"
)

// Reason is the machine-readable cause of a RefusedError.
type Reason string

// The reasons Load and Apply refuse a migration or the schema it targets.
const (
	// ReasonMisnamed: a .sql file not named NNN_name.up.sql (Load).
	ReasonMisnamed Reason = "misnamed"
	// ReasonNumbering: versions that do not run 1, 2, 3… (Load).
	ReasonNumbering Reason = "numbering"
	// ReasonNoSchema: the search_path names no schema that exists and
	// that the role may use.
	ReasonNoSchema Reason = "no_schema"
	// ReasonTemporarySchema: the search_path puts pg_temp first, so that
	// the migrations would land in the session's temporary schema and
	// vanish with it.
	ReasonTemporarySchema Reason = "temporary_schema"
	// ReasonNewerDatabase: the database records migrations this program
	// does not know.
	ReasonNewerDatabase Reason = "newer_database"
	// ReasonMissingRecord: the migrations table lacks the record of a
	// migration below the highest recorded one.
	ReasonMissingRecord Reason = "missing_record"
	// ReasonRenamed: a migration ran under another name, with the same SQL.
	ReasonRenamed Reason = "renamed"
	// ReasonNumberReused: a migration ran under another name, with other
	// SQL: two migrations were given one number.
	ReasonNumberReused Reason = "number_reused"
	// ReasonEdited: a migration's SQL changed after it ran.
	ReasonEdited Reason = "edited"
	// ReasonCopyFromStdin: a migration runs COPY … FROM STDIN, which
	// waits for data Apply has none of.
	ReasonCopyFromStdin Reason = "copy_from_stdin"
	// ReasonEndsTransaction: a migration's SQL commits or rolls back.
	ReasonEndsTransaction Reason = "ends_transaction"
	// ReasonSearchPathChanged: a migration changes the search_path.
	ReasonSearchPathChanged Reason = "search_path_changed"
	// ReasonSchemaChanged: after a migration, current_schema() names
	// another schema (one it created ahead in the path, or SET ROLE).
	ReasonSchemaChanged Reason = "schema_changed"
)

// RefusedError is a migration, or the schema migrations would be applied
// to, that Load or Apply refuses: bad input, as opposed to a database
// error (which Apply returns wrapped, as it is). Nothing was applied: the
// refused run's transaction was rolled back. Callers find it with
// errors.As through any wrapping.
type RefusedError struct {
	// Component is the component being migrated ("" for Load's).
	Component string
	// Migration is the refused migration as NNN_name, or "" when the
	// refusal is of the target schema or of the set of files.
	Migration string
	// Reason says why, for programs.
	Reason Reason
	// Message says why, for people: Error returns it.
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

func refuse(component string, m *Migration, reason Reason, format string, args ...any) error {
	e := &RefusedError{Component: component, Reason: reason, Message: fmt.Sprintf(format, args...)}
	if m != nil {
		e.Migration = fmt.Sprintf("%03d_%s", m.Version, m.Name)
	}
	return e
}

// copiesFromStdin reports whether sql has a top-level COPY … FROM STDIN
// statement. Apply runs a migration by the simple query protocol, in which
// such a statement makes the server wait for data that never comes, until
// the context ends. Comments, string constants, quoted identifiers and
// dollar-quoted bodies are skipped, so a function body or a comment that
// mentions one is not mistaken for it (COPY to or from the client cannot
// run in a function anyway).
func copiesFromStdin(sql string) bool {
	var words []string // the current statement's words at paren depth 0
	depth := 0
	isIdent := func(c byte) bool {
		return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
	}
	check := func() bool {
		if len(words) == 0 || words[0] != "copy" {
			return false
		}
		for i := 1; i+1 < len(words); i++ {
			if words[i] == "from" && words[i+1] == "stdin" {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			// Block comments nest.
			n := 0
			for i < len(sql) {
				if sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*' {
					n++
					i += 2
				} else if sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/' {
					n--
					i += 2
					if n == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || c == '"':
			// A string constant or a quoted identifier; a doubled quote
			// is one quote. E'…' takes backslash escapes.
			escapes := c == '\'' && i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') && (i == 1 || !isIdent(sql[i-2]))
			i++
			for i < len(sql) {
				if escapes && sql[i] == '\\' {
					i += 2
					continue
				}
				if sql[i] == c {
					if i+1 < len(sql) && sql[i+1] == c {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
			words = append(words, "") // a constant or name, not a keyword
		case c == '$' && (i == 0 || !isIdent(sql[i-1])):
			// $tag$…$tag$, or a parameter ($1).
			j := i + 1
			for j < len(sql) && isIdent(sql[j]) && sql[j] != '$' {
				j++
			}
			if j < len(sql) && sql[j] == '$' && (j == i+1 || !(sql[i+1] >= '0' && sql[i+1] <= '9')) {
				tag := sql[i : j+1]
				end := strings.Index(sql[j+1:], tag)
				if end < 0 {
					i = len(sql)
				} else {
					i = j + 1 + end + len(tag)
				}
			} else {
				i = j
			}
			words = append(words, "")
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			i++
		case c == ';':
			if check() {
				return true
			}
			words, depth = words[:0], 0
			i++
		case isIdent(c):
			j := i
			for j < len(sql) && isIdent(sql[j]) {
				j++
			}
			if depth == 0 {
				words = append(words, strings.ToLower(sql[i:j]))
			}
			i = j
		default:
			i++
		}
	}
	return check()
}
