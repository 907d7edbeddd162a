package aggregates_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

func TestHandleAppendsAndLoads(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		res, err := repo.Handle(ctx, "c1", meta(), add("c1", i))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res.Aggregate.Version, int64(i); got != want {
			t.Fatalf("version after command %d = %d, want %d", i, got, want)
		}
		if len(res.Events) != 1 || res.Attempts != 1 {
			t.Fatalf("result = %d events, %d attempts; want 1, 1", len(res.Events), res.Attempts)
		}
	}
	a, err := repo.Load(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.State, (Counter{Total: 6, Adds: 3}); got != want || a.Version != 3 {
		t.Fatalf("loaded %+v at v%d, want %+v at v3", got, a.Version, want)
	}
	evs, _ := store.ReadStream(ctx, "counter-c1", 1, 0)
	if got, want := evs[0].Source, "test"; got != want {
		t.Fatalf("source = %q, want %q", got, want)
	}
}

func TestLoadMissingIsNotFound(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	repo := counterRepo(t, memStore(t, s), testRegistry(t, s), nil)
	_, err := repo.Load(context.Background(), "nobody")
	var nf *aggregates.NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, aggregates.ErrNotFound) || nf.Aggregate != "counter" || nf.ID != "nobody" {
		t.Fatalf("Load = %v, want *NotFoundError{counter nobody}", err)
	}
}

// A command with an empty aggregate id is the caller's mistake, refused
// with aggregate-id-required, naming the aggregate type and the missing
// id, before the decider runs; nothing is written. Load of the empty id is
// not found, as for any id no aggregate has. Before, both were an untyped
// "aggregates: counter: empty id" that matched neither ErrRefused nor
// ErrNotFound.
func TestEmptyIDIsRefused(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	decided := false
	res, err := repo.Handle(ctx, "", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		decided = true
		return []any{Added{N: 1}}, nil
	})
	var re *aggregates.RuleError
	if !errors.As(err, &re) || !errors.Is(err, aggregates.ErrMissingID) || !errors.Is(err, aggregates.ErrRefused) {
		t.Fatalf("Handle(\"\") = %v, want the aggregate-id-required RuleError", err)
	}
	if re.Aggregate != "counter" || re.ID != "" || !strings.Contains(err.Error(), "counter id") || strings.Contains(err.Error(), "counter :") {
		t.Fatalf("the refusal does not name what is missing: %+v (%v)", re, err)
	}
	if decided || res.Aggregate != nil || len(res.Events) != 0 {
		t.Fatalf("decided %v, result %+v", decided, res)
	}
	if head, err := store.Head(ctx); err != nil || head != eventstore.Start {
		t.Fatalf("head = %v, %v: something was written", head, err)
	}
	for name, load := range map[string]func(context.Context, string) (*aggregates.Aggregate[Counter], error){
		"Load": repo.Load, "LoadFromEvents": repo.LoadFromEvents,
	} {
		if _, err := load(ctx, ""); !errors.Is(err, aggregates.ErrNotFound) {
			t.Fatalf("%s(\"\") = %v, want not found", name, err)
		}
	}
}

func TestRefusedCommandWritesNothing(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	if _, err := repo.Handle(ctx, "c1", meta(), add("c1", 1000)); err != nil {
		t.Fatal(err)
	}
	for range limit/1000 - 1 {
		if _, err := repo.Handle(ctx, "c1", meta(), add("c1", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := repo.Handle(ctx, "c1", meta(), add("c1", 1))
	var re *aggregates.RuleError
	if !errors.As(err, &re) || !errors.Is(err, ErrLimit) || !errors.Is(err, aggregates.ErrRefused) {
		t.Fatalf("Handle = %v, want the counter-limit RuleError", err)
	}
	if re.Rule != "counter-limit" || re.Aggregate != "counter" || re.ID != "c1" {
		t.Fatalf("RuleError = %+v, want rule, aggregate and id filled in", re)
	}
	if got, want := streamLen(t, store, "counter-c1"), limit/1000; got != want {
		t.Fatalf("stream has %d events, want %d", got, want)
	}
}

func TestNotFoundFromDecideWritesNothing(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	_, err := repo.Handle(context.Background(), "ghost", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		if !a.Exists() {
			return nil, a.NotFound()
		}
		return []any{Added{CounterID: "ghost", N: 1}}, nil
	})
	if !errors.Is(err, aggregates.ErrNotFound) {
		t.Fatalf("Handle = %v, want ErrNotFound", err)
	}
	if n := streamLen(t, store, "counter-ghost"); n != 0 {
		t.Fatalf("stream has %d events, want 0", n)
	}
}

func TestPayloadBreakingItsSchemaWritesNothing(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	_, err := repo.Handle(ctx, "c1", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Added{CounterID: "c1", N: 1}, Added{CounterID: "c1", N: 0}}, nil // n minimum is 1
	})
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) || ve.Index != 1 || ve.Pointer != "/payload/n" || ve.Rule != "minimum" {
		t.Fatalf("Handle = %v, want a ValidationError on event 1 /payload/n [minimum]", err)
	}
	if n := streamLen(t, store, "counter-c1"); n != 0 {
		t.Fatalf("stream has %d events, want 0 (the batch is atomic)", n)
	}
}

func TestUnregisteredEventValueIsAnError(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	type Stray struct{ A int }
	_, err := repo.Handle(context.Background(), "c1", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Stray{1}}, nil
	})
	if err == nil {
		t.Fatal("Handle accepted an unregistered event value")
	}
	if n := streamLen(t, store, "counter-c1"); n != 0 {
		t.Fatalf("stream has %d events, want 0", n)
	}
}

func TestNoEventsIsANoOp(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	res, err := repo.Handle(context.Background(), "c1", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) { return nil, nil })
	if err != nil || len(res.Events) != 0 || streamLen(t, store, "counter-c1") != 0 {
		t.Fatalf("Handle = %v, %d events; want a no-op", err, len(res.Events))
	}
}

func TestEventsCarryTenantCorrelationAndCausation(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	cmdID := uuid.New()
	cmd := aggregates.CommandMeta{ID: cmdID, TenantID: "acme", CorrelationID: "flow-1", Producer: "test-suite"}
	res, err := repo.Handle(ctx, "c1", cmd, func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Added{CounterID: "c1", N: 1}, &Added{CounterID: "c1", N: 2}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res.Events {
		m := e.Meta
		if m.TenantID != "acme" || m.CorrelationID != "flow-1" || m.CausationID != cmdID.String() || m.Producer != "test-suite" {
			t.Fatalf("event %d meta = %+v, want tenant acme, correlation flow-1, causation %s", i, m, cmdID)
		}
		if e.ID != uuid.NewSHA1(cmdID, []byte("event/"+string(rune('0'+i)))) {
			t.Fatalf("event %d id %s is not derived from the command id", i, e.ID)
		}
	}
	if res.Aggregate.State.Total != 3 {
		t.Fatalf("state after pointer and value events = %+v, want total 3", res.Aggregate.State)
	}

	// Without a correlation id, the command's id starts the flow.
	res, err = repo.Handle(ctx, "c1", aggregates.CommandMeta{TenantID: "acme"}, add("c1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Events[0].Meta; m.CorrelationID == "" || m.CorrelationID != m.CausationID {
		t.Fatalf("meta = %+v, want correlation = causation = the new command id", m)
	}

	// A reaction's command: caused by the event, same correlation.
	cause := res.Events[0]
	rc := aggregates.FromEvent(cause, "test-reaction")
	res2, err := repo.Handle(ctx, "c2", rc, add("c2", 1))
	if err != nil {
		t.Fatal(err)
	}
	if m := res2.Events[0].Meta; m.CausationID != cause.ID.String() || m.CorrelationID != cause.Meta.CorrelationID || m.TenantID != "acme" {
		t.Fatalf("reaction meta = %+v, want causation %s and correlation %s", m, cause.ID, cause.Meta.CorrelationID)
	}
	if again := aggregates.FromEvent(cause, "test-reaction"); again.ID != rc.ID {
		t.Fatal("FromEvent is not deterministic")
	}
	if other := aggregates.FromEvent(cause, "other-reaction"); other.ID == rc.ID {
		t.Fatal("two reactions to one event share a command id")
	}
}

func TestRecordedRefusalAppendsAndReturnsTheError(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	res, err := repo.Handle(context.Background(), "c1", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return nil, aggregates.RefuseAndRecord(aggregates.Refuse(ErrLimit, "no"), aggregates.Emit{Data: Alarm{CounterID: "c1", Reason: "probe"}, TenantID: "owner"})
	})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("Handle = %v, want the refusal", err)
	}
	if len(res.Events) != 1 || res.Events[0].Meta.TenantID != "owner" || res.Aggregate.State.Alarms != 1 {
		t.Fatalf("recorded %d events (%+v), want one alarm for tenant owner", len(res.Events), res.Events)
	}
}

// racingStore appends a competing event just before the first n appends
// of the repository, as another writer would.
type racingStore struct {
	eventstore.Store
	races int
}

func (r *racingStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if r.races > 0 {
		r.races--
		if _, err := r.Store.Append(ctx, stream, eventstore.Any, eventstore.Event{Type: "test.counter.added", Source: "rival",
			Payload: []byte(`{"counter_id":"c1","n":10}`), Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t1"}}); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	return r.Store.Append(ctx, stream, expected, events...)
}

func TestHandleRetriesALostRace(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	reg := testRegistry(t, s)
	store := &racingStore{Store: memStore(t, s), races: 2}
	repo := counterRepo(t, store, reg, nil)
	decisions := 0
	res, err := repo.Handle(context.Background(), "c1", meta(), func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		decisions++
		return add("c1", 1)(a)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 3 || decisions != 3 {
		t.Fatalf("attempts = %d, decisions = %d, want 3 and 3", res.Attempts, decisions)
	}
	if got, want := res.Aggregate.State.Total, 21; got != want || res.Aggregate.Version != 3 {
		t.Fatalf("state = %+v at v%d, want total %d at v3 (two rivals, then ours)", res.Aggregate.State, res.Aggregate.Version, want)
	}
}

func TestHandleGivesUpAfterBoundedAttempts(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	reg := testRegistry(t, s)
	mem := memStore(t, s)
	store := &racingStore{Store: mem, races: 10}
	repo := counterRepo(t, store, reg, func(d *aggregates.Definition[Counter]) { d.Retry = aggregates.Retry{Attempts: 2} })
	res, err := repo.Handle(context.Background(), "c1", meta(), add("c1", 1))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrConcurrency) || res.Attempts != 2 {
		t.Fatalf("Handle = %v after %d attempts, want ErrConcurrency after 2", err, res.Attempts)
	}
	evs, _ := mem.ReadStream(context.Background(), "counter-c1", 1, 0)
	for _, e := range evs {
		if e.Source != "rival" {
			t.Fatalf("our event %s was written despite the error", e.ID)
		}
	}
}

// A decider may return a rule sentinel as it is; the repository names the
// aggregate on a copy and leaves the sentinel alone.
func TestSentinelReturnedAsIsIsNotMutated(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	repo := counterRepo(t, memStore(t, s), testRegistry(t, s), nil)
	_, err := repo.Handle(context.Background(), "c9", meta(), func(*aggregates.Aggregate[Counter]) ([]any, error) { return nil, ErrLimit })
	var re *aggregates.RuleError
	if !errors.As(err, &re) || re.ID != "c9" || re.Aggregate != "counter" {
		t.Fatalf("Handle = %#v, want the rule with the aggregate named", err)
	}
	if ErrLimit.ID != "" || ErrLimit.Aggregate != "" {
		t.Fatalf("the sentinel was mutated: %+v", ErrLimit)
	}
}

// A new command's id is version 7 (time-ordered); the ids of its events,
// and of the commands reactions derive from them, keep its millisecond
// timestamp, so the log's id index grows at its right edge. They are still
// derived deterministically: the same command id gives the same event ids.
func TestDerivedIDsKeepTheCommandsTime(t *testing.T) {
	s := testSchemas(t)
	store := memStore(t, s)
	repo := counterRepo(t, store, testRegistry(t, s), nil)
	ctx := context.Background()
	cmdID := uuid.Must(uuid.NewV7())
	cmd := aggregates.CommandMeta{ID: cmdID, TenantID: "acme"}
	two := func(a *aggregates.Aggregate[Counter]) ([]any, error) {
		return []any{Added{CounterID: "t1", N: 1}, Added{CounterID: "t1", N: 2}}, nil
	}
	res, err := repo.Handle(ctx, "t1", cmd, two)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || res.Events[0].ID == res.Events[1].ID {
		t.Fatalf("events %+v: want two with distinct ids", res.Events)
	}
	for i, e := range res.Events {
		if e.ID.Version() != 7 || e.ID.Variant() != uuid.RFC4122 || string(e.ID[:6]) != string(cmdID[:6]) {
			t.Fatalf("event %d id %s (version %d): want version 7 with the timestamp of command %s", i, e.ID, e.ID.Version(), cmdID)
		}
		if e.ID == cmdID {
			t.Fatalf("event %d has the command's own id", i)
		}
	}

	// The same command again: the same ids, so the store sees a retry.
	again, err := repo.Handle(ctx, "t1", cmd, two)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again.Events {
		if again.Events[i].ID != res.Events[i].ID {
			t.Fatalf("retried command: event %d id %s, first time %s", i, again.Events[i].ID, res.Events[i].ID)
		}
	}
	if got, err := store.ReadStream(ctx, res.Events[0].Stream, 1, 10); err != nil || len(got) != 2 {
		t.Fatalf("stream after a retried command: %d events (%v), want 2", len(got), err)
	}

	// A reaction's command id follows the causing event's time; a second
	// reaction to the same event gets another id.
	r1 := aggregates.FromEvent(res.Events[0], "notify")
	r2 := aggregates.FromEvent(res.Events[0], "audit")
	if r1.ID.Version() != 7 || string(r1.ID[:6]) != string(cmdID[:6]) || r1.ID == r2.ID {
		t.Fatalf("reaction command ids %s, %s: want distinct version 7 ids with the event's timestamp", r1.ID, r2.ID)
	}
	if aggregates.FromEvent(res.Events[0], "notify").ID != r1.ID {
		t.Fatal("a redelivered event gave its reaction another command id")
	}
	// Ids that carry no time (version 4) still derive plain name-based ids.
	old := eventstore.Event{ID: uuid.New()}
	if v := aggregates.FromEvent(old, "notify").ID.Version(); v != 5 {
		t.Fatalf("reaction to a version 4 event id: command id version %d, want 5", v)
	}
}

// A command id that landed on one aggregate, sent with a command on
// another (a client's bug, or another tenant's command carrying an id it
// learned), is ErrCommandReused (and ErrDuplicateEvent) that names neither
// the aggregate where the id landed nor its stream, which may be another
// tenant's. Before, the store's DuplicateEventError, wrapped as it was,
// told the caller that stream ("counter-<id>").
func TestCommandIDReusedOnAnotherAggregateNamesNotIts(t *testing.T) {
	t.Parallel()
	s := testSchemas(t)
	for name, store := range map[string]eventstore.Store{"memory": memStore(t, s), "postgres": func() eventstore.Store { st, _ := pgStore(t, s); return st }()} {
		t.Run(name, func(t *testing.T) {
			repo := counterRepo(t, store, testRegistry(t, s), nil)
			ctx := context.Background()
			m := meta()
			m.ID = uuid.New()
			secret := "secret-" + uuid.NewString()
			if _, err := repo.Handle(ctx, secret, m, add(secret, 1)); err != nil {
				t.Fatal(err)
			}
			other := uuid.NewString()
			before, err := store.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			o := aggregates.CommandMeta{TenantID: "t2", ID: m.ID}
			res, err := repo.Handle(ctx, other, o, add(other, 1))
			if !errors.Is(err, aggregates.ErrCommandReused) || !errors.Is(err, eventstore.ErrDuplicateEvent) {
				t.Fatalf("Handle = %v, want ErrCommandReused", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error names the aggregate where the id landed: %v", err)
			}
			if len(res.Events) != 0 {
				t.Fatalf("events %v", res.Events)
			}
			if after, err := store.Head(ctx); err != nil || after != before {
				t.Fatalf("head %v -> %v (%v): something was written", before, after, err)
			}
		})
	}
}
