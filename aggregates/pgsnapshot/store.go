// Package pgsnapshot keeps aggregate snapshots in PostgreSQL, in the
// aggregate_snapshots table beside the event log, created by its own
// embedded migrations (component "aggregates_snapshots").
package pgsnapshot

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/internal/migrate"
)

// Component is the name the migrations are recorded under.
const Component = "aggregates_snapshots"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migrations, in order.
func Migrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("pgsnapshot: migrations: %w", err)
	}
	return migrate.Load(sub)
}

// Migrate creates or upgrades the snapshot table in the current schema.
func Migrate(ctx context.Context, db migrate.Beginner) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if _, err := migrate.Apply(ctx, db, Component, ms); err != nil {
		return err
	}
	return nil
}

// DB is what the store needs: a pool or a connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is an aggregates.SnapshotStore in PostgreSQL.
type Store struct {
	db DB
}

var _ aggregates.SnapshotStore = (*Store)(nil)

// New returns a store over db. Run Migrate first.
func New(db DB) *Store { return &Store{db: db} }

// Load implements aggregates.SnapshotStore.
func (s *Store) Load(ctx context.Context, stream string, schemaVersion int) (aggregates.Snapshot, bool, error) {
	snap := aggregates.Snapshot{Stream: stream, SchemaVersion: schemaVersion}
	var eventID *uuid.UUID // NULL in rows written before the column
	err := s.db.QueryRow(ctx, `SELECT aggregate, version, event_id, state FROM aggregate_snapshots WHERE stream = $1 AND schema_version = $2`,
		stream, schemaVersion).Scan(&snap.Aggregate, &snap.Version, &eventID, &snap.State)
	if errors.Is(err, pgx.ErrNoRows) {
		return aggregates.Snapshot{}, false, nil
	}
	if err != nil {
		return aggregates.Snapshot{}, false, fmt.Errorf("pgsnapshot: load %s v%d: %w", stream, schemaVersion, err)
	}
	if eventID != nil {
		snap.EventID = *eventID
	}
	return snap, true, nil
}

// Save implements aggregates.SnapshotStore: it keeps the snapshot with the
// highest stream version, unless that one has no event id, and replaces
// one at the same version taken at another event.
func (s *Store) Save(ctx context.Context, snap aggregates.Snapshot) error {
	var eventID *uuid.UUID
	if snap.EventID != uuid.Nil {
		eventID = &snap.EventID
	}
	_, err := s.db.Exec(ctx, `INSERT INTO aggregate_snapshots (stream, schema_version, aggregate, version, event_id, state)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (stream, schema_version) DO UPDATE
		SET aggregate = excluded.aggregate, version = excluded.version, event_id = excluded.event_id, state = excluded.state, taken_at = now()
		WHERE aggregate_snapshots.event_id IS NULL
			OR aggregate_snapshots.version < excluded.version
			OR (aggregate_snapshots.version = excluded.version AND aggregate_snapshots.event_id IS DISTINCT FROM excluded.event_id)`,
		snap.Stream, snap.SchemaVersion, snap.Aggregate, snap.Version, eventID, string(snap.State))
	if err != nil {
		return fmt.Errorf("pgsnapshot: save %s v%d at %d: %w", snap.Stream, snap.SchemaVersion, snap.Version, err)
	}
	return nil
}
