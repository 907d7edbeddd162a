package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pglost"
)

// Exit codes of the eventstream command. They are part of its contract and
// listed in --help and the README.
const (
	ExitOK       = 0 // success
	ExitFailure  = 1 // anything else: I/O, server error, connection refused by the server
	ExitUsage    = 2 // bad flags, arguments or values; a name or id that names nothing
	ExitInvalid  = 3 // input refused by validation; nothing was written
	ExitConflict = 4 // conflict with what is stored (wrong expected version, or an id stored with other content); nothing was written
	// ExitUnavailable (EX_TEMPFAIL of sysexits.h): the database or the
	// EventStoreDB cluster could not be reached, or was lost during the
	// command (eventstore.ErrUnavailable). Retry later; a long job
	// resumes when run again.
	ExitUnavailable = 75
	// ExitInterrupted: a long job stopped at a checkpoint on Ctrl-C or
	// SIGTERM; running the same command again resumes it.
	ExitInterrupted = 130
)

const exitCodesHelp = `Exit codes:
  0  success
  1  failure (I/O, server error, a connection the server refused: authentication, missing database)
  2  usage error (bad flag, argument or value; a name or id that names nothing)
  3  input refused by validation (nothing was written)
  4  conflict with what is stored: the stream was not at the expected version, or an event id is already stored with other content (nothing was written)
  75  unavailable: the database or EventStoreDB could not be reached or was lost; try again later (a long job resumes)
  130  interrupted (Ctrl-C, SIGTERM); a long job stopped at a checkpoint: run it again to resume`

// usageError is a mistake in how the command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// lineError places an error on a line of an input file.
type lineError struct {
	File string
	Line int
	Err  error
}

func (e *lineError) Error() string {
	msg := e.Err.Error()
	// The line names the event. A validation error's "event N" is its
	// index in the batch it was checked in (0 for each of import's
	// one-event checks, its place among its stream's lines for append
	// --file), which names nothing a user can find: it is left out, as
	// the --json report leaves out its index.
	var ve *eventstore.ValidationError
	if errors.As(e.Err, &ve) && ve.Index >= 0 {
		full := ve.Error()
		at := fmt.Sprintf("eventstore: event %d", ve.Index)
		if strings.HasPrefix(full, at) {
			msg = strings.Replace(msg, full, "eventstore: event"+strings.TrimPrefix(full, at), 1)
		}
	}
	if e.File != "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, msg)
}

func (e *lineError) Unwrap() error { return e.Err }

// exitError carries an explicit exit code and a message already worded
// for the user.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// silentError ends the command with a code after it already told the user
// why (for example a table of failures).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// lostDB returns err, from a query a command ran on the database once
// connected (not through the store, which classifies its own), as an
// *eventstore.UnavailableError (exit 75, kind "unavailable") when it says
// the database went away or cannot take the work now: a connection
// exception, a server shutting down or starting up, out of connection
// slots, a connection closed, reset or ended mid-answer, or no new one to
// be had. Left as it is: an error already unavailable, any other answer of
// the server (an SQL error, a missing permission), a name or id that names
// nothing, and any error once ctx ended (pgx may report Ctrl-C as a closed
// connection). Only for database calls: io.EOF from a file is not an
// outage, which is why exitCode does not do this for every error.
func lostDB(ctx context.Context, err error) error { return pglost.Err(ctx, err) }

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ee *exitError
	var se *silentError
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &se):
		return se.code
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, eventstore.ErrValidation):
		return ExitInvalid
	case errors.As(err, new(*eventstore.JSONError)):
		return ExitInvalid
	case errors.Is(err, eventstore.ErrConcurrency), errors.Is(err, eventstore.ErrDuplicateEvent):
		return ExitConflict
	case errors.Is(err, eventstore.ErrUnavailable):
		return ExitUnavailable
	}
	return ExitFailure
}

// errorReport is the --json form of an error, written to stderr. Index,
// the event's index in its append, is given only when there is no Line:
// an error placed on a line of a file (append --file, import) names its
// event by the line, and the index in the batch that line went in (0 for
// each of import's one-event checks) said nothing true. An event id
// already stored with other content has code 4, as a wrong expected
// version (a conflict with what is stored; HTTP 409 in the API), and kind
// "duplicate", with its Stream and ID.
type errorReport struct {
	Error   string                 `json:"error"`
	Code    int                    `json:"code"`
	Kind    string                 `json:"kind"`
	Line    int                    `json:"line,omitempty"`
	Index   *int                   `json:"index,omitempty"`
	ID      string                 `json:"id,omitempty"` // the event id of a duplicate (kind "duplicate")
	Type    string                 `json:"type,omitempty"`
	Schema  int                    `json:"schema_version,omitempty"`
	Pointer string                 `json:"pointer,omitempty"`
	Rule    string                 `json:"rule,omitempty"`
	Causes  []eventstore.Violation `json:"causes,omitempty"`
	Stream  string                 `json:"stream,omitempty"`
	Expect  string                 `json:"expected_version,omitempty"`
	Actual  *int64                 `json:"actual_version,omitempty"`
}

func kindOf(code int) string {
	switch code {
	case ExitUsage:
		return "usage"
	case ExitInvalid:
		return "validation"
	case ExitConflict:
		return "concurrency"
	case ExitUnavailable:
		return "unavailable"
	}
	return "failure"
}

func reportOf(err error) errorReport {
	code := exitCode(err)
	r := errorReport{Error: err.Error(), Code: code, Kind: kindOf(code)}
	var le *lineError
	if errors.As(err, &le) {
		r.Line = le.Line
	}
	var ve *eventstore.ValidationError
	if errors.As(err, &ve) {
		if ve.Index >= 0 && r.Line == 0 {
			i := ve.Index
			r.Index = &i
		}
		r.Type, r.Schema, r.Pointer, r.Rule, r.Causes = ve.Type, ve.SchemaVersion, ve.Pointer, ve.Rule, ve.Causes
	}
	var je *eventstore.JSONError
	if errors.As(err, &je) && r.Rule == "" {
		r.Rule = je.Rule
	}
	var ce *eventstore.ConcurrencyError
	if errors.As(err, &ce) {
		r.Stream, r.Expect = ce.Stream, ce.Expected.String()
		a := ce.Actual
		r.Actual = &a
	}
	// The same exit code as a wrong expected version (4: a conflict
	// with what is stored), told apart by its kind: every error that is
	// ErrDuplicateEvent (an aggregate's reused command id too, which
	// holds no *DuplicateEventError), not only those naming the id.
	if code == ExitConflict && errors.Is(err, eventstore.ErrDuplicateEvent) && !errors.Is(err, eventstore.ErrConcurrency) {
		r.Kind = "duplicate"
		var de *eventstore.DuplicateEventError
		if errors.As(err, &de) {
			r.Stream, r.ID = de.Stream, de.ID
		}
	}
	return r
}

// writeError tells the user what went wrong: one line (plus a hint for
// usage errors), or a JSON object with --json.
func writeError(w io.Writer, err error, asJSON, writes bool, cmdPath string) {
	var se *silentError
	if errors.As(err, &se) {
		return
	}
	if asJSON {
		b, _ := json.Marshal(reportOf(err))
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	msg := strings.TrimPrefix(err.Error(), "eventstore: ")
	switch exitCode(err) {
	case ExitInvalid:
		fmt.Fprintf(w, "refused: %s\n", msg)
		if writes {
			fmt.Fprintln(w, "nothing was written")
		}
		var ve *eventstore.ValidationError
		if errors.As(err, &ve) {
			for _, c := range ve.Causes {
				fmt.Fprintf(w, "  also %s: %s [%s]\n", c.Pointer, c.Message, c.Rule)
			}
		}
	case ExitConflict:
		fmt.Fprintf(w, "conflict: %s\n", msg)
		if writes {
			fmt.Fprintln(w, "nothing was written")
		}
	case ExitUsage:
		fmt.Fprintf(w, "eventstream: %s\nRun '%s --help' for usage.\n", msg, cmdPath)
	default:
		fmt.Fprintf(w, "eventstream: %s\n", msg)
	}
}
