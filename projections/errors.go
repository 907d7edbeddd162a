package projections

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

var (
	// ErrUnknownProjection: no projection of that name is registered with
	// the runtime.
	ErrUnknownProjection = errors.New("projections: unknown projection")
	// ErrBusy: another runtime holds the lock the operation needs (it runs
	// the projection, or rebuilds it).
	ErrBusy = errors.New("projections: held by another runtime")
	// ErrNotParked: no parked event has that id.
	ErrNotParked = errors.New("projections: no such parked event")
	// ErrNotRewindable: the projection has no Rewind function, so it can
	// only be rebuilt, not reprocessed in place.
	ErrNotRewindable = errors.New("projections: projection cannot be rewound; rebuild it instead")
	// ErrNotMigrated: Migrate has not run for the projection.
	ErrNotMigrated = errors.New("projections: projection not migrated; run Migrate first")
	// ErrStopped: the projection was stopped on an error and waits for
	// Resume.
	ErrStopped = errors.New("projections: projection stopped")
)

// errFenced means the checkpoint moved under the runner (a rebuild swapped
// generations, Reprocess rewound it, or another runner wrote it): the
// session restarts from what the database says.
var errFenced = errors.New("projections: checkpoint changed by someone else")

// errCommitUnknown means the connection broke while COMMIT was under way,
// so whether the transaction committed is unknown: the session restarts
// from what the database says, as after errFenced. Unlike errFenced it is
// a break of the session, counted against the event being applied (one
// that did commit is behind the checkpoint the restart reads).
var errCommitUnknown = errors.New("projections: outcome of the commit unknown")

// handlerError is an error the projection's handler returned (or a panic
// of it) while the runner's connection and context were still alive: a
// failed attempt of the batch or event, never a break of the session, even
// when the rollback then finds the connection unusable and closes it (a
// handler that failed with a query's rows still open). A context or
// network error the handler returns from an outside call of its own is
// such a failure too. A handler whose query met a lost connection returns
// with the connection already closed, and that is a break.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// permanentError marks a handler error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix: the event is parked
// (or the projection stopped) at once, without the retries.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// VersionError is a handled event whose schema version (after upcasting)
// the projection does not declare. It is permanent: the event is parked.
type VersionError struct {
	Projection    string
	Type          string
	SchemaVersion int
	Declared      []int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("projections: projection %q does not handle %s v%d (declared: %v)", e.Projection, e.Type, e.SchemaVersion, e.Declared)
}

// RetryError is returned by RetryParked when the event fails again; the
// entry stays parked with the new error and one more attempt.
type RetryError struct {
	ID         int64
	Projection string
	Err        error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("projections: parked event %d of %q failed again: %v", e.ID, e.Projection, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// sessionError reports whether err means the runner's connection or
// context is gone, or its checkpoint was moved: the session must restart
// from the database rather than count a failed attempt of the event. A
// handlerError is an attempt even when it left the connection closed; the
// caller ends the session after counting it.
func sessionError(ctx context.Context, connClosed bool, err error) bool {
	if err == nil {
		return false
	}
	if ctx.Err() != nil || errors.Is(err, errFenced) || errors.Is(err, errCommitUnknown) || errors.Is(err, eventstore.ErrUnavailable) {
		return true
	}
	var he *handlerError
	if errors.As(err, &he) {
		return false
	}
	if connClosed {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, cannot connect now
			return true
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr)
}

// isUndefinedTable reports a missing table (SQLSTATE 42P01).
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
