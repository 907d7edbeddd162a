package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// sessionBreaks is a runner's memory, kept across its sessions, of where
// the last one broke while it was applying events. A session break
// (connection lost or closed by the server, commit of unknown outcome) is
// not counted as an attempt of the event, so that a database restart or a
// flaky network parks nothing; but an event whose handling itself makes
// the server drop the connection would then be met again after every
// restart, for ever. Remembering the event across sessions bounds that:
// after RetryPolicy.MaxSessionBreaks breaks in a row at one event, it is
// given up like an event that failed all its attempts. The memory also
// carries the attempts of an event whose handler failed and left the
// connection closed (a query's rows still open), so that they go on in
// the next session instead of starting again.
//
// Only breaks while an event is being applied are remembered; a session
// that ends while idle, while reading the log or before it holds the
// lock leaves the memory as it is. The zero value remembers nothing.
type sessionBreaks struct {
	set bool
	gen int
	// at is the last event being applied when the session broke: the
	// last of a batch, or the one event applied alone (event).
	at    eventstore.Position
	event bool
	id    uuid.UUID // of the event, when event
	n     int       // breaks in a row at that event
	last  error     // the error of the last break
	// tried counts the event's failed attempts that also closed the
	// connection (a handler that failed with a query's rows still
	// open), so ended their session; failure is the last one's error.
	tried   int
	failure error
}

// about reports whether the memory is about e, applied alone in generation gen.
func (b *sessionBreaks) about(gen int, e eventstore.Event) bool {
	return b.set && b.event && b.gen == gen && b.at == e.Position && b.id == e.ID
}

// settle forgets the breaks once the applier has gone past them (the
// events were applied, parked or passed since) or works on another
// generation: a break followed by success does not count towards the next
// one.
func (a *applier) settle() {
	b := a.breaks
	if b != nil && b.set && (b.gen != a.gen || b.at.Compare(a.pos) <= 0) {
		*b = sessionBreaks{}
	}
}

// suspects returns how many of the leading fresh events (all after a.pos,
// in order) were being applied when the session last broke. Those are
// applied one per transaction, so that a break narrows down to one event.
func (a *applier) suspects(fresh []eventstore.Event) int {
	a.settle()
	b := a.breaks
	if b == nil || !b.set {
		return 0
	}
	k := 0
	for k < len(fresh) && fresh[k].Position.Compare(b.at) <= 0 {
		k++
	}
	return k
}

// brokeIn records that the session broke while a batch ending at last was
// being applied: its events are applied one by one next time. A batch's
// break counts for none of its events.
func (a *applier) brokeIn(ctx context.Context, last eventstore.Position, err error) {
	if a.breaks == nil || !isBreak(ctx, err) {
		return
	}
	*a.breaks = sessionBreaks{set: true, gen: a.gen, at: last, last: err}
	a.broke = true
}

// brokeAt records that the session broke while e was being applied on its
// own, one more time in a row if it was already the last event to break it.
func (a *applier) brokeAt(ctx context.Context, e eventstore.Event, err error) {
	b := a.breaks
	if b == nil || !isBreak(ctx, err) {
		return
	}
	if !b.about(a.gen, e) {
		*b = sessionBreaks{set: true, gen: a.gen, at: e.Position, event: true, id: e.ID}
	}
	b.n++
	b.last = err
	a.broke = true
	a.st.failed()
	a.rt.log.Warn("projection session broke while applying an event; restarting it", "projection", a.p.Name, "event_id", e.ID, "type", e.Type,
		"position", e.Position.String(), "breaks", b.n, "max_breaks", a.rt.cfg.Retry.MaxSessionBreaks, "err", err)
}

// brokenTooOften returns, when the session broke MaxSessionBreaks times in
// a row while e was being applied, the error to give e up with.
func (a *applier) brokenTooOften(e eventstore.Event) (attempts int, err error) {
	b := a.breaks
	if b == nil || !b.about(a.gen, e) || b.n < a.rt.cfg.Retry.MaxSessionBreaks {
		return 0, nil
	}
	times := "times"
	if b.n == 1 {
		times = "time"
	}
	return b.n, fmt.Errorf("the session broke %d %s in a row while applying the event (its connection lost or closed by the server, "+
		"or a commit of unknown outcome); last error: %w", b.n, times, b.last)
}

// failedAt records that attempt of e failed and left the connection
// closed, so that the next session goes on with the attempts instead of
// starting them again (which would retry the event for ever).
func (a *applier) failedAt(e eventstore.Event, attempt int, err error) {
	b := a.breaks
	if b == nil {
		return
	}
	if !b.about(a.gen, e) {
		*b = sessionBreaks{set: true, gen: a.gen, at: e.Position, event: true, id: e.ID}
	}
	b.tried, b.failure = attempt, err
	a.broke = true
}

// triedBefore returns how many attempts of e earlier sessions made (whose
// failures closed the connection) and the last one's error.
func (a *applier) triedBefore(e eventstore.Event) (int, error) {
	b := a.breaks
	if b == nil || !b.about(a.gen, e) {
		return 0, nil
	}
	return b.tried, b.failure
}

// isBreak tells a break of the session from its other ends: the runner's
// own context ending (Run is over) and a checkpoint moved by someone else
// (a swap or a rewind, which take the event away from this generation).
func isBreak(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, errFenced)
}
