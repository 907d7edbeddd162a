package aggregates

import (
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

var (
	// ErrRefused: a command broke an invariant of its aggregate. The error
	// is a *RuleError naming the rule; nothing was written (except where a
	// module records the refusal itself, see RefuseAndRecord).
	ErrRefused = errors.New("aggregates: command refused")
	// ErrNotFound: the command needs an aggregate that does not exist.
	ErrNotFound = errors.New("aggregates: aggregate not found")
	// ErrCommandReused: the command's id was already handled on the same
	// aggregate by a command that decided other events. The error is a
	// *CommandReusedError; nothing was written.
	ErrCommandReused = errors.New("aggregates: command id already used by another command")
	// ErrMissingID: a command names no aggregate (its aggregate id is
	// empty), which is the caller's mistake: it is refused with this rule
	// (a *RuleError naming the aggregate type, errors.Is(err, ErrRefused))
	// before anything is read or written.
	ErrMissingID = Rule("aggregate-id-required", "a command names the aggregate it is for")
)

// RuleError is a command refused by an invariant. Rule is a stable,
// kebab-case name of the rule ("lesson-slot-declared"); Message says what
// was wrong with this command.
//
// errors.Is(err, ErrRefused) is true for every RuleError, and
// errors.Is(err, x) is true when x is a *RuleError with the same Rule, so
// modules export one sentinel per rule and callers test for it.
type RuleError struct {
	Aggregate string
	ID        string
	Rule      string
	Message   string
}

func (e *RuleError) Error() string {
	switch {
	case e.Aggregate == "":
		return fmt.Sprintf("refused [%s]: %s", e.Rule, e.Message)
	case e.ID == "":
		return fmt.Sprintf("%s: refused [%s]: %s", e.Aggregate, e.Rule, e.Message)
	}
	return fmt.Sprintf("%s %s: refused [%s]: %s", e.Aggregate, e.ID, e.Rule, e.Message)
}

// Is matches ErrRefused and any *RuleError with the same Rule.
func (e *RuleError) Is(target error) bool {
	if target == ErrRefused {
		return true
	}
	t, ok := target.(*RuleError)
	return ok && t.Rule == e.Rule
}

// Rule returns a sentinel for a rule, for modules to export:
//
//	var ErrLessonNotDeclared = aggregates.Rule("lesson-slot-declared", "the outline does not declare the slot")
func Rule(name, message string) *RuleError { return &RuleError{Rule: name, Message: message} }

// Refuse returns a RuleError for rule with a message for this command.
func Refuse(rule *RuleError, format string, args ...any) *RuleError {
	return &RuleError{Rule: rule.Rule, Message: fmt.Sprintf(format, args...)}
}

// NotFoundError says which aggregate a command needed.
type NotFoundError struct {
	Aggregate string
	ID        string
}

func (e *NotFoundError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("aggregates: %s not found: empty id", e.Aggregate)
	}
	return fmt.Sprintf("aggregates: %s %s not found", e.Aggregate, e.ID)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// CommandReusedError is a command whose id already landed on its
// aggregate with events this command does not decide (against the state
// the earlier one was decided against), or on another aggregate (then
// with Version 0, naming neither that aggregate nor its stream, which may
// be another tenant's): a client gave one id to two commands. A command id must name one command, since its event ids derive
// from it.
//
// errors.Is(err, ErrCommandReused) is true, and so is errors.Is(err,
// eventstore.ErrDuplicateEvent): the command's event ids are stored with
// other content.
type CommandReusedError struct {
	Aggregate string
	ID        string
	CommandID uuid.UUID
	// Version is the stream version of the earlier command's first event
	// (0: not said).
	Version int64
}

func (e *CommandReusedError) Error() string {
	if e.Version == 0 {
		// Not said (to another tenant than the aggregate's).
		return fmt.Sprintf("aggregates: %s %s: command id %s was already used by a command that decided other events", e.Aggregate, e.ID, e.CommandID)
	}
	return fmt.Sprintf("aggregates: %s %s: command id %s was already used at v%d by a command that decided other events", e.Aggregate, e.ID, e.CommandID, e.Version)
}

// Is matches ErrCommandReused and eventstore.ErrDuplicateEvent.
func (e *CommandReusedError) Is(target error) bool {
	return target == ErrCommandReused || target == eventstore.ErrDuplicateEvent
}

// UnknownEventError is a stored event the registry cannot decode: its type
// has no Go type, or its schema version has no upcaster chain to the Go
// type's version.
type UnknownEventError struct {
	Type          string
	SchemaVersion int
	EventID       string
	Want          int
}

func (e *UnknownEventError) Error() string {
	if e.Want != 0 {
		return fmt.Sprintf("aggregates: event %s: %s v%d cannot be upcast to v%d", e.EventID, e.Type, e.SchemaVersion, e.Want)
	}
	return fmt.Sprintf("aggregates: event %s: type %s (v%d) has no registered Go type", e.EventID, e.Type, e.SchemaVersion)
}

// RecordedRefusal is returned by a decide function that refuses a command
// but still records events about the attempt (an invalid approval is a
// security signal worth keeping). The repository appends Events, then
// returns Err to the caller.
type RecordedRefusal struct {
	Err    error
	Events []any
}

func (e *RecordedRefusal) Error() string { return e.Err.Error() }
func (e *RecordedRefusal) Unwrap() error { return e.Err }

// RefuseAndRecord refuses a command with err and records events about it.
func RefuseAndRecord(err error, events ...any) error {
	return &RecordedRefusal{Err: err, Events: events}
}
