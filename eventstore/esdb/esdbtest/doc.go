// Package esdbtest is an in-process protocol stand-in for EventStoreDB: a
// gRPC server that speaks the subset of the EventStoreDB client protocol the
// esdb backend uses, on the generated service definitions shipped with
// github.com/EventStore/EventStore-Client-Go/v4, and keeps everything in
// memory.
//
// It is NOT EventStoreDB. It exists so that the backend's encoding, error
// mapping, paging and subscriptions run over a real gRPC connection with the
// real client on every test run, on machines where no EventStoreDB server
// can be installed. What it implements, and the documentation or source each
// rule follows, is listed below and in docs/eventstoredb.md.
//
// Implemented:
//   - server_features.ServerFeatures/GetSupportedMethods (called by the
//     client on connect) and gossip.Gossip/Read (called on connect when the
//     connection string names several nodes or uses esdb+discover://); the
//     stand-in reports itself as a one-node cluster whose only member is the
//     leader, and as server version 0.0.0.
//   - streams.Streams/Append with the expected-revision rules any,
//     no_stream, stream_exists and an exact revision, and EventStoreDB's
//     idempotency checks (see appendRules in log.go), the maximum append
//     size (1 MiB by default, as EventStoreDB's MaxAppendSize).
//   - streams.Streams/Read: reading a stream forwards or backwards (missing
//     stream: stream_not_found; reading past the end of a stream: no
//     events), reading $all forwards or backwards by commit/prepare
//     position, catch-up subscriptions to $all and to a stream (positions
//     exclusive), server-side filters on event type or stream name (regular
//     expression or prefixes) with checkpoints, and the "invalid position"
//     refusal for $all positions that are not at an event.
//   - Stream metadata $tb, $maxCount and $maxAge, written by the client's
//     SetStreamMetadata to "$$"+stream: stream reads skip the events they
//     hide, as EventStoreDB does before a scavenge ($all keeps them).
//   - streams.Streams/Delete (soft delete: $tb at EventNumber.DeletedStream
//     in "$$"+stream; the stream reads as stream_not_found and is recreated
//     by the next write, its revisions going on after the deleted ones) and
//     streams.Streams/Tombstone (a "$streamDeleted" record; reads, appends,
//     deletes and stream subscriptions fail with stream deleted), as
//     EventStoreDB 22.x to 24.x do; delete.go lists the rules and their
//     sources. $all keeps a deleted stream's events (nothing is scavenged).
//
// Reads counts the Read calls received; Clock sets the server's clock
// (event timestamps and $maxAge).
//
// ServerVersion makes it report another version and, below 22.6.0, answer
// stream reads without $all positions, as those servers do.
//
// DropSubscriptions ends every subscription call with gRPC Unavailable while
// the server keeps serving, as a node does when it restarts;
// DropSubscriptionsNotLeader ends them with "not leader", as a node does
// when it stops being the leader. TimeOutAppends answers the next appends
// with "Operation timed out" (gRPC Aborted) after writing them, as a
// leader does when the cluster does not acknowledge a commit in time.
//
// Not implemented (answered with gRPC Unimplemented): BatchAppend,
// persistent subscriptions, projections, users, operations.
// Access control is not enforced; credentials are ignored. Links are never
// resolved (the stand-in writes no link events).
package esdbtest
