package aggregates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// A client that timed out after its command committed retries it with the
// same command id. When the command decides the same events again, the
// store's idempotent append answers with the stored ones. But the state
// now holds the command's own events, and many commands decide otherwise
// the second time (a Cancel finds the mission cancelled and is refused; a
// ConsumeApproval finds the approval consumed and records a refusal, whose
// event ids collide with the stored ones). Telling that caller its
// successful command failed is wrong, so every failure of Handle that a
// landed command can cause (a refusal, a duplicate event id, a lost race)
// first asks whether the command landed: whether its first event id,
// derived from the command id, is in the stream. The common path pays
// nothing; a failure pays a scan of the events already loaded, plus a read
// of the events before the snapshot when the aggregate came from one, and
// a failed append a read of the events after the load (the same command,
// handled at the same time elsewhere, may have landed there).

// unlessLanded returns what Handle returns for a command that failed with
// failure at attempt: the original result when the command had already
// landed, a *CommandReusedError when its id landed with another command's
// events, failure otherwise.
//
// An append that failed (appended) may also have met the command's events
// landed after the load, by the same command handled at the same time
// elsewhere (a redelivery) from a newer state: the events after the load
// are read too, and the aggregate returned is then the state after the
// command's events.
func (r *Repository[S]) unlessLanded(ctx context.Context, a *Aggregate[S], loaded []eventstore.Event, cmd CommandMeta, decide Decider[S], attempt int, appended bool, failure error) (Result[S], error) {
	res := Result[S]{Aggregate: a, Attempts: attempt}
	before, stored, err := r.findLanded(ctx, a, loaded, cmd.eventID(0), appended)
	if err != nil {
		return res, fmt.Errorf("aggregates: %s %s: command %s failed (%v) and whether it had already landed is unknown: %w", a.Name, a.ID, cmd.ID, failure, err)
	}
	if stored == nil {
		return res, failure
	}
	events, refusal, err := r.original(a, before, stored, cmd, decide)
	if err != nil {
		return res, err
	}
	if last := events[len(events)-1].Version; last > a.Version {
		if err := r.catchUp(ctx, a, last); err != nil {
			return Result[S]{Events: events, Attempts: attempt}, fmt.Errorf("aggregates: %s %s: command %s landed at v%d; reading the state after it: %w", a.Name, a.ID, cmd.ID, events[0].Version, err)
		}
	}
	res.Events = events
	return res, refusal
}

// findLanded looks for the event id first in a's stream, up to a's version
// or, when later is set, to its end. When it is there, before holds the
// events preceding it (from version 1) and stored the events from it on.
// Both are nil when it is not there.
func (r *Repository[S]) findLanded(ctx context.Context, a *Aggregate[S], loaded []eventstore.Event, first uuid.UUID, later bool) (before, stored []eventstore.Event, err error) {
	is := func(e eventstore.Event) bool { return e.ID == first }
	// The events up to base were not loaded: the state came from a
	// snapshot at base.
	base := a.Version
	if len(loaded) > 0 {
		base = loaded[0].Version - 1
	}
	if i := slices.IndexFunc(loaded, is); i >= 0 {
		if base == 0 {
			return loaded[:i], loaded[i:], nil
		}
		// The command's events follow the snapshot; the state it was
		// decided against is rebuilt from the log, which is trusted over
		// any snapshot.
		before, err := r.readStream(ctx, a.Stream, loaded[i].Version-1)
		return before, loaded[i:], err
	}
	if base > 0 {
		head, err := r.readStream(ctx, a.Stream, base)
		if err != nil {
			return nil, nil, err
		}
		if i := slices.IndexFunc(head, is); i >= 0 {
			return head[:i], append(head[i:len(head):len(head)], loaded...), nil
		}
	}
	if !later {
		return nil, nil, nil
	}
	after, err := r.store.ReadStream(ctx, a.Stream, a.Version+1, readAll)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("aggregates: read %s: %w", a.Stream, err)
	}
	i := slices.IndexFunc(after, is)
	if i < 0 {
		return nil, nil, nil
	}
	if base == 0 {
		return append(slices.Clip(loaded), after[:i]...), after[i:], nil
	}
	before, err = r.readStream(ctx, a.Stream, after[i].Version-1)
	return before, after[i:], err
}

// readStream reads the first n events of stream (none when n is 0).
func (r *Repository[S]) readStream(ctx context.Context, stream string, n int64) ([]eventstore.Event, error) {
	if n <= 0 {
		return nil, nil
	}
	events, err := r.store.ReadStream(ctx, stream, 1, int(n))
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		// A snapshot ahead of a log that has lost its stream: nothing
		// landed there.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("aggregates: read %s: %w", stream, err)
	}
	return events, nil
}

// original re-decides the command against the state it was first decided
// against (the events before its own: its append expected exactly that
// version) and compares the result with what is stored from there. The
// same events, as the store compares them, mean this is a retry of that
// command: the stored events are its result, with the refusal it recorded,
// if any. Anything else means the command id was used before by another
// command.
func (r *Repository[S]) original(a *Aggregate[S], before, stored []eventstore.Event, cmd CommandMeta, decide Decider[S]) ([]eventstore.Event, error, error) {
	reused := &CommandReusedError{Aggregate: a.Name, ID: a.ID, CommandID: cmd.ID, Version: stored[0].Version}
	then := r.blank(a.ID)
	if err := r.replay(then, before); err != nil {
		return nil, nil, err
	}
	if then.Version != stored[0].Version-1 {
		return nil, nil, fmt.Errorf("aggregates: load %s: event %s has version %d after %d", a.Stream, stored[0].ID, stored[0].Version, then.Version)
	}
	decided, err := decide(then)
	var refusal error
	var rec *RecordedRefusal
	switch {
	case errors.As(err, &rec):
		decided, refusal = rec.Events, r.annotate(a, rec.Err)
	case err != nil:
		return nil, nil, reused
	}
	if len(decided) == 0 || len(decided) > len(stored) {
		return nil, nil, reused
	}
	events, err := r.envelopes(cmd, decided)
	if err != nil {
		return nil, nil, err
	}
	for i, e := range events {
		if same, err := sameContent(stored[i], e); err != nil || !same {
			return nil, nil, reused
		}
	}
	if n := len(events); n < len(stored) && stored[n].ID == cmd.eventID(n) {
		return nil, nil, reused // the command stored more events than it decides now
	}
	return stored[:len(events)], refusal, nil
}

// sameContent reports whether the stored event s is e, as the store's
// idempotent append compares them (eventstore.SameStoredContent).
func sameContent(s, e eventstore.Event) (bool, error) {
	if s.ID != e.ID || s.Type != e.Type || s.Source != e.Source || s.Target != e.Target || !eventstore.JSONEqual(s.Payload, e.Payload) {
		return false, nil
	}
	sm, err := json.Marshal(s.Meta)
	if err != nil {
		return false, err
	}
	em, err := json.Marshal(e.Meta)
	if err != nil {
		return false, err
	}
	return eventstore.JSONEqual(sm, em), nil
}
