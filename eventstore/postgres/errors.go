package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// storeErr is err from the database during op, as the store returns it:
// "postgres store: op: ...", and an *eventstore.UnavailableError around it
// when it says that the database could not be reached (see unreachable),
// so that a caller can tell an outage to retry after from a defect.
func storeErr(op string, err error) error {
	wrapped := fmt.Errorf("postgres store: %s: %w", op, err)
	if unreachable(err) {
		return &eventstore.UnavailableError{Err: wrapped}
	}
	return wrapped
}

// unreachable reports whether err says that the database could not be
// reached or that the connection to it was lost: the server is down,
// restarting or shutting down, out of connection slots, ended the session
// for being idle, or the network failed. The caller's own deadline or cancellation is not: pgx reports it
// as the context's error, and the caller knows of it already.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case strings.HasPrefix(code, "08"): // connection exception
			return true
		case code == "57P01", code == "57P02", code == "57P03": // admin shutdown, crash shutdown, cannot connect now
			return true
		case code == "57P05", code == "25P03":
			// The server ended the session for being idle (idle_session_timeout,
			// or idle_in_transaction_session_timeout, which the careful path
			// sets: a network that stalls between its round trips): the
			// connection is lost, and a retry on another one may land.
			return true
		case code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed)
}
