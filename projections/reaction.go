package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
)

// Reaction returns a projection for a consumer whose effect lies outside
// the read-model database, such as a reaction that appends commands to
// the store: before it calls fn for an event, it records the event under
// consumer with OnceEvent (by id, stream and stream version, so that two
// events with one id in two streams, as EventStoreDB allows, are acted on
// each), in the transaction that commits the checkpoint, and it skips
// events the consumer has already acted on. fn runs before that
// transaction commits, so it runs again whenever the transaction does not
// commit: after a crash between the two, and for the other events of a
// batch in which one event fails (the runtime rolls the batch back and
// applies its events one per transaction). Its effect must itself be
// idempotent (the reactions key their commands by the causing event),
// and Once makes every redelivery after a commit,
// a replay or a rebuild a no-op. A panic in fn fails the event like a
// returned error (a *PanicError), and the event is not recorded as acted
// on. name is the projection's name;
// consumer the key in processed_events, which must never change.
func Reaction(name, consumer string, handles []EventType, fn func(ctx context.Context, e eventstore.Event) error) Projection {
	return Projection{
		Name:    name,
		Handles: handles,
		Handler: EachEvent(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			first, err := OnceEvent(ctx, tx, consumer, e)
			if err != nil || !first {
				return err
			}
			return fn(ctx, e)
		}),
	}
}
