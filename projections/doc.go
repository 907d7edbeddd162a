// Package projections keeps PostgreSQL read models up to date from the
// event log, exactly once in effect.
//
// A Projection names the event types (and schema versions) it handles,
// carries embedded migrations for its tables and a Handler that applies a
// batch of events inside a transaction the Runtime gives it. The Runtime
// commits the handler's writes and the projection's checkpoint (its
// global position) in that same transaction, so a crash at any point
// neither loses nor doubles an effect, and events at or before the
// checkpoint are never applied again.
//
// What the package promises:
//   - Declared types and versions are checked against the schema registry
//     when the Runtime is built (New); an unknown one is refused.
//   - Catch-up from the checkpoint, then live through the store's
//     subscription, in batches, in log order.
//   - A failing event is retried with backoff (RetryPolicy), then parked
//     in the dead-letter table (or the projection stopped, if so
//     declared); parked events can be listed, retried and skipped. A
//     panic in a handler (or in Upcast) is such a failure, a *PanicError,
//     not a crash of the process, and so is a handler's failure that
//     leaves its connection closed. A lost connection restarts the
//     session instead, unless it breaks RetryPolicy.MaxSessionBreaks
//     times in a row at one event, which is then given up in the same way.
//   - Each projection is run by exactly one runtime at a time across
//     processes (a session advisory lock on the connection that also
//     carries its transactions); another takes over when it dies.
//   - Rebuild replays into a new generation of tables while readers query
//     the old one through views, then swaps the views in one transaction.
//   - Lag (position, head, lag in events and seconds, events/s, errors,
//     parked) through Lag and as Prometheus metrics on a given Registerer.
//   - OnceEvent gives consumers whose effect lies outside the read-model
//     database (reactions) an idempotent processed_events guard, keyed by
//     event id, stream and stream version, so that events sharing an id
//     in two streams (EventStoreDB) are each acted on once.
//
// The read models live in sub-packages: audit, analytics, alerts and
// catalog. docs/projections.md describes the design and its operation.
package projections
