package aggregates_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// Events stored beyond eventstore.MaxJSONExpansion: written before the
// limit (here, by SQL, as an older release would have), or accepted within
// it and read back denser than they were sent. The limit is on writes; a
// stored event must load, and a retry of its append must be recognised.

type Mark struct {
	A int `json:"a"`
}

// Marked is test.bulk.marked v2; v1 had no origin.
type Marked struct {
	BulkID string `json:"bulk_id"`
	Marks  []Mark `json:"marks"`
	Origin string `json:"origin"`
}

type Bulk struct {
	Marks  int
	Origin string
}

// denseMarks small objects make a payload that PostgreSQL gives back at
// about 200 kB and that decodes to about 35 times that: beyond the
// expansion limit (24 times plus 1 MiB).
const denseMarks = 20_000

var errMarked = aggregates.Rule("bulk-marked", "a bulk is marked once")

func markBulk(id string, n int) aggregates.Decider[Bulk] {
	return func(a *aggregates.Aggregate[Bulk]) ([]any, error) {
		if a.State.Marks > 0 {
			return nil, aggregates.Refuse(errMarked, "bulk %s is marked already", id)
		}
		return []any{Marked{BulkID: id, Marks: make([]Mark, n), Origin: "handle"}}, nil
	}
}

const bulkSchemaV1 = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Test bulk marked, v1",
  "type": "object",
  "required": ["bulk_id", "marks"],
  "properties": {
    "bulk_id": {"type": "string", "minLength": 1},
    "marks": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}
  },
  "additionalProperties": false
}`

const bulkSchemaV2 = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Test bulk marked, v2",
  "type": "object",
  "required": ["bulk_id", "marks", "origin"],
  "properties": {
    "bulk_id": {"type": "string", "minLength": 1},
    "marks": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    "origin": {"type": "string", "minLength": 1}
  },
  "additionalProperties": false
}`

func bulkRepo(t *testing.T, store eventstore.Store, s *schemas.Registry) *aggregates.Repository[Bulk] {
	t.Helper()
	reg := aggregates.NewRegistry(s)
	aggregates.Register[Marked](reg, "test.bulk.marked", 2)
	reg.RegisterUpcaster("test.bulk.marked", 1, func(p map[string]any) (map[string]any, error) {
		p["origin"] = "v1"
		return p, nil
	})
	reg.Own("test.bulk.")
	if err := reg.Check(); err != nil {
		t.Fatal(err)
	}
	repo, err := aggregates.NewRepository(store, reg, aggregates.Definition[Bulk]{
		Name: "bulk", Source: "test",
		Apply: func(s *Bulk, e aggregates.Event) error {
			d := e.Data.(Marked)
			s.Marks += len(d.Marks)
			s.Origin = d.Origin
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func bulkSchemas(t *testing.T) *schemas.Registry {
	t.Helper()
	s, err := schemas.Load(schemas.Embedded(), fstest.MapFS{
		"test.bulk.marked/v1.json": {Data: []byte(bulkSchemaV1)},
		"test.bulk.marked/v2.json": {Data: []byte(bulkSchemaV2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// densePayload is a test.bulk.marked payload of version 1 or 2 with
// denseMarks marks, each followed by pad spaces.
func densePayload(id string, version, pad int) string {
	origin := ""
	if version >= 2 {
		origin = `"origin":"handle",`
	}
	elem := `{"a":0}` + strings.Repeat(" ", pad)
	return `{"bulk_id":"` + id + `",` + origin + `"marks":[` + strings.Repeat(elem+",", denseMarks-1) + elem + `]}`
}

// insertStored writes an event of bulk id at version 1 straight into the
// events table, as a release without the expansion limit would have, with
// the meta a command of cmdID gives its events.
func insertStored(t *testing.T, pool *pgxpool.Pool, eventID uuid.UUID, id string, schemaVersion int, payload string, cmdID uuid.UUID) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO events (position, id, stream, version, type, source, tenant_id,
	correlation_id, causation_id, schema_version, "timestamp", payload, meta)
SELECT coalesce(max(position), 0) + 1, $1::uuid, 'bulk-' || $2, 1, 'test.bulk.marked', 'test', 't1', $3, $3, $4, now(), $5::jsonb,
	jsonb_build_object('schema_version', $4::integer, 'tenant_id', 't1', 'correlation_id', $3::text, 'causation_id', $3::text)
FROM events`, eventID.String(), id, cmdID.String(), schemaVersion, payload)
	if err != nil {
		t.Fatal(err)
	}
}

func isExpansion(err error) bool {
	var ve *eventstore.ValidationError
	return errors.As(err, &ve) && ve.Rule == "expansion"
}

// TestStoredEventBeyondExpansionLoadsInPostgres: a stored v1 event beyond
// the limit is upcast (decoded) and its aggregate loads, while the same
// payload sent as a new append is still refused with rule expansion.
func TestStoredEventBeyondExpansionLoadsInPostgres(t *testing.T) {
	t.Parallel()
	s := bulkSchemas(t)
	store, pool := pgStore(t, s)
	repo := bulkRepo(t, store, s)
	ctx := context.Background()

	insertStored(t, pool, eventstore.NewID(), "b1", 1, densePayload("b1", 1, 0), eventstore.NewID())
	a, err := repo.Load(ctx, "b1")
	if err != nil {
		t.Fatalf("Load of a stored event beyond the expansion limit: %v", err)
	}
	if got, want := a.State, (Bulk{Marks: denseMarks, Origin: "v1"}); got != want || a.Version != 1 {
		t.Fatalf("Load = v%d %+v, want v1 %+v", a.Version, got, want)
	}

	// Accepted today: spaced out, it is within the limit; PostgreSQL gives
	// it back without the spaces, beyond it.
	appendRaw(t, store, "bulk-b2", "test.bulk.marked", 1, densePayload("b2", 1, 8))
	if _, err := repo.Load(ctx, "b2"); err != nil {
		t.Fatalf("Load of an event accepted within the limit and read back beyond it: %v", err)
	}

	// Writes keep the limit: the stored payload, as read back, is refused
	// as a new append, and so is the same event decided by a command.
	stored, err := store.ReadStream(ctx, "bulk-b1", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Append(ctx, "bulk-b3", eventstore.Any, eventstore.Event{
		Type: "test.bulk.marked", Source: "test", Payload: stored[0].Payload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t1"},
	})
	if !isExpansion(err) {
		t.Fatalf("new append of the stored payload = %v, want a ValidationError with rule expansion", err)
	}
	if _, err := repo.Handle(ctx, "b4", meta(), markBulk("b4", denseMarks)); !isExpansion(err) {
		t.Fatalf("Handle deciding a payload beyond the limit = %v, want a ValidationError with rule expansion", err)
	}
	if n := streamLen(t, store, "bulk-b3") + streamLen(t, store, "bulk-b4"); n != 0 {
		t.Fatalf("refused appends wrote %d events", n)
	}
}

// TestRetryOfStoredEventBeyondExpansionInPostgres: a command whose event
// was stored beyond the limit, retried with the same command id, gets its
// original result from the repository; a retry of the append itself, with
// the same event id and content, gets the original result from the store.
func TestRetryOfStoredEventBeyondExpansionInPostgres(t *testing.T) {
	t.Parallel()
	s := bulkSchemas(t)
	store, pool := pgStore(t, s)
	repo := bulkRepo(t, store, s)
	ctx := context.Background()
	cmd := aggregates.CommandMeta{ID: eventstore.NewID(), TenantID: "t1"}

	// The id the command's event gets, as the repository derives it.
	first, err := bulkRepo(t, memStore(t, s), s).Handle(ctx, "b1", cmd, markBulk("b1", 1))
	if err != nil {
		t.Fatal(err)
	}
	eventID := first.Events[0].ID
	insertStored(t, pool, eventID, "b1", 2, densePayload("b1", 2, 0), cmd.ID)

	res, err := repo.Handle(ctx, "b1", cmd, markBulk("b1", denseMarks))
	if err != nil {
		t.Fatalf("retried command = %v, want its original result", err)
	}
	if len(res.Events) != 1 || res.Events[0].ID != eventID || res.Events[0].Version != 1 {
		t.Fatalf("retried command returned %+v, want the stored event %s at v1", res.Events, eventID)
	}
	if got, want := res.Aggregate.State, (Bulk{Marks: denseMarks, Origin: "handle"}); got != want {
		t.Fatalf("retried command's state = %+v, want %+v", got, want)
	}

	// The append again, with the payload spaced out so that it passes the
	// limit the store checks first: the same JSON value.
	retry, err := store.Append(ctx, "bulk-b1", eventstore.Exact(0), eventstore.Event{
		ID: eventID, Type: "test.bulk.marked", Source: "test", Payload: json.RawMessage(densePayload("b1", 2, 8)),
		Meta: eventstore.Meta{SchemaVersion: 2, TenantID: "t1", CorrelationID: cmd.ID.String(), CausationID: cmd.ID.String()},
	})
	if err != nil {
		t.Fatalf("retried append = %v, want its original result", err)
	}
	if len(retry.Events) != 1 || retry.Events[0].ID != eventID || retry.Events[0].Position != res.Events[0].Position {
		t.Fatalf("retried append returned %+v, want the stored event", retry.Events)
	}
	if n := streamLen(t, store, "bulk-b1"); n != 1 {
		t.Fatalf("stream has %d events after the retries, want 1", n)
	}
}
