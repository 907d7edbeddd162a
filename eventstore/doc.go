// Package eventstore defines the event envelope, the Store contract every
// backend implements, and the write-time validation that no backend can skip.
//
// The envelope is the Charter v1.0 envelope of the event bus eventstream
// replaces: id, type, stream, version, position, source, target, timestamp,
// payload and meta (schema_version, producer, tenant_id, correlation_id,
// causation_id and free-form keys).
//
// Backends live in sub-packages: memory (in-process, for tests and demos),
// postgres (the default, pgx v5) and esdb (EventStoreDB / KurrentDB). Each of
// them calls Validator.Check before writing anything, and each is run
// through the conformance suite in storetest.
package eventstore
