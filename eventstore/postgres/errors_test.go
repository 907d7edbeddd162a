package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// The server's FATAL errors that end a session are a lost connection; an
// error it answered a statement with is not.
func TestUnreachableSessionEnds(t *testing.T) {
	for code, want := range map[string]bool{
		"57P01": true,  // admin shutdown (pg_terminate_backend)
		"57P05": true,  // idle_session_timeout
		"25P03": true,  // idle_in_transaction_session_timeout
		"08006": true,  // connection failure
		"42P01": false, // undefined table
		"22023": false, // a data exception
		"57014": false, // statement cancelled (statement_timeout): the server answered
	} {
		if got := unreachable(&pgconn.PgError{Severity: "FATAL", Code: code}); got != want {
			t.Errorf("unreachable(SQLSTATE %s) = %v, want %v", code, got, want)
		}
	}
}
