package aggregates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// Event is a stored event as an aggregate's Apply sees it: the envelope
// (upcast to the newest schema version) and the payload decoded into its
// registered Go type (a value, not a pointer).
type Event struct {
	eventstore.Event
	Data any
}

// Aggregate is one aggregate's state at a stream version. Version 0 means
// the aggregate has no events yet.
type Aggregate[S any] struct {
	Name    string
	ID      string
	Stream  string
	Version int64
	State   S

	// eventID is the id of the event at Version, which a snapshot of the
	// state records.
	eventID uuid.UUID
	// snapshotVersion and snapshotEventID are the version and event id of
	// the snapshot the state was loaded from (0: none).
	snapshotVersion int64
	snapshotEventID uuid.UUID
	// resnapshot is set when the load discarded a snapshot that the next
	// Save replaces: the command's snapshot is then taken whatever Every
	// says, so that loads stop paying for the bad one.
	resnapshot bool
}

// Exists reports whether the aggregate has at least one event.
func (a *Aggregate[S]) Exists() bool { return a.Version > 0 }

// NotFound is the error a decide function returns when the command needs
// the aggregate to exist.
func (a *Aggregate[S]) NotFound() error { return &NotFoundError{Aggregate: a.Name, ID: a.ID} }

// Definition describes an aggregate type.
type Definition[S any] struct {
	// Name names the aggregate ("course"); its streams are Name + "-" + id.
	Name string
	// Source is the envelope source of the events it writes.
	Source string
	// New returns the state of an aggregate with no events (nil: the zero S).
	New func(id string) S
	// Apply applies one event to the state. It must not fail on any event
	// the aggregate itself can decide; an error stops the load.
	Apply func(s *S, e Event) error
	// Snapshots, when set, opts the aggregate into snapshots.
	Snapshots *SnapshotPolicy
	// SnapshotSchemaVersion is the version of S's JSON encoding, used when
	// Snapshots.SchemaVersion is 0, so that a module can declare it once
	// and its callers need only say how often to snapshot.
	SnapshotSchemaVersion int
	// Retry bounds the retries of Handle on ErrConcurrency.
	Retry Retry
	// Logger receives snapshot problems, which never fail a command
	// (nil: slog.Default()).
	Logger *slog.Logger
}

// Retry is how Handle retries a command that lost a race.
type Retry struct {
	// Attempts is the most times a command is run, the first included.
	// 0 means DefaultAttempts; 1 disables retries.
	Attempts int
	// Backoff is the mean pause before the n-th retry, multiplied by n and
	// jittered (0: DefaultBackoff).
	Backoff time.Duration
}

// Retry defaults.
const (
	DefaultAttempts = 5
	DefaultBackoff  = 2 * time.Millisecond
)

// Decider decides the events a command yields from the aggregate's current
// state. It returns registered event values (or Emit), a *RuleError when an
// invariant refuses the command, a.NotFound() when the aggregate must exist,
// or RefuseAndRecord to refuse and still record events. It may be called
// more than once for one command (after a lost race), so it must not have
// side effects.
type Decider[S any] func(a *Aggregate[S]) ([]any, error)

// Result is what Handle did.
type Result[S any] struct {
	// Aggregate is the state after the command's events.
	Aggregate *Aggregate[S]
	// Events are the appended events (none when the command changed nothing).
	Events []eventstore.Event
	// Attempts is how many times the command ran.
	Attempts int
}

// Repository loads aggregates of one type from an event store and saves
// the events their commands decide. It is safe for concurrent use.
type Repository[S any] struct {
	def   Definition[S]
	store eventstore.Store
	reg   *Registry
	log   *slog.Logger
}

// NewRepository returns a repository for def over store. reg must have
// passed Check.
func NewRepository[S any](store eventstore.Store, reg *Registry, def Definition[S]) (*Repository[S], error) {
	if p := def.Snapshots; p != nil && p.SchemaVersion == 0 {
		cp := *p
		cp.SchemaVersion = def.SnapshotSchemaVersion
		def.Snapshots = &cp
	}
	switch {
	case store == nil:
		return nil, errors.New("aggregates: a store is required")
	case reg == nil || !reg.checked:
		return nil, errors.New("aggregates: the registry must pass Check before use")
	case def.Name == "" || def.Source == "" || def.Apply == nil:
		return nil, errors.New("aggregates: a definition needs Name, Source and Apply")
	case def.Snapshots != nil && (def.Snapshots.Store == nil || def.Snapshots.Every <= 0 || def.Snapshots.SchemaVersion < 1):
		return nil, fmt.Errorf("aggregates: %s: snapshots need a Store, Every > 0 and SchemaVersion >= 1", def.Name)
	}
	if def.Retry.Attempts <= 0 {
		def.Retry.Attempts = DefaultAttempts
	}
	if def.Retry.Backoff <= 0 {
		def.Retry.Backoff = DefaultBackoff
	}
	log := def.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Repository[S]{def: def, store: store, reg: reg, log: log}, nil
}

// Name returns the aggregate's name.
func (r *Repository[S]) Name() string { return r.def.Name }

// Stream returns the stream of the aggregate id: StreamPrefix(Name) + id.
func (r *Repository[S]) Stream(id string) string { return StreamPrefix(r.def.Name) + id }

// StreamPrefix is the category of the aggregate type name's streams: the
// prefix every one of them starts with (name + "-"). The aggregate reads
// and writes only these streams; see domain.StreamCategories for the
// domain modules' categories.
func StreamPrefix(name string) string { return name + "-" }

// Registry returns the registry the repository decodes with.
func (r *Repository[S]) Registry() *Registry { return r.reg }

// Load rebuilds the aggregate id from its newest usable snapshot and the
// events after it. An aggregate with no events is a *NotFoundError.
func (r *Repository[S]) Load(ctx context.Context, id string) (*Aggregate[S], error) {
	a, err := r.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if !a.Exists() {
		return nil, a.NotFound()
	}
	return a, nil
}

// LoadFromEvents rebuilds the aggregate from its events alone, ignoring
// snapshots; it returns an aggregate at version 0 when there are none.
func (r *Repository[S]) LoadFromEvents(ctx context.Context, id string) (*Aggregate[S], error) {
	return r.load(ctx, id, false)
}

func (r *Repository[S]) blank(id string) *Aggregate[S] {
	a := &Aggregate[S]{Name: r.def.Name, ID: id, Stream: r.Stream(id)}
	if r.def.New != nil {
		a.State = r.def.New(id)
	}
	return a
}

// A load reads the whole stream (after the snapshot) in one query: most
// aggregates are short, and long ones should opt into snapshots.
const readAll = 0

func (r *Repository[S]) load(ctx context.Context, id string, useSnapshot bool) (*Aggregate[S], error) {
	a, _, err := r.loadEvents(ctx, id, useSnapshot)
	return a, err
}

// loadEvents is load that also returns the stored events it applied: those
// after the snapshot, or the whole stream when there was none.
func (r *Repository[S]) loadEvents(ctx context.Context, id string, useSnapshot bool) (*Aggregate[S], []eventstore.Event, error) {
	if id == "" {
		// No aggregate has the empty id (Handle refuses it first).
		return nil, nil, &NotFoundError{Aggregate: r.def.Name}
	}
	a := r.blank(id)
	if p := r.def.Snapshots; p != nil && useSnapshot {
		if err := r.restore(ctx, a, p); err != nil {
			return nil, nil, err
		}
	}
	// After a snapshot, the read starts at the snapshot's own version: its
	// event proves that the log has reached the snapshot (a stream
	// truncated or recreated shorter has not), in the same round trip.
	from := a.Version + 1
	if a.snapshotVersion > 0 {
		from = a.snapshotVersion
	}
	events, err := r.store.ReadStream(ctx, a.Stream, from, readAll)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		if a.snapshotVersion > 0 {
			// A snapshot of a stream the log does not have: trust the log.
			r.log.WarnContext(ctx, "aggregates: snapshot without events, ignored", "stream", a.Stream, "snapshot_version", a.snapshotVersion)
			return r.loadEvents(ctx, id, false)
		}
		return a, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("aggregates: load %s: %w", a.Stream, err)
	}
	if a.snapshotVersion > 0 {
		if len(events) == 0 || events[0].Version != a.snapshotVersion {
			r.log.WarnContext(ctx, "aggregates: snapshot ahead of the log, ignored", "stream", a.Stream, "snapshot_version", a.snapshotVersion)
			return r.rebuild(ctx, id, a.snapshotEventID == uuid.Nil)
		}
		// The version says the log has reached the snapshot; only the
		// event's id says the snapshot was folded from this log.
		switch {
		case a.snapshotEventID == uuid.Nil:
			r.log.InfoContext(ctx, "aggregates: snapshot records no event id (written before it did), rebuilding from events",
				"stream", a.Stream, "snapshot_version", a.snapshotVersion)
			return r.rebuild(ctx, id, true)
		case events[0].ID != a.snapshotEventID:
			r.log.WarnContext(ctx, "aggregates: snapshot taken at another event than the log's, ignored",
				"stream", a.Stream, "snapshot_version", a.snapshotVersion, "snapshot_event_id", a.snapshotEventID, "log_event_id", events[0].ID)
			return r.rebuild(ctx, id, true)
		}
		a.eventID = events[0].ID
		events = events[1:] // the snapshot holds it
	}
	if err := r.replay(a, events); err != nil {
		return nil, nil, err
	}
	return a, events, nil
}

// rebuild loads the aggregate from its events alone, after its snapshot
// was discarded; replace says whether the next Save replaces that
// snapshot (see SnapshotStore.Save), and so whether to take one after
// the next command.
func (r *Repository[S]) rebuild(ctx context.Context, id string, replace bool) (*Aggregate[S], []eventstore.Event, error) {
	a, events, err := r.loadEvents(ctx, id, false)
	if err != nil {
		return nil, nil, err
	}
	a.resnapshot = replace
	return a, events, nil
}

// replay applies stored events, which must follow a's version without a
// hole, to a.
func (r *Repository[S]) replay(a *Aggregate[S], events []eventstore.Event) error {
	for _, e := range events {
		if e.Version != a.Version+1 {
			return fmt.Errorf("aggregates: load %s: event %s has version %d after %d", a.Stream, e.ID, e.Version, a.Version)
		}
		if err := r.apply(a, e); err != nil {
			return err
		}
	}
	return nil
}

// restore loads the snapshot into a, or leaves a blank when there is none
// or it cannot be read. Its only error is the context's end: the load
// cannot go on then, and the snapshot is not to blame.
func (r *Repository[S]) restore(ctx context.Context, a *Aggregate[S], p *SnapshotPolicy) error {
	s, ok, err := p.Store.Load(ctx, a.Stream, p.SchemaVersion)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("aggregates: load %s: snapshot: %w", a.Stream, ctx.Err())
		}
		r.log.WarnContext(ctx, "aggregates: snapshot unreadable, rebuilding from events", "stream", a.Stream, "err", err)
		return nil
	}
	if !ok || s.Version <= 0 {
		return nil
	}
	// JSON null decodes into a struct without an error and leaves the
	// blank state, claimed at the snapshot's version: a damaged row, not
	// a state (one that encodes as null is rebuilt, at worst).
	if bytes.Equal(bytes.TrimSpace(s.State), []byte("null")) {
		r.log.WarnContext(ctx, "aggregates: snapshot state is null, rebuilding from events", "stream", a.Stream, "version", s.Version)
		return nil
	}
	state := r.blank(a.ID).State
	if err := json.Unmarshal(s.State, &state); err != nil {
		r.log.WarnContext(ctx, "aggregates: snapshot does not decode, rebuilding from events", "stream", a.Stream, "version", s.Version, "err", err)
		return nil
	}
	// JSON decodes into a struct whatever keys it has: a snapshot of
	// another shape of S (a field added, renamed or dropped without a new
	// SchemaVersion) leaves the fields it lacks at New's values, a state
	// the log never had. Only a snapshot that is what its state encodes
	// to is used; the next command replaces the others.
	if again, err := json.Marshal(state); err != nil || !eventstore.JSONEqual(s.State, again) {
		r.log.WarnContext(ctx, "aggregates: snapshot is not what its state encodes to (the state type changed without a new SchemaVersion?), rebuilding from events",
			"stream", a.Stream, "version", s.Version)
		a.resnapshot = true
		return nil
	}
	a.State, a.Version, a.snapshotVersion, a.snapshotEventID = state, s.Version, s.Version, s.EventID
	return nil
}

func (r *Repository[S]) apply(a *Aggregate[S], e eventstore.Event) error {
	up, data, err := r.reg.decode(e)
	if err != nil {
		return fmt.Errorf("aggregates: load %s: %w", a.Stream, err)
	}
	if err := r.def.Apply(&a.State, Event{Event: up, Data: data}); err != nil {
		return fmt.Errorf("aggregates: apply %s v%d (%s): %w", a.Stream, e.Version, e.Type, err)
	}
	a.Version, a.eventID = e.Version, e.ID
	return nil
}

// Handle runs a command against the aggregate id: load, decide, append
// with the loaded version as the expected version. When another writer
// got there first (ErrConcurrency) it reloads and decides again, up to
// Retry.Attempts times, then returns the *eventstore.ConcurrencyError.
// A refused command returns the decider's error and writes nothing. A
// command with an empty id is refused with ErrMissingID before anything is
// read.
//
// A command handled again with the command id of one that already landed
// (a client retrying after a timeout) returns the first Handle's result:
// its stored events, with the aggregate as loaded now, and the refusal it
// recorded, if any, even when the state, which now holds those events,
// makes the command decide otherwise. When that id landed with events the
// command does not decide, Handle returns a *CommandReusedError.
func (r *Repository[S]) Handle(ctx context.Context, id string, cmd CommandMeta, decide Decider[S]) (Result[S], error) {
	if id == "" {
		return Result[S]{}, &RuleError{Aggregate: r.def.Name, Rule: ErrMissingID.Rule,
			Message: fmt.Sprintf("empty %s id: the command names no %s", r.def.Name, r.def.Name)}
	}
	cmd = cmd.withDefaults()
	useSnapshot := true
	for attempt := 1; ; attempt++ {
		a, loaded, err := r.loadEvents(ctx, id, useSnapshot)
		if err != nil {
			return Result[S]{Attempts: attempt}, err
		}
		decided, err := decide(a)
		var refusal error
		var rec *RecordedRefusal
		switch {
		case errors.As(err, &rec):
			decided, refusal = rec.Events, r.annotate(a, rec.Err)
		case err != nil:
			return r.unlessLanded(ctx, a, loaded, cmd, decide, attempt, false, r.annotate(a, err))
		}
		if len(decided) == 0 {
			return Result[S]{Aggregate: a, Attempts: attempt}, refusal
		}
		events, err := r.envelopes(cmd, decided)
		if err != nil {
			return Result[S]{Aggregate: a, Attempts: attempt}, err
		}
		res, err := r.store.Append(ctx, a.Stream, eventstore.Exact(a.Version), events...)
		if err != nil {
			var ce *eventstore.ConcurrencyError
			if errors.As(err, &ce) && attempt < r.def.Retry.Attempts {
				if ce.Actual < a.Version {
					useSnapshot = false // the snapshot is ahead of the log
				}
				if err := r.pause(ctx, attempt); err != nil {
					return Result[S]{Aggregate: a, Attempts: attempt}, err
				}
				continue
			}
			var de *eventstore.DuplicateEventError
			if errors.As(err, &de) && de.Stream != a.Stream {
				// The command id landed on another aggregate, which may be
				// another tenant's: its stream is not the caller's to learn.
				return Result[S]{Aggregate: a, Attempts: attempt}, &CommandReusedError{Aggregate: r.def.Name, ID: id, CommandID: cmd.ID}
			}
			err = fmt.Errorf("aggregates: %s %s: append: %w", r.def.Name, id, err)
			if errors.Is(err, eventstore.ErrConcurrency) || errors.Is(err, eventstore.ErrDuplicateEvent) {
				return r.unlessLanded(ctx, a, loaded, cmd, decide, attempt, true, err)
			}
			return Result[S]{Aggregate: a, Attempts: attempt}, err
		}
		if len(res.Events) > 0 && res.Events[0].Version <= a.Version {
			// The store answered with events it already held: this command
			// was handled before (a retry after a timeout, with the same
			// command id) and its events are part of the state just
			// loaded. Applying them again would count them twice, in the
			// result and in the snapshot taken from it.
			return Result[S]{Aggregate: a, Events: res.Events, Attempts: attempt}, refusal
		}
		if len(res.Events) > 0 && res.Events[0].Version > a.Version+1 {
			// The same command, handled at the same time elsewhere (a
			// redelivery), landed these events after others that this
			// state lacks. Applied to it they would make a state that
			// never was, returned and snapshotted; the state after them
			// is the log's up to their last version.
			if err := r.catchUp(ctx, a, res.Events[len(res.Events)-1].Version); err != nil {
				return Result[S]{Events: res.Events, Attempts: attempt}, fmt.Errorf("aggregates: %s %s: command %s landed at v%d; reading the state after it: %w", r.def.Name, id, cmd.ID, res.Events[0].Version, err)
			}
			r.maybeSnapshot(ctx, a)
			return Result[S]{Aggregate: a, Events: res.Events, Attempts: attempt}, refusal
		}
		// The events are applied as stored, decoded as a load decodes
		// them, not as decided: a value that JSON does not carry as it
		// is (a string that is not UTF-8, a field JSON skips) would make
		// the result, and the snapshot taken from it, a state the log
		// never had.
		for _, e := range res.Events {
			if err := r.apply(a, e); err != nil {
				return Result[S]{Aggregate: a, Events: res.Events, Attempts: attempt}, err
			}
		}
		r.maybeSnapshot(ctx, a)
		return Result[S]{Aggregate: a, Events: res.Events, Attempts: attempt}, refusal
	}
}

// catchUp applies to a the stored events after its version up to version
// to.
func (r *Repository[S]) catchUp(ctx context.Context, a *Aggregate[S], to int64) error {
	events, err := r.store.ReadStream(ctx, a.Stream, a.Version+1, int(to-a.Version))
	if err != nil {
		return fmt.Errorf("aggregates: load %s: %w", a.Stream, err)
	}
	if err := r.replay(a, events); err != nil {
		return err
	}
	if a.Version != to {
		return fmt.Errorf("aggregates: load %s: the stream ends at v%d, before v%d", a.Stream, a.Version, to)
	}
	return nil
}

// annotate names the aggregate in a RuleError that does not, on a copy:
// a decider may return a shared sentinel as it is.
func (r *Repository[S]) annotate(a *Aggregate[S], err error) error {
	if re, ok := err.(*RuleError); ok && re.Aggregate == "" {
		c := *re
		c.Aggregate, c.ID = a.Name, a.ID
		return &c
	}
	return err
}

func (r *Repository[S]) pause(ctx context.Context, attempt int) error {
	d := time.Duration(float64(r.def.Retry.Backoff) * float64(attempt) * (0.5 + rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// envelopes turns decided values into events to append.
func (r *Repository[S]) envelopes(cmd CommandMeta, decided []any) ([]eventstore.Event, error) {
	events := make([]eventstore.Event, len(decided))
	for i, d := range decided {
		tenant := cmd.TenantID
		if em, ok := d.(Emit); ok {
			d = em.Data
			if em.TenantID != "" {
				tenant = em.TenantID
			}
		}
		if v := reflect.ValueOf(d); v.Kind() == reflect.Pointer && !v.IsNil() {
			d = v.Elem().Interface()
		}
		typ, version, payload, err := r.reg.encode(d)
		if err != nil {
			return nil, fmt.Errorf("aggregates: %s: %w", r.def.Name, err)
		}
		events[i] = eventstore.Event{
			ID:      cmd.eventID(i),
			Type:    typ,
			Source:  r.def.Source,
			Payload: payload,
			Meta: eventstore.Meta{
				SchemaVersion: version,
				Producer:      cmd.Producer,
				TenantID:      tenant,
				CorrelationID: cmd.CorrelationID,
				CausationID:   cmd.CausationID,
			},
		}
	}
	return events, nil
}

func (r *Repository[S]) maybeSnapshot(ctx context.Context, a *Aggregate[S]) {
	p := r.def.Snapshots
	if p == nil || (!a.resnapshot && a.Version-a.snapshotVersion < p.Every) {
		return
	}
	state, err := json.Marshal(a.State)
	if err != nil {
		r.log.WarnContext(ctx, "aggregates: snapshot not taken: state does not encode", "stream", a.Stream, "err", err)
		return
	}
	s := Snapshot{Stream: a.Stream, Aggregate: r.def.Name, Version: a.Version, EventID: a.eventID, SchemaVersion: p.SchemaVersion, State: state}
	if err := p.Store.Save(ctx, s); err != nil {
		r.log.WarnContext(ctx, "aggregates: snapshot not saved", "stream", a.Stream, "version", a.Version, "err", err)
		return
	}
	a.snapshotVersion, a.snapshotEventID, a.resnapshot = a.Version, a.eventID, false
}

// TakeSnapshot loads the aggregate from events and stores a snapshot of it
// now, whatever Every says (for tools and benchmarks).
func (r *Repository[S]) TakeSnapshot(ctx context.Context, id string) error {
	p := r.def.Snapshots
	if p == nil {
		return fmt.Errorf("aggregates: %s has no snapshot policy", r.def.Name)
	}
	a, err := r.load(ctx, id, false)
	if err != nil {
		return err
	}
	if !a.Exists() {
		return a.NotFound()
	}
	state, err := json.Marshal(a.State)
	if err != nil {
		return fmt.Errorf("aggregates: snapshot %s: %w", a.Stream, err)
	}
	return p.Store.Save(ctx, Snapshot{Stream: a.Stream, Aggregate: r.def.Name, Version: a.Version, EventID: a.eventID, SchemaVersion: p.SchemaVersion, State: state})
}

// Command is a command on aggregates of state S: it names its aggregate
// and decides its events from the aggregate's state.
type Command[S any] interface {
	AggregateID() string
	Decide(a *Aggregate[S]) ([]any, error)
}

// Execute handles c against the aggregate it names (see Handle).
func (r *Repository[S]) Execute(ctx context.Context, meta CommandMeta, c Command[S]) (Result[S], error) {
	return r.Handle(ctx, c.AggregateID(), meta, c.Decide)
}
