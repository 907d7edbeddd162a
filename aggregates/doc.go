// Package aggregates is the runtime of event-sourced aggregates: an
// aggregate is rebuilt from its stream (optionally starting from a
// snapshot), a command is decided against its current state, and the
// resulting events are appended with the loaded version as the expected
// version, retried on a lost race.
//
// What it promises:
//   - Event types are bound to Go types by explicit name and schema version
//     on a Registry value; Registry.Check fails at start-up when Go types and
//     schemas/ disagree, never at read time.
//   - Readers see every event at its type's newest schema version through
//     registered upcasters; stored events are never rewritten.
//   - A refused command (a *RuleError naming the rule, or a *NotFoundError)
//     writes nothing, except where a module records the refusal on purpose
//     (RefuseAndRecord).
//   - Events carry the command's tenant and correlation id, and the id of
//     their cause (the command, or the event a reaction reacted to).
//   - Snapshots are an optimisation only: a missing, stale or unreadable
//     snapshot leads to a rebuild from events.
//
// The domain modules live in the subpackages coursefactory, distribution,
// governance and missions; reactions wires them together; pgsnapshot keeps
// snapshots in PostgreSQL. See docs/aggregates.md.
package aggregates
