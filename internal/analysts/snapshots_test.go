package analysts_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/aggregates/pgsnapshot"
	"github.com/brainhq/eventstream/internal/analysts"
	"github.com/brainhq/eventstream/internal/migrate"
)

// TestGrantKeepsAnalystsFromTheSnapshots: aggregate_snapshots, which the
// CLI's migrate creates beside the log, holds every tenant's aggregate
// state (the log folded), with no tenant column for row-level security.
// Like the log, Grant must take a direct grant on it away, and refuse
// (rolling back) a role that PUBLIC lets read it.
func TestGrantKeepsAnalystsFromTheSnapshots(t *testing.T) {
	s := newShared(t)
	ctx := context.Background()
	ms, err := pgsnapshot.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, s.pool, pgsnapshot.Component, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, state)
		VALUES ('approval-globex-1', 1, 'approval', 3, '{"tenant_id": "globex", "token_sha256": "globex-secret"}')`); err != nil {
		t.Fatal(err)
	}

	// A direct grant is taken away.
	reader := s.role(t, "an_snap")
	if _, err := s.pool.Exec(ctx, `CREATE ROLE `+reader+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `GRANT SELECT ON aggregate_snapshots TO `+reader); err != nil {
		t.Fatal(err)
	}
	if _, err := analysts.Grant(ctx, s.pool, "acme", reader, analysts.Options{}); err != nil {
		t.Fatal(err)
	}
	conn := s.as(t, reader)
	var state string
	err = conn.QueryRow(ctx, `SELECT state::text FROM aggregate_snapshots LIMIT 1`).Scan(&state)
	if sqlState(err) != "42501" {
		t.Errorf("the analyst of acme reads aggregate_snapshots after grant-analyst: %q (%v), want permission denied", state, err)
	}

	// PUBLIC's grant cannot be taken from one role: refused, rolled back.
	if _, err := s.pool.Exec(ctx, `GRANT SELECT ON aggregate_snapshots TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	newcomer := s.role(t, "an_snap_new")
	_, err = analysts.Grant(ctx, s.pool, "acme", newcomer, analysts.Options{})
	if !errors.Is(err, analysts.ErrRefused) || !strings.Contains(err.Error(), "aggregate_snapshots") {
		t.Errorf("with SELECT on aggregate_snapshots for PUBLIC: %v, want refused naming aggregate_snapshots", err)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, newcomer).Scan(&exists); err != nil || exists {
		t.Errorf("the refused grant was not rolled back (role left: %v, %v)", exists, err)
	}
}
