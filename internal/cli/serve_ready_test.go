package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/projections"
)

// /readyz wants every component at the version this binary needs, not
// merely installed: a database one migration behind (a rollback, a schema
// restored from an older backup) is not ready, since the projections
// runtime refuses to run on it.
func TestReadyzWantsTheLatestMigrations(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	s := c.serve("--dev")
	if code, body := s.do(t, "GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("readyz after serve migrated: %d %s", code, body)
	}
	ms, err := projections.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Fatalf("the runtime has %d migrations; the test needs one to take back", len(ms))
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	latest := ms[len(ms)-1].Version
	if _, err := conn.Exec(ctx, `DELETE FROM eventstream_migrations WHERE component = $1 AND version = $2`, projections.Component, latest); err != nil {
		t.Fatal(err)
	}
	code, body := s.do(t, "GET", "/readyz", "", "")
	if code != 503 || !strings.Contains(body, projections.Component) {
		t.Fatalf("readyz one runtime migration behind: %d %s, want 503 naming %s", code, body, projections.Component)
	}
}
