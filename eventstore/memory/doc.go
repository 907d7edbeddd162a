// Package memory is an in-process eventstore.Store with the semantics of
// the PostgreSQL backend, for unit tests of code above the store and for a
// zero-setup demo. Nothing survives the process.
//
// It promises what every backend promises: every append is validated by
// eventstore.Validator before anything is stored and is atomic; positions
// are gapless (eventstore.Pos(1), Pos(2), ...); an event id already stored
// with the same content (payload and meta compared as JSON values, not as
// bytes) makes the append return the original result; the same id with
// other content is eventstore.ErrDuplicateEvent, as is a batch whose ids are
// only partly stored. Subscriptions are woken by a broadcast on each append
// (no polling) and hold no more than one batch: they read the log in
// place. Events handed out are copies; changing them changes nothing
// stored.
package memory
