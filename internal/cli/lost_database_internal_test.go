package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// TestLostDBClassifiesOnlyALostDatabase: lostDB makes an error of a
// database call unavailable (exit 75, kind "unavailable") only when the
// database went away or cannot take the work now; an SQL error, a missing
// permission, a name that names nothing, an ended context and a limit of
// the command keep their exit code.
func TestLostDBClassifiesOnlyALostDatabase(t *testing.T) {
	t.Parallel()
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"connection reset", fmt.Errorf("projections: skip parked event 1: %w", reset), ExitUnavailable},
		{"unexpected EOF", fmt.Errorf("store token: %w", io.ErrUnexpectedEOF), ExitUnavailable},
		{"EOF", io.EOF, ExitUnavailable},
		{"conn closed", pgconn.ErrConnClosed, ExitUnavailable},
		{"connection exception", &pgconn.PgError{Code: "08006"}, ExitUnavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, ExitUnavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, ExitUnavailable},
		{"already unavailable", &eventstore.UnavailableError{Err: io.EOF}, ExitUnavailable},
		{"syntax error", &pgconn.PgError{Code: "42601"}, ExitFailure},
		{"permission denied", fmt.Errorf("store token: %w", &pgconn.PgError{Code: "42501"}), ExitFailure},
		{"undefined table", &pgconn.PgError{Code: "42P01"}, ExitFailure},
		{"not found", usagef("no parked event has id 7 (dlq list shows them)"), ExitUsage},
		{"no rows", fmt.Errorf("%w: %w", projections.ErrNotParked, pgx.ErrNoRows), ExitFailure},
		{"canceled", fmt.Errorf("read: %w", context.Canceled), ExitFailure},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), ExitFailure},
		{"other", errors.New("something else"), ExitFailure},
	} {
		got := lostDB(context.Background(), tc.err)
		if c := exitCode(got); c != tc.want {
			t.Errorf("%s: lostDB(%v) exits %d, want %d", tc.name, tc.err, c, tc.want)
		}
		if tc.want != ExitUnavailable && got != tc.err {
			t.Errorf("%s: lostDB changed an error it leaves alone: %v", tc.name, got)
		}
		if tc.want == ExitUnavailable && !errors.Is(got, tc.err) {
			t.Errorf("%s: lostDB lost the cause: %v", tc.name, got)
		}
	}
	// Once the command's context ended, a closed connection is how pgx
	// reports the interruption: not an outage.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := lostDB(ctx, pgconn.ErrConnClosed); got != pgconn.ErrConnClosed {
		t.Errorf("lostDB after the context ended: %v, want the error unchanged", got)
	}
	if lostDB(context.Background(), nil) != nil {
		t.Error("lostDB(nil) is not nil")
	}
}
