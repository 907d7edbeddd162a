package eventstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/brainhq/eventstream/schemas"
)

// Sentinel errors. Backends return errors that match them with errors.Is;
// the typed errors below carry the details and are reached with errors.As.
var (
	// ErrConcurrency: the stream was not at the expected version.
	ErrConcurrency = errors.New("eventstore: wrong expected version")
	// ErrValidation: an envelope or payload was refused; nothing was written.
	ErrValidation = errors.New("eventstore: event refused by validation")
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrDuplicateEvent: an event id is already stored with other content.
	ErrDuplicateEvent = errors.New("eventstore: event id already stored with different content")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("eventstore: store closed")
	// ErrUnavailable: the backend could not be reached, or the connection
	// to it was lost during the call (it is down, restarting, out of
	// connections, or the network is cut). Retry later. An append that
	// fails with it may or may not have been written: retry it with the
	// same event ids, which is idempotent. The error is an
	// *UnavailableError holding the backend's own.
	ErrUnavailable = errors.New("eventstore: backend unavailable")
)

// UnavailableError is a call that failed because the backend could not be
// reached (ErrUnavailable). Err is the backend's error, as it was.
type UnavailableError struct {
	Err error
}

func (e *UnavailableError) Error() string {
	return "eventstore: backend unavailable: " + e.Err.Error()
}

// Unwrap returns the backend's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// ConcurrencyError is returned when an append's expected version does not
// hold. Actual is the stream's version at the time (0: no events).
type ConcurrencyError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("eventstore: stream %q: expected version %s, actual %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

// ValidationError says why an append was refused. Index is the event's
// index in the batch (-1 when the batch as a whole or the stream id was
// refused), Pointer the JSON pointer of the offending field inside the
// envelope (payload fields are under /payload), and Rule the rule it broke:
// a JSON Schema keyword ("required", "type", "pattern", ...) or one of the
// store's own limits ("stream-id", "batch-size", "event-size", "json", ...).
type ValidationError struct {
	Index         int
	Type          string
	SchemaVersion int
	Pointer       string
	Rule          string
	Message       string
	// Causes holds further violations of the same event, if any.
	Causes []Violation
}

// Violation is one broken rule inside an event.
type Violation struct {
	Pointer string `json:"pointer"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("eventstore: ")
	if e.Index >= 0 {
		fmt.Fprintf(&b, "event %d", e.Index)
		if e.Type != "" {
			// A refused type name may hold anything (invalid UTF-8, a
			// newline): it is quoted, so that the message stays one line
			// of valid UTF-8. A valid one is printed as it is.
			if schemas.ValidTypeName(e.Type) {
				fmt.Fprintf(&b, " (%s v%d)", truncate(e.Type, 64), e.SchemaVersion)
			} else {
				fmt.Fprintf(&b, " (%q v%d)", truncate(e.Type, 64), e.SchemaVersion)
			}
		}
		b.WriteString(": ")
	}
	if e.Pointer != "" {
		fmt.Fprintf(&b, "%s: ", e.Pointer)
	}
	b.WriteString(e.Message)
	if e.Rule != "" {
		fmt.Fprintf(&b, " [%s]", e.Rule)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrValidation) true.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// DuplicateEventError is returned when an event id is already stored with
// different content (a retry with the same content returns the original
// result instead).
type DuplicateEventError struct {
	ID     string
	Stream string
}

func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("eventstore: event id %s already stored in stream %q with different content", e.ID, e.Stream)
}

// Is makes errors.Is(err, ErrDuplicateEvent) true.
func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }
