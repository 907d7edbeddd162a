// Package reliability holds the tests that prove the store's promises
// under faults and hostile input (issue 8): an acknowledged event is never
// lost, never doubled, never partly written and never seen by the wrong
// tenant, and the store, its subscriptions and the projections recover by
// themselves once the database is back.
//
// The tests start their own throwaway PostgreSQL clusters
// (internal/pgcluster) so they can stop, crash and cut them without harm
// to anything else, and a TCP proxy (internal/faultproxy) that cuts
// connections at random moments. docs/reliability.md lists each guarantee
// with the test that proves it and the figures of the last run.
//
// The package has no code of its own: only tests.
package reliability
