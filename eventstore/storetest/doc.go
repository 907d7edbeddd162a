// Package storetest is the conformance suite every eventstore backend runs:
// expected-version rules, idempotent ids, validation refusals that leave
// nothing written, ordering, pagination, subscriptions (catch-up, live,
// cancellation), concurrent writers, envelope round trips and Close.
//
// A backend's tests call Run with a Harness that makes a fresh, empty store
// per call and declares the backend's Features; the suite skips what a
// backend declares it lacks. The suite brings its own small schema set
// (storetest.item.added v1, storetest.item.renamed v1 and v2) so it does not
// depend on the domain's schemas; Registry builds the registry it passes to
// Harness.New.
package storetest
