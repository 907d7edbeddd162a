package analysts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
)

// TestLostTellsAnOutageFromEverythingElse: lost, which Grant, Revoke and
// List return their errors through, makes a lost or unreachable database
// an *eventstore.UnavailableError (exit 75 in the CLI) and leaves the
// rest as they were: a refusal, an SQL error, a permission error, and any
// error once the caller's context ended (pgx may report that as a closed
// connection).
func TestLostTellsAnOutageFromEverythingElse(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("analysts: record r: %w", &pgconn.PgError{Code: code}) }
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	for _, tc := range []struct {
		name string
		err  error
		want bool // an outage
	}{
		{"connection failure", pg("08006"), true},
		{"admin shutdown", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"starting up", pg("57P03"), true},
		{"too many connections", pg("53300"), true},
		{"connection reset", fmt.Errorf("analysts: check role r: %w", reset), true},
		{"conn closed", pgconn.ErrConnClosed, true},
		{"EOF", io.ErrUnexpectedEOF, true},
		{"refusal", refuse("role %s is not an analyst", "r"), false},
		{"permission denied", pg("42501"), false},
		{"undefined table", pg("42P01"), false},
		{"syntax error", pg("42601"), false},
		{"query canceled", pg("57014"), false},
		{"other", errors.New("analysts: something else"), false},
	} {
		got := lost(context.Background(), tc.err)
		var ue *eventstore.UnavailableError
		if isOutage := errors.As(got, &ue); isOutage != tc.want {
			t.Errorf("%s: lost(%v) = %v (%T), want an outage: %v", tc.name, tc.err, got, got, tc.want)
			continue
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: lost(%v) = %v, which no longer holds the error", tc.name, tc.err, got)
		}
		if !tc.want && got != tc.err {
			t.Errorf("%s: lost(%v) = %v, want it as it was", tc.name, tc.err, got)
		}
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range []error{pgconn.ErrConnClosed, reset, pg("08006"), context.Canceled} {
		if got := lost(ended, err); got != err {
			t.Errorf("lost(%v) once the context ended = %v, want it as it was", err, got)
		}
	}
	if got := lost(context.Background(), nil); got != nil {
		t.Errorf("lost(nil) = %v", got)
	}
	// Already an outage: not wrapped again.
	already := &eventstore.UnavailableError{Err: reset}
	if got := lost(context.Background(), already); got != already {
		t.Errorf("lost(%v) = %v, want it as it was", already, got)
	}
}
