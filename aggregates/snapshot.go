package aggregates

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/google/uuid"
)

// Snapshot is an aggregate's state encoded at a stream version.
type Snapshot struct {
	Stream    string
	Aggregate string
	// Version is the stream version the state includes (the last applied
	// event's version).
	Version int64
	// EventID is the id of the event at Version. A load uses the snapshot
	// only when the stream's event at Version has this id: a version alone
	// does not say which log the state was folded from (a stream recreated,
	// an append that never committed, a row from another store), and a
	// snapshot ahead of the log would be used once the stream grew past it.
	// Zero means unknown (a row written before snapshots kept it): such a
	// snapshot is not used, and the next Save replaces it.
	EventID uuid.UUID
	// SchemaVersion is the version of the state's encoding; a snapshot is
	// used only by code that declares the same SnapshotPolicy.SchemaVersion.
	SchemaVersion int
	State         json.RawMessage
}

// SnapshotStore keeps the newest snapshot of each (stream, schema version).
// The PostgreSQL implementation is aggregates/pgsnapshot.
type SnapshotStore interface {
	// Load returns the snapshot of stream at schemaVersion; ok is false
	// when there is none.
	Load(ctx context.Context, stream string, schemaVersion int) (s Snapshot, ok bool, err error)
	// Save stores s, with its EventID, unless the snapshot of the same
	// stream and schema version already stored has an EventID and is at a
	// higher stream version, or at the same version with the same EventID.
	// So a newer snapshot is not replaced by an older one, while a snapshot
	// without an EventID, or one the log disowns at s.Version, is.
	Save(ctx context.Context, s Snapshot) error
}

// SnapshotPolicy opts an aggregate into snapshots.
type SnapshotPolicy struct {
	// Store keeps the snapshots.
	Store SnapshotStore
	// Every takes a snapshot after a command that leaves the aggregate
	// Every or more events past the snapshot it was loaded from (past
	// version 0 when there was none). Must be > 0.
	Every int64
	// SchemaVersion is the version of the state's JSON encoding. Change it
	// whenever the state type changes incompatibly: older snapshots are
	// then ignored and the aggregate rebuilds from events.
	SchemaVersion int
}

// MemorySnapshots is a SnapshotStore in memory, for tests and tools.
type MemorySnapshots struct {
	mu sync.Mutex
	m  map[memKey]Snapshot
}

type memKey struct {
	stream  string
	version int
}

var _ SnapshotStore = (*MemorySnapshots)(nil)

// Load implements SnapshotStore.
func (m *MemorySnapshots) Load(ctx context.Context, stream string, schemaVersion int) (Snapshot, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[memKey{stream, schemaVersion}]
	return s, ok, nil
}

// Save implements SnapshotStore.
func (m *MemorySnapshots) Save(ctx context.Context, s Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[memKey]Snapshot{}
	}
	k := memKey{s.Stream, s.SchemaVersion}
	if old, ok := m.m[k]; ok && !replaces(s, old) {
		return nil
	}
	m.m[k] = s
	return nil
}

// replaces reports whether a SnapshotStore's Save of s replaces old, the
// stored snapshot of the same stream and schema version (see Save).
func replaces(s, old Snapshot) bool {
	switch {
	case old.EventID == uuid.Nil:
		return true
	case old.Version != s.Version:
		return old.Version < s.Version
	default:
		return old.EventID != s.EventID
	}
}

// Put stores s as is, even over a newer snapshot (for tests that plant a
// damaged snapshot).
func (m *MemorySnapshots) Put(s Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[memKey]Snapshot{}
	}
	m.m[memKey{s.Stream, s.SchemaVersion}] = s
}
