// Package pglost tells a PostgreSQL error that says the database went
// away, or cannot take the work now, from one that refused the work, for
// the commands that query a pool themselves (the store classifies its own
// errors: eventstore/postgres). A lost database is an outage: the caller
// may run the work again once it is back (the CLI exits 75).
package pglost

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// Err returns err as an *eventstore.UnavailableError when it says that
// the database could not be reached or went away (a connection exception,
// a shutdown, a restart, too many connections, a session ended for being
// idle, a reset or closed connection, a failed connection attempt), and
// err unchanged otherwise: nil, an error already unavailable, any error
// once ctx has ended (pgx may report an interruption as a closed
// connection), an SQL or permission error, and a deadline or cancellation
// that is not a connection attempt's (the caller's own limit).
func Err(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, eventstore.ErrUnavailable) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case strings.HasPrefix(code, "08"), // connection exception
			code == "57P01", code == "57P02", code == "57P03", // shutting down, crashed, starting up
			code == "57P05", code == "25P03", // idle session timeouts: the session was ended
			code == "53300": // too many connections
			return &eventstore.UnavailableError{Err: err}
		}
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return &eventstore.UnavailableError{Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// A deadline is a net.Error too; one that is not a connection
		// attempt's is the caller's own limit, not an outage.
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &eventstore.UnavailableError{Err: err}
	}
	return err
}
