package analysts

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// lost returns err as an *eventstore.UnavailableError when it says the
// database could not be reached or went away (a restart, a failover, a
// network failure) rather than refused the work: the caller may run the
// command again once it is back. Not when ctx
// ended (pgx may report that as a closed connection), nor a refusal.
func lost(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, ErrRefused) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case strings.HasPrefix(code, "08"), // connection exception
			code == "57P01", code == "57P02", code == "57P03", // shutting down, crashed, starting up
			code == "53300": // too many connections
			return &eventstore.UnavailableError{Err: err}
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return &eventstore.UnavailableError{Err: err}
	}
	return err
}
